package scenarios

import (
	"context"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// TestCrashDeterminism: the same seed gives the same schedule and history,
// crashes, torn writes, rollbacks and regenerated credentials included.
func TestCrashDeterminism(t *testing.T) {
	for _, name := range []string{"torn", "rollback", "restart"} {
		sc, _ := Lookup(name)
		var first, firstSched string
		for range 2 {
			seed := SeedFor(5, 1)
			sched, res, err := harness.Execute(context.Background(), sc.Setup(seed, harness.Concurrent, "files"),
				stores.MustLookup("files"), harness.Controlled, NewGenerator(sc, PCT, seed))
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first, firstSched = res.HistoryText(), sched.String()
				continue
			}
			if res.HistoryText() != first || sched.String() != firstSched {
				t.Errorf("%s: two runs of one seed differ", name)
			}
		}
	}
}
