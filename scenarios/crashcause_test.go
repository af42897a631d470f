package scenarios

import (
	"context"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/stores"
)

// A crash excuses only what it causes (issue 16 §1). Before, in any
// schedule a crash hit, a message no worse than on the reference store
// under the same client was "client side", so the concurrent client's own
// races went unblamed once a crash was added: 6 of 6 schedules failed in
// every row, 0 pair-blamed. Now the racy client is pair-blamed in crash,
// torn and rollback about as in reply, and the correct client on a correct
// store is blamed for nothing, its crash losses each explained by their
// cause (killed between decrypt and ack; lost by the serial baseline with
// the same backup restored).
func TestCrashExcusesOnlyItsCause(t *testing.T) {
	ctx := context.Background()
	run := func(d harness.Discipline, store, scenario string, n int) *PairResult {
		t.Helper()
		sc, err := Lookup(scenario)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := RunPair(ctx, sc, d, stores.MustLookup(store), Config{Mode: harness.Controlled, Policy: Random, Seed: 1, Schedules: n})
		if err != nil {
			t.Fatal(err)
		}
		c := pr.Counts
		t.Logf("%s/%s/%s: %d/%d schedules failed, %d of %d messages pair-blamed, %d lost to the crash",
			d, store, scenario, pr.Failed, pr.Schedules, c.Blamed, c.Messages, c.LostToCrash)
		return pr
	}
	for _, st := range []string{"reference", "mutexed"} {
		reply := run(harness.Concurrent, st, "reply", 6)
		replyRate := float64(reply.Counts.Blamed) / float64(reply.Counts.Messages)
		for _, sc := range []string{"crash", "torn", "rollback"} {
			pr := run(harness.Concurrent, st, sc, 6)
			rate := float64(pr.Counts.Blamed) / float64(pr.Counts.Messages)
			if pr.Counts.Blamed == 0 || rate < replyRate/2 {
				t.Errorf("concurrent/%s/%s: %d pair-blamed (%.1f%%), reply %.1f%%: a crash hides the client's races",
					st, sc, pr.Counts.Blamed, 100*rate, 100*replyRate)
			}
		}
	}
	n := 40
	if testenv.Long() {
		n = 500
	}
	for _, st := range []string{"reference", "mutexed"} {
		lost := 0
		for _, sc := range []string{"crash", "torn", "rollback"} {
			pr := run(harness.Locked, st, sc, n)
			if pr.Counts.Blamed != 0 || pr.Failed != 0 {
				t.Errorf("locked/%s/%s: %d pair-blamed in %d failing schedules of %d: %s\n%s",
					st, sc, pr.Counts.Blamed, pr.Failed, n, pr.FirstResult.Summary(), pr.First)
			}
			lost += pr.Counts.LostToCrash
		}
		if lost == 0 {
			t.Errorf("locked/%s: nothing lost to a crash in %d schedules of each: the excuse is never exercised", st, n)
		}
	}
}
