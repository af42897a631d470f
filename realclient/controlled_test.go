package realclient

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

func readSchedule(t *testing.T, path string) *harness.Schedule {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := harness.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

// replayExactly replays s n times through harness.RunOn in controlled mode
// and checks each run against the first: the same history, byte for byte,
// the same outcome for every message, the same blame.
func replayExactly(t *testing.T, dev *Device, s *harness.Schedule, n int) *harness.Result {
	t.Helper()
	ctx := context.Background()
	var first *harness.Result
	for i := range n {
		_, res, err := harness.RunOn(ctx, dev, s, harness.Controlled, harness.Ops(s.Ops))
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = res
			continue
		}
		if res.HistoryText() != first.HistoryText() {
			t.Fatalf("replay %d of %d: the history differs from the first run's at %s", i+1, n, testenv.FirstDiff(first.History, res.History))
		}
		if outcomes(res) != outcomes(first) || strings.Join(res.Blamed, " ") != strings.Join(first.Blamed, " ") ||
			strings.Join(res.StoreBlamed, " ") != strings.Join(first.StoreBlamed, " ") {
			t.Fatalf("replay %d of %d: outcomes or blame differ: %s (blamed %v) vs %s (blamed %v)", i+1, n,
				outcomes(res), res.Blamed, outcomes(first), first.Blamed)
		}
	}
	return first
}

func outcomes(res *harness.Result) string {
	var b strings.Builder
	for _, m := range res.Messages {
		b.WriteString(m.ID + " " + string(m.Outcome()) + " " + worstOf(m) + ";")
	}
	return b.String()
}

// A counterexample the controlled real client found and shrank (the async
// reply's old counter, whatsmeow's own send/receive race) replays through
// whatsmeow's code byte for byte, 20 times in a row, on SQLite: the same
// history, store call by store call, the same outcomes, the same blame.
// It is pair-blamed (the serial protocol, the real client one goroutine at
// a time on the reference store, delivers it) and not store-blamed (the
// reference store under the same schedule loses it too).
func TestControlledReplayIsExact(t *testing.T) {
	s := readSchedule(t, "testdata/async-reply-oldcounter-sqlite.txt")
	dev := &Device{Reply: Async}
	res := replayExactly(t, dev, s, 20)
	if !res.Failed() || strings.Join(res.Blamed, " ") != "r6" {
		t.Fatalf("the counterexample no longer fails as recorded: blamed %v: %s", res.Blamed, res.Summary())
	}
	if !res.StoreJudged || len(res.StoreBlamed) != 0 {
		t.Errorf("SQLite store-blamed for %v (judged %t): the race is whatsmeow's, the reference store loses r6 too", res.StoreBlamed, res.StoreJudged)
	}
	var worst string
	for _, m := range res.Messages {
		if m.ID == "r6" {
			worst = worstOf(m)
		}
	}
	if worst != "OldCounter" {
		t.Errorf("r6 failed with %q, want OldCounter (the peer sees a reused message key)", worst)
	}
}

// Controlled mode finds the async reply race on its own, shrinks it on the
// real client, and the shrunk schedule replays byte for byte 20 times; the
// same scenarios with inline replies (the reply sent from the handler, so
// it never overlaps a receive) are clean.
func TestControlledFindsAndShrinks(t *testing.T) {
	testenv.NeedLong(t, "schedules and a shrink on the real client")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sc, err := scenarios.Lookup("reply")
	if err != nil {
		t.Fatal(err)
	}
	v := stores.MustLookup("sqlite")
	async := &Device{Reply: Async}
	prs, err := scenarios.RunPairs(ctx, []scenarios.Pair{{Scenario: sc, Discipline: harness.Whatsmeow, Variant: v, Device: async}},
		scenarios.Config{Mode: harness.Controlled, Policy: scenarios.Random, Seed: 1, Schedules: 10, Workers: 2, ShrinkBudget: 200})
	if err != nil {
		t.Fatal(err)
	}
	pr := prs[0]
	if pr.First == nil {
		t.Fatalf("client-async/sqlite/reply: no failure in %d controlled schedules", pr.Schedules)
	}
	t.Logf("first failure (schedule %d), shrunk to %d ops: %s\n%s", pr.FirstIndex, len(pr.First.Ops), pr.FirstResult.Summary(), pr.First)
	res := replayExactly(t, async, pr.First, 20)
	if !res.Failed() {
		t.Fatalf("the shrunk schedule does not fail on replay")
	}
	for _, name := range []string{"reply", "burst", "reorder"} {
		sc, _ := scenarios.Lookup(name)
		prs, err := scenarios.RunPairs(ctx, []scenarios.Pair{{Scenario: sc, Discipline: harness.Whatsmeow, Variant: v, Device: &Device{Reply: Inline}}},
			scenarios.Config{Mode: harness.Controlled, Policy: scenarios.Random, Seed: 1, Schedules: 20, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		if prs[0].Failed != 0 {
			t.Errorf("client-inline/sqlite/%s: %d of 20 controlled schedules failed: %s\n%s", name, prs[0].Failed,
				prs[0].FirstResult.Summary(), prs[0].First)
		}
	}
}

// Determinism over many schedules: each, run from its generator, then
// replayed from its explicit schedule, gives the same history.
func TestControlledDeterministicSoak(t *testing.T) {
	testenv.NeedLong(t, "replays of many controlled schedules")
	ctx := context.Background()
	for _, name := range []string{"reply", "reorder", "burst", "restart"} {
		sc, _ := scenarios.Lookup(name)
		for _, st := range []string{"sqlite", "reference"} {
			for _, dev := range []*Device{{Reply: Async}, {Reply: Inline}} {
				for i := range 6 {
					seed := scenarios.SeedFor(11, i)
					s, res, err := dev.Exec(ctx, sc.Setup(seed, harness.Whatsmeow, st), harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, seed))
					if err != nil {
						t.Fatal(err)
					}
					for k := range 3 {
						_, again, err := dev.Exec(ctx, s, harness.Controlled, harness.Ops(s.Ops))
						if err != nil {
							t.Fatal(err)
						}
						if again.HistoryText() != res.HistoryText() {
							t.Errorf("%s/%s/%s seed %d replay %d: history differs at %s", dev.Name(), st, name, seed, k, testenv.FirstDiff(res.History, again.History))
							break
						}
					}
				}
			}
		}
	}
}
