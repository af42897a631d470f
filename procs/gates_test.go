package procs_test

import (
	"context"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/scenarios"
)

// gated is the real child with gates (procs+gates).
func gated() procs.Device {
	d := child()
	d.Gates = true
	return d
}

// crashedInside counts the crashes of r that killed tasks in flight.
func crashedInside(r *harness.Result) int {
	n := 0
	for _, p := range r.CrashPoints {
		if strings.Contains(p, "inside requests") {
			n++
		}
	}
	return n
}

// With gates the child's tasks stop at every store call, so the crash
// scenario's SIGKILL lands inside requests, with tasks parked between
// their loads and their writes. A correct child on a real database loses
// nothing the baseline keeps, over many schedules; the write-behind child
// (its session writes wait in memory) is caught, its shrunk
// counterexample a kill inside a request that replays byte for byte, and
// the same ops on the durable child pass.
func TestGatesCrashInsideRequestSQLite(t *testing.T) {
	testGatesCrash(t, "sqlite", testenv.Size(20, 100))
}
func TestGatesCrashInsideRequestPostgres(t *testing.T) {
	testGatesCrash(t, "postgres", testenv.Size(10, 50))
}

func testGatesCrash(t *testing.T, store string, schedules int) {
	needStore(t, store)
	ctx := context.Background()
	pr := runPair(t, gated(), "crash", harness.Locked, store, scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: schedules, Workers: 2, ShrinkBudget: 50})
	t.Logf("%s crash/%s: %d schedules, %d failed, %d crashes, %d store-blamed", pr.Device, store, pr.Schedules, pr.Failed, pr.Counts.Crashes, pr.Counts.StoreBlamed)
	if pr.Device != "procs+gates" {
		t.Fatalf("device %q", pr.Device)
	}
	if pr.Failed > 0 || pr.Counts.StoreBlamed > 0 {
		t.Errorf("the durable child failed %d of %d schedules (%d store-blamed); first: %s\n%s", pr.Failed, pr.Schedules, pr.Counts.StoreBlamed, pr.FirstResult.Summary(), pr.First)
	}
	if pr.Counts.Crashes == 0 {
		t.Errorf("no schedule crashed")
	}
	if store != "sqlite" {
		return
	}
	// The write-behind child: the generator's schedules until one fails
	// with its kill inside a request (shrinking may move the kill between
	// requests, where write-behind loses writes too, so this takes the
	// schedules as generated).
	bad := gated()
	bad.WriteBehind = 3
	sc, err := scenarios.Lookup("crash")
	if err != nil {
		t.Fatal(err)
	}
	var first *harness.Schedule
	var want *harness.Result
	var seed uint64
	for seed = 1; seed <= 40 && first == nil; seed++ {
		s, res, err := harness.RunOn(ctx, bad, sc.Setup(seed, harness.Locked, store), harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, seed))
		if err != nil {
			t.Fatal(err)
		}
		if res.Failed() && crashedInside(res) > 0 && len(res.StoreBlamed) > 0 {
			first, want = s, res
			break
		}
	}
	if first == nil {
		t.Fatalf("the write-behind child survived %d schedules with SIGKILLs inside requests", seed-1)
	}
	t.Logf("write-behind caught by a kill inside a request (seed %d): %s\n%s", seed, want.Summary(), first)
	replaysAndPassesDurable(t, bad, gated(), first, want)
}

// With gates a schedule replays on the child byte for byte: the same
// schedule, the same history, its steps and kills at the same gates.
func TestGatesReplayByteForByte(t *testing.T) {
	for _, name := range []string{"crash", "overlap", "reorder"} {
		s1, r1 := replaysByteForByte(t, gated(), name, harness.Locked, 7)
		steps := 0
		for _, op := range s1.Ops {
			if _, ok := op.(harness.StepOp); ok {
				steps++
			}
		}
		if steps == 0 {
			t.Errorf("%s: no step in\n%s", name, s1)
		}
		if name == "crash" && (crashedInside(r1) == 0 || r1.Failed()) {
			t.Errorf("crash: want a kill inside a request that loses nothing: %s %v", r1.Summary(), r1.CrashPoints)
		}
		t.Logf("%s: %d ops (%d steps), %d history lines, replayed identically", name, len(s1.Ops), steps, len(r1.History))
	}
}

// Two child processes on one database with requests in flight at once
// (scenario overlap, which the child without gates refuses): they lose
// messages, as two replicas of a bot do.
func TestGatesOverlapLosesMessages(t *testing.T) {
	pr := runPair(t, gated(), "overlap", harness.Locked, "sqlite", scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: testenv.Size(8, 30), Workers: 2, ShrinkBudget: 50})
	c := pr.Counts
	t.Logf("%s overlap/sqlite: %d of %d schedules failed; %d messages, %d delivered, %d blamed, %d store-blamed; first: %s",
		pr.Device, pr.Failed, pr.Schedules, c.Messages, c.Delivered, c.Blamed, c.StoreBlamed, pr.FirstResult.Summary())
	if c.Delivered == c.Messages {
		t.Errorf("two processes in flight at once delivered every message")
	}
}

// Check with gates: overlap runs, txn is refused (a receive parked in its
// transaction would block the others inside the database).
func TestGatesCheck(t *testing.T) {
	dev := gated()
	for _, c := range []struct {
		scenario string
		d        harness.Discipline
		want     string
	}{{"overlap", harness.Locked, ""}, {"crash", harness.Locked, ""}, {"crash", harness.Txn, "discipline txn with gates"}} {
		sc, err := scenarios.Lookup(c.scenario)
		if err != nil {
			t.Fatal(err)
		}
		err = dev.Check(sc.Setup(1, c.d, "sqlite"), harness.Controlled)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s/%s: Check = %v, want %q", c.scenario, c.d, err, c.want)
		}
	}
}
