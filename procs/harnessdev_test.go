package procs_test

import (
	"context"
	"os"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// child is the real device process: this test binary as `badmac device`
// (TestMain runs procs.ChildMain when BADMAC_PROCS_CHILD is set).
func child() procs.Device {
	return procs.Device{Exe: os.Args[0], Env: append(os.Environ(), "BADMAC_PROCS_CHILD=1")}
}

func runPair(t *testing.T, dev harness.Device, scenario string, d harness.Discipline, store string, cfg scenarios.Config) *scenarios.PairResult {
	t.Helper()
	sc, err := scenarios.Lookup(scenario)
	if err != nil {
		t.Fatal(err)
	}
	prs, err := scenarios.RunPairs(context.Background(), []scenarios.Pair{{Scenario: sc, Discipline: d, Variant: stores.MustLookup(store), Device: dev}}, cfg)
	if err != nil {
		t.Fatalf("%s on %s/%s: %v", scenario, d, store, err)
	}
	return prs[0]
}

func TestHarnessSmoke(t *testing.T) {
	pr := runPair(t, child(), "reply", harness.Locked, "sqlite", scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: 2, Workers: 2})
	t.Logf("%+v", pr.Counts)
	if pr.First != nil {
		t.Logf("%s\n%s", pr.First, pr.FirstResult.HistoryText())
	}
}

func TestHarnessPrint(t *testing.T) {
	sc, _ := scenarios.Lookup("crash")
	setup := sc.Setup(5, harness.Locked, "sqlite")
	sched, res, err := harness.RunOn(context.Background(), child(), setup, harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, 5))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s\n%s\n%+v", sched, res.HistoryText(), res.Counts())
}
