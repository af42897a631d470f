package realclient

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// runDevice runs n schedules of scenario name on dev over store through
// scenarios.RunPairs, as badmac run does for a device row.
func runDevice(t *testing.T, dev harness.Device, name, store string, n int, seed uint64) *scenarios.PairResult {
	t.Helper()
	sc, err := scenarios.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := stores.Lookup(store)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	prs, err := scenarios.RunPairs(ctx, []scenarios.Pair{{Scenario: sc, Discipline: harness.Whatsmeow, Variant: v, Device: dev}},
		scenarios.Config{Mode: harness.Free, Policy: scenarios.Random, Seed: seed, Schedules: n, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	pr := prs[0]
	c := pr.Counts
	lo, hi := harness.Wilson(c.Blamed, c.Messages)
	t.Logf("%s/%s/%s: %d schedules, %d failed, %d msgs, pair blamed %d [%.1f%%, %.1f%%], failures %v",
		pr.Device, pr.Store, pr.Scenario, pr.Schedules, pr.Failed, c.Messages, c.Blamed, 100*lo, 100*hi, c.Failures)
	if pr.First != nil {
		t.Logf("first failing schedule (%d): %s\n%s", pr.FirstIndex, pr.FirstResult.Summary(), pr.First)
	}
	return pr
}

func TestDeviceSmoke(t *testing.T) {
	for _, d := range []*Device{{Reply: Inline}, {Reply: Async}} {
		pr := runDevice(t, d, "reply", "reference", 2, 1)
		if pr.Counts.Messages == 0 {
			t.Fatalf("%s: no messages", d.Name())
		}
		_ = strings.TrimSpace
	}
}

func TestDeviceShowOne(t *testing.T) {
	sc, _ := scenarios.Lookup("reply")
	d := &Device{Reply: Async}
	setup := sc.Setup(7, harness.Whatsmeow, "sqlite")
	s, res, err := harness.RunOn(context.Background(), d, setup, harness.Free, scenarios.NewGenerator(sc, scenarios.Random, 7))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s\n%s", s, res.HistoryText())
	for _, m := range res.Messages {
		t.Logf("%s %s %s %s %v", m.ID, m.Dir, m.Peer, m.Outcome(), m.Attempts)
	}
}
