package storetest

import (
	"context"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// The replay's HTML banner is storetest's verdict, both ways, whatever the
// pair's own figures: a finding with every message delivered is a FAIL
// (before, the banner said PASS beside a failing test), and a schedule
// storetest does not blame the store for is not a FAIL.
func TestReplayReportVerdict(t *testing.T) {
	sc, err := scenarios.Lookup("burst")
	if err != nil {
		t.Fatal(err)
	}
	seed := scenarios.SeedFor(1, 0)
	sched, res, err := harness.Execute(context.Background(), sc.Setup(seed, harness.Locked, StoreName),
		stores.MustLookup("reference"), harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, seed))
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() {
		t.Fatalf("burst on the reference store failed: %s", res.Summary())
	}
	if v := replayReport(sched, res, "cmd", true).Verdict(); v != reports.GateFail {
		t.Errorf("a replay storetest fails, every message delivered: banner %q, want %q", v, reports.GateFail)
	}
	if v := replayReport(sched, res, "cmd", false).Verdict(); v == reports.GateFail || v == reports.GatePass {
		t.Errorf("a replay storetest passes: banner %q, want neither fail nor the CLI gate's pass", v)
	}
}
