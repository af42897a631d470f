package scenarios

import (
	"context"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

func TestCrashPointsExplore(t *testing.T) {
	sc, _ := Lookup("reply")
	sc.Messages = 10
	for _, st := range []string{"reference", "debounced", "files", "files-atomic"} {
		rep, err := CrashPoints(context.Background(), sc, harness.Locked, stores.MustLookup(st), 3, harness.CrashOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s %+v", rep.Text(false), rep.Counts)
	}
}
