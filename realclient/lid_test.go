package realclient

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
)

func TestLIDExplore(t *testing.T) {
	s := readSchedule(t, os.Getenv("LIDX"))
	dev := &Device{Reply: Inline}
	_, res, err := harness.RunOn(context.Background(), dev, s, harness.Serial, harness.Ops(s.Ops))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.Join(res.History, "\n"))
	t.Log(outcomes(res), res.Blamed, res.StoreBlamed, res.LibrarySummary())
}

func TestLIDExploreGen(t *testing.T) {
	sc, _ := scenarios.Lookup(os.Getenv("LIDSC"))
	dev := &Device{Reply: Async}
	if os.Getenv("LIDINLINE") != "" {
		dev.Reply = Inline
	}
	for seed := uint64(1000001); seed <= 1000005; seed++ {
		setup := sc.Setup(seed, harness.Locked, os.Getenv("LIDSTORE"))
		sched, res, err := harness.RunOn(context.Background(), dev, setup, harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, seed))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d: blamed %v store %v lib %s", seed, res.Blamed, res.StoreBlamed, res.LibrarySummary())
		if len(res.StoreBlamed) > 0 {
			os.WriteFile("/tmp/lidstore.txt", []byte(sched.String()), 0o644)
		}
	}
}
