package realclient

import (
	"context"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
)

func TestLIDExplore(t *testing.T) {
	s := readSchedule(t, "testdata/lid/whatsmeow-1063.txt")
	dev := &Device{Reply: Inline}
	_, res, err := harness.RunOn(context.Background(), dev, s, harness.Serial, harness.Ops(s.Ops))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.Join(res.History, "\n"))
	t.Log(outcomes(res), res.Blamed, res.StoreBlamed, res.LibrarySummary())
}
