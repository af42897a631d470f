package scenarios

import (
	"context"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/stores"
)

// TestCrashScenarios runs each crash scenario on a few stores with the
// locked discipline (so concurrency is not the cause) and checks what each
// must show: 6 schedules a pair by default, 12 under BADMAC_LONG.
func TestCrashScenarios(t *testing.T) {
	n := testenv.Size(6, 12)
	ctx := context.Background()
	type key struct{ sc, st string }
	got := map[key]*PairResult{}
	for _, name := range []string{"crash", "torn", "restart", "rollback", "reinstall"} {
		sc, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range []string{"reference", "debounced", "files", "files-atomic"} {
			pr, err := RunPair(ctx, sc, harness.Locked, stores.MustLookup(st), Config{Mode: harness.Controlled, Policy: Random, Seed: 1, Schedules: n})
			if err != nil {
				t.Fatalf("%s/%s: %v", name, st, err)
			}
			got[key{name, st}] = pr
			c := pr.Counts
			t.Logf("%-9s %-12s failed %2d/%d  msgs %3d delivered %3d recovered %2d lost %2d BadMAC %2d crashes %2d regen %d refused %d",
				name, st, pr.Failed, pr.Schedules, c.Messages, c.Delivered, c.Recovered, c.Lost, c.Failures["BadMAC"], c.Crashes, c.RegeneratedCreds, c.StartRefused)
		}
	}
	for _, st := range []string{"reference", "files-atomic"} {
		for _, sc := range []string{"restart", "reinstall"} {
			if pr := got[key{sc, st}]; pr.Failed != 0 {
				t.Errorf("%s on durable %s: %d failing schedules: %s\n%s", sc, st, pr.Failed, pr.FirstResult.Summary(), pr.First)
			}
		}
	}
	// A clean stop keeps what the process wrote (the kernel writes out a
	// dead process's unsynced file writes), so the in-place files pass;
	// the debounce buffer dies with the process (no shutdown flush), so
	// debounced fails, which also shows the restarts happen.
	if pr := got[key{"restart", "files"}]; pr.Failed != 0 {
		t.Errorf("restart on files: %d failing schedules: a clean stop loses no written file: %s", pr.Failed, pr.FirstResult.Summary())
	}
	if pr := got[key{"restart", "debounced"}]; pr.Counts.StoreBlamed == 0 {
		t.Error("restart: debounced loses its buffer at every stop, yet nothing is store-blamed")
	}
	if pr := got[key{"restart", "reference"}]; pr.Counts.Crashes != 0 {
		t.Errorf("restart: %d crashes counted; a clean stop is not a crash", pr.Counts.Crashes)
	}
	// Restoring an old backup hurts on any store: on the reference store
	// (and files-atomic, which restores the same state) the loss is the
	// restore's (the serial baseline restored at the same points loses it
	// too), never a failure; debounced, whose backup
	// misses its buffered writes, loses more: store-blamed.
	for _, st := range []string{"reference", "files-atomic"} {
		if pr := got[key{"rollback", st}]; pr.Failed != 0 || pr.Counts.LostToCrash == 0 {
			t.Errorf("rollback on %s: %d failing schedules, %d messages lost to the crash; want 0 and some", st, pr.Failed, pr.Counts.LostToCrash)
		}
	}
	if pr := got[key{"rollback", "debounced"}]; pr.Counts.StoreBlamed == 0 {
		t.Error("rollback: debounced's backup lacks its buffered writes, yet nothing is store-blamed")
	}
}
