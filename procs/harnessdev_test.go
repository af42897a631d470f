package procs_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/badmac/badmac/devices"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// child is the real device process: this test binary as `badmac device`
// (TestMain runs procs.ChildMain when BADMAC_PROCS_CHILD is set), one
// process per schedule on a fresh database.
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

// deviceScenarios are the harness scenarios the child runs (overlap is
// refused by Check, and rollback on PostgreSQL); replica runs two child
// processes on one database.
var deviceScenarios = []string{"burst", "reply", "multi", "group", "reorder", "crash", "torn", "restart", "reinstall", "replica", "rollback"}

// The harness's scenarios, unchanged, on the real child over SQLite under
// both disciplines: a correct store on a real database, killed with
// SIGKILL and restarted on the same file, fails no schedule.
//
// By default the scenarios the closing checks rest on (a crash kills, a
// reinstall is recovered by a retry receipt, a rollback restores) run at
// the size that reaches them from seed 1 (4 schedules on SQLite, 2 on
// PostgreSQL), the others at half that, and PostgreSQL under the locked
// discipline only (txn on PostgreSQL by default: TestKillPointsTxnPostgres);
// under BADMAC_LONG every scenario runs 12 (6) under both.
func TestDeviceSQLite(t *testing.T) {
	testDevice(t, "sqlite", testenv.Size(2, 12), testenv.Size(4, 12))
}
func TestDevicePostgres(t *testing.T) {
	testDevice(t, "postgres", testenv.Size(1, 6), testenv.Size(2, 6))
}

// checked are the scenarios testDevice's closing checks rest on.
var checked = map[string]bool{"crash": true, "reinstall": true, "rollback": true}

func testDevice(t *testing.T, store string, others, schedules int) {
	needStore(t, store)
	total, crashes, retried, restored := 0, 0, 0, 0
	disciplines := []harness.Discipline{harness.Locked, harness.Txn}
	if store == "postgres" && !testenv.Long() {
		disciplines = disciplines[:1]
	}
	for _, d := range disciplines {
		for _, sc := range deviceScenarios {
			if sc == "rollback" && store != "sqlite" {
				continue
			}
			schedules := schedules
			if !checked[sc] {
				schedules = others
			}
			pr := runPair(t, child(), sc, d, store, scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: schedules, Workers: 2, ShrinkBudget: 100})
			c := pr.Counts
			t.Logf("%s %s/%s: %d schedules, %d failed; %d messages, %d delivered, %d recovered (baseline: %d), %d crashes, %d lost to a crash",
				pr.Device, d, sc, pr.Schedules, pr.Failed, c.Messages, c.Delivered, c.Recovered, c.Baseline, c.Crashes, c.LostToCrash)
			if pr.Device != "procs" || pr.Schedules != schedules {
				t.Fatalf("%s: ran %d schedules on %q", sc, pr.Schedules, pr.Device)
			}
			if pr.Failed > 0 {
				t.Errorf("%s/%s on %s: %d of %d schedules failed; first: %s\n%s", d, sc, store, pr.Failed, pr.Schedules, pr.FirstResult.Summary(), pr.First)
			}
			total += pr.Schedules
			crashes += c.Crashes
			retried += c.Recovered
			if sc == "rollback" {
				restored += c.LostToCrash
			}
		}
	}
	t.Logf("%s: %d schedules on the real child, %d SIGKILLs, %d messages recovered by retry receipts, 0 failed", store, total, crashes, retried)
	// The runs must have exercised what they claim to.
	if crashes == 0 {
		t.Errorf("no crash scenario killed the device")
	}
	if retried == 0 {
		t.Errorf("no retry receipt recovered a message (reinstall should)")
	}
	// A restored backup costs messages a perfect store loses too (the
	// ratchets moved on past it): lost to the crash, never blamed.
	if store == "sqlite" && restored == 0 {
		t.Errorf("no rollback restored an older database")
	}
}

// A store that loses writes on a crash (debounced: writes wait in a buffer
// a kill drops) is caught on the device through the same scenario, the
// failure blamed on the store (worse than the same client on the
// reference store), shrunk, and its counterexample replays to the same
// result through harness.RunOn with harness.Ops. The same ops on the
// reference store lose nothing. The Local launcher runs it: the child runs
// on a real database, which keeps every committed write through SIGKILL.
func TestDeviceCatchesLostWrites(t *testing.T) {
	ctx := context.Background()
	dev := procs.Device{Local: true}
	pr := runPair(t, dev, "crash", harness.Locked, "debounced", scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: 20, Workers: 2, ShrinkBudget: 300})
	t.Logf("debounced/crash on %s: %d of %d schedules failed, %d messages store-blamed", pr.Device, pr.Failed, pr.Schedules, pr.Counts.StoreBlamed)
	if pr.Failed == 0 || pr.First == nil {
		t.Fatalf("a store that drops its pending writes on a crash passed %d schedules", pr.Schedules)
	}
	first, want := pr.First, pr.FirstResult
	if len(want.StoreBlamed) == 0 || want.Crashes == 0 {
		t.Errorf("first failure not blamed on the store after a crash: %s (store-blamed %v)", want.Summary(), want.StoreBlamed)
	}
	t.Logf("counterexample (schedule %d): %s\n%s", pr.FirstIndex, want.Summary(), first)
	text := first.String()
	parsed, err := harness.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Device != dev.Name() {
		t.Fatalf("schedule names device %q, want %q", parsed.Device, dev.Name())
	}
	sched, got, err := harness.RunOn(ctx, dev, parsed, harness.Controlled, harness.Ops(parsed.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Failed() || got.Summary() != want.Summary() || got.HistoryText() != want.HistoryText() || sched.String() != text {
		t.Errorf("replay differs:\nwant %s\ngot  %s\n%s", want.Summary(), got.Summary(), got.HistoryText())
	}
	ref := parsed.Clone()
	ref.Store = "reference"
	if _, res, err := harness.RunOn(ctx, dev, ref, harness.Controlled, harness.Ops(ref.Ops)); err != nil {
		t.Fatal(err)
	} else if res.Failed() {
		t.Errorf("the counterexample fails on the reference store too: %s", res.Summary())
	}
	// Two processes on one store whose instances cache records (cached)
	// serve each other stale sessions: the replica scenario, taking turns
	// request by request, catches it.
	if pr := runPair(t, dev, "replica", harness.Locked, "cached", scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: 10, Workers: 2}); pr.Failed == 0 {
		t.Errorf("per-instance caches passed %d replica schedules", pr.Schedules)
	} else {
		t.Logf("cached/replica on %s: %d of %d schedules failed: %s", pr.Device, pr.Failed, pr.Schedules, pr.FirstResult.Summary())
	}
	// Correct stores on the Local launcher: no failure.
	for _, st := range []string{"reference", "sqlite"} {
		pr := runPair(t, dev, "crash", harness.Locked, st, scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: 20, Workers: 2})
		if pr.Failed > 0 {
			t.Errorf("%s/crash on %s: %d failed: %s", st, pr.Device, pr.Failed, pr.FirstResult.Summary())
		}
	}
}

// The real child is deterministic: a schedule's explicit form replays on
// it to the same schedule and the same history, byte for byte.
func TestDeviceReplaysByteForByte(t *testing.T) {
	ctx := context.Background()
	dev := child()
	for _, name := range []string{"crash", "reinstall"} {
		s1, r1 := replaysByteForByte(t, dev, name, harness.Txn, 11)
		t.Logf("%s: %d ops, %d history lines, replayed identically", name, len(s1.Ops), len(r1.History))
	}
	// A backup restored under the device: the SQLite file and its WAL
	// written back, the device restarted from them, the contact's ratchet
	// ahead of it.
	s, err := harness.Parse(strings.NewReader(`badmac schedule v1
seed 12
scenario rollback
discipline locked
store sqlite
contacts alice:1
ops
send alice.0 m1
deliver m1
reply alice.0 r1
read r1
snapshot
send alice.0 m2
deliver m2
reply alice.0 r2
read r2
rollback
send alice.0 m3
deliver m3
reply alice.0 r3
read r3
`))
	if err != nil {
		t.Fatal(err)
	}
	_, r1, err := harness.RunOn(ctx, dev, s, harness.Controlled, harness.Ops(s.Ops))
	if err != nil {
		t.Fatal(err)
	}
	_, r2, err := harness.RunOn(ctx, dev, s, harness.Controlled, harness.Ops(s.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if r1.HistoryText() != r2.HistoryText() {
		t.Errorf("rollback: replay differs:\n%s\n---\n%s", r1.HistoryText(), r2.HistoryText())
	}
	if !strings.Contains(r1.HistoryText(), "rollback: storage restored from the backup") || r1.Counts().Delivered == len(r1.Messages) {
		t.Errorf("rollback restored nothing that mattered:\n%s", r1.HistoryText())
	}
	t.Logf("rollback: %s; lost to the crash %v\n%s", r1.Summary(), r1.LostToCrash, r1.HistoryText())
}

// replaysByteForByte runs scenario name's schedule of seed on dev, then its
// explicit form again: the same schedule and history, byte for byte, the
// schedule naming dev.
func replaysByteForByte(t *testing.T, dev procs.Device, name string, d harness.Discipline, seed uint64) (*harness.Schedule, *harness.Result) {
	t.Helper()
	ctx := context.Background()
	sc, err := scenarios.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	s1, r1, err := harness.RunOn(ctx, dev, sc.Setup(seed, d, "sqlite"), harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, seed))
	if err != nil {
		t.Fatal(err)
	}
	s2, r2, err := harness.RunOn(ctx, dev, s1, harness.Controlled, harness.Ops(s1.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if s1.String() != s2.String() || r1.HistoryText() != r2.HistoryText() {
		t.Errorf("%s: replay differs:\n%s\n---\n%s", name, r1.HistoryText(), r2.HistoryText())
	}
	if !strings.HasPrefix(s1.String(), harness.Version+"\ndevice "+dev.Name()+"\n") {
		t.Errorf("schedule does not name its device:\n%s", s1)
	}
	return s1, r1
}

// Check refuses what the child cannot run, in one line naming the device
// and what it lacks; RunOn stops there.
func TestDeviceCheck(t *testing.T) {
	dev := child()
	setup := func(scenario string, d harness.Discipline, store string) *harness.Schedule {
		sc, err := scenarios.Lookup(scenario)
		if err != nil {
			t.Fatal(err)
		}
		return sc.Setup(1, d, store)
	}
	other := setup("reply", harness.Locked, "sqlite")
	other.Device = "baileys@6.17.16"
	cases := []struct {
		s    *harness.Schedule
		mode harness.Mode
		want string
	}{
		{setup("overlap", harness.Locked, "sqlite"), harness.Controlled, "scenario overlap"},
		{setup("rollback", harness.Locked, "postgres"), harness.Controlled, "scenario rollback on postgres"},
		{setup("reply", harness.Whatsmeow, "sqlite"), harness.Controlled, "discipline whatsmeow"},
		{setup("reply", harness.Locked, "reference"), harness.Controlled, "store reference"},
		{setup("reply", harness.Locked, "nosuch"), harness.Controlled, "store nosuch"},
		{setup("reply", harness.Locked, "sqlite"), harness.Free, "mode free"},
		{other, harness.Controlled, "for device baileys@6.17.16"},
	}
	for _, c := range cases {
		err := dev.Check(c.s, c.mode)
		if err == nil || !strings.HasPrefix(err.Error(), "device procs: ") || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s/%s/%s %s: got %v, want one line naming procs and %q", c.s.Scenario, c.s.Discipline, c.s.Store, c.mode, err, c.want)
			continue
		}
		if _, _, err := harness.RunOn(context.Background(), dev, c.s, c.mode, harness.Ops(nil)); err == nil {
			t.Errorf("RunOn ran %s on procs", c.s.Scenario)
		}
	}
	// The op types the child implements (procsOps): a LID op is refused
	// with the uniform line, the same schedule without it is not.
	withOps := setup("reply", harness.Locked, "sqlite")
	withOps.Ops = []harness.Op{harness.SendOp{Peer: "alice.0", Msg: "m1"}, harness.DeliverOp{ID: "m1"}, harness.CrashOp{Mode: "kd"}}
	if err := dev.Check(withOps, harness.Controlled); err != nil {
		t.Errorf("send, deliver, crash refused: %v", err)
	}
	withOps.Ops = append(withOps.Ops, harness.ViaOp{Peer: "alice.0", Form: "lid"})
	if err := dev.Check(withOps, harness.Controlled); err == nil || err.Error() != "device procs does not implement op via" {
		t.Errorf("Check with a via op = %v, want the uniform refusal", err)
	}
	for _, sc := range deviceScenarios {
		for _, d := range []harness.Discipline{harness.Locked, harness.Txn} {
			if err := dev.Check(setup(sc, d, "sqlite"), harness.Controlled); err != nil {
				t.Errorf("%s/%s refused: %v", sc, d, err)
			}
		}
	}
}

// A non-durable setting of the real child is caught by a real SIGKILL: with
// session writes waiting in process memory (WriteBehind), a kill loses
// them and the restarted process decrypts from older records. The shrunk
// counterexample replays on the real child byte for byte, and the same ops
// on the durable child lose nothing; a clean stop (the child flushes at
// exit) loses nothing either.
func TestDeviceCatchesWriteBehindKill(t *testing.T) {
	dev := child()
	dev.WriteBehind = 3
	pr := runPair(t, dev, "crash", harness.Locked, "sqlite", scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: 20, Workers: 2, ShrinkBudget: testenv.Size(50, 200)})
	t.Logf("sqlite/crash on %s: %d of %d schedules failed (%d messages blamed)", pr.Device, pr.Failed, pr.Schedules, pr.Counts.Blamed)
	if pr.Failed == 0 || pr.First == nil {
		t.Fatalf("a child that keeps session writes in memory survived %d schedules with SIGKILLs", pr.Schedules)
	}
	first, want := pr.First, pr.FirstResult
	if want.Crashes == 0 {
		t.Errorf("counterexample without a crash: %s", want.Summary())
	}
	t.Logf("counterexample (schedule %d): %s\n%s", pr.FirstIndex, want.Summary(), first)
	replaysAndPassesDurable(t, dev, child(), first, want)
	if pr := runPair(t, dev, "restart", harness.Locked, "sqlite", scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: 6, Workers: 2}); pr.Failed > 0 {
		t.Errorf("clean stops lost writes of the write-behind child: %s", pr.FirstResult.Summary())
	}
}

// replaysAndPassesDurable replays the counterexample first of the broken
// child bad to the same failure, byte for byte, and runs its ops on the
// durable child, which must not fail.
func replaysAndPassesDurable(t *testing.T, bad, durable procs.Device, first *harness.Schedule, want *harness.Result) {
	t.Helper()
	ctx := context.Background()
	sched, got, err := harness.RunOn(ctx, bad, first, harness.Controlled, harness.Ops(first.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Failed() || got.HistoryText() != want.HistoryText() || sched.String() != first.String() {
		t.Errorf("replay on the real child differs:\nwant %s\ngot  %s\n%s", want.Summary(), got.Summary(), got.HistoryText())
	}
	s := first.Clone()
	s.Device = ""
	if _, res, err := harness.RunOn(ctx, durable, s, harness.Controlled, harness.Ops(s.Ops)); err != nil {
		t.Fatal(err)
	} else if res.Failed() {
		t.Errorf("the counterexample fails on the durable child too: %s\n%s", res.Summary(), res.HistoryText())
	}
}

// The registry's procs is the real child (its Exe, its Timeout), and runs
// a scenario's schedule; the same pair gives the same row for any number
// of workers.
func TestDeviceRegistryAndWorkers(t *testing.T) {
	ctx := context.Background()
	t.Setenv("BADMAC_PROCS_CHILD", "1") // the children this test binary starts act as badmac device
	op, err := devices.Open(ctx, "procs", devices.Options{Exe: os.Args[0], Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	dev, ok := op.Device.(procs.Device)
	if !ok || dev.Name() != "procs" || dev.Exe != os.Args[0] || dev.Timeout != time.Minute || strings.Join(op.Stores, ",") != "sqlite" {
		t.Fatalf("devices.Open(procs) = %#v (stores %v)", op.Device, op.Stores)
	}
	sc, _ := scenarios.Lookup("reply")
	sched, res, err := harness.RunOn(ctx, dev, sc.Setup(3, harness.Locked, "sqlite"), harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, 3))
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() || len(res.Messages) == 0 || sched.Device != "procs" {
		t.Fatalf("reply on the registry's procs: %s (%d messages, device %q)", res.Summary(), len(res.Messages), sched.Device)
	}
	var rows []string
	for _, w := range []int{1, 3} {
		pr := runPair(t, procs.Device{Local: true}, "crash", harness.Locked, "debounced", scenarios.Config{Mode: harness.Controlled, Seed: 2, Schedules: 12, Workers: w, ShrinkBudget: 50})
		if pr.First == nil {
			t.Fatalf("workers %d: no failure to compare", w)
		}
		rows = append(rows, fmt.Sprintf("%d %+v %d\n%s%s", pr.Failed, pr.Counts, pr.FirstIndex, pr.First, pr.FirstResult.HistoryText()))
	}
	if rows[0] != rows[1] {
		t.Errorf("workers 1 and 3 differ:\n%s\n---\n%s", rows[0], rows[1])
	}
}

// outcomes is each message's outcome and failed attempts' classes.
func outcomes(res *harness.Result) string {
	var b strings.Builder
	for _, m := range res.Messages {
		fmt.Fprintf(&b, "%s %s", m.ID, m.Outcome())
		for _, a := range m.Failures() {
			fmt.Fprintf(&b, " %s", a.Class)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// On a correct database the child, request by request, is the model run
// serially (the protocol baseline): every message ends the same, with the
// same failure classes, retry receipts and all. Hand schedules reach the
// paths generators reach rarely: a group message before its sender key
// (a forced receipt with keys), a contact's reinstall under a reply, a
// receipt arriving while the device is down, a redelivered copy under txn.
func TestDeviceMatchesTheModel(t *testing.T) {
	ctx := context.Background()
	hand := []string{`badmac schedule v1
seed 21
scenario group
discipline locked
store sqlite
contacts alice:1 bob:1
group g
ops
group alice.0 g1
group alice.0 g2
group bob.0 g3
deliver g2
deliver g3
deliver g1
`, `badmac schedule v1
seed 22
scenario reinstall
discipline locked
store sqlite
contacts alice:1
ops
send alice.0 m1
deliver m1
reinstall alice.0
reply alice.0 r1
read r1
crash
read r1.2
send alice.0 m2
restart
deliver m2
`, `badmac schedule v1
seed 23
scenario reorder
discipline txn
store sqlite
contacts alice:1
ops
send alice.0 m1
send alice.0 m2
deliver m2
dup m2
deliver m1
deliver m2.2
reply alice.0 r1
read r1
`}
	var scheds []*harness.Schedule
	for _, text := range hand {
		s, err := harness.Parse(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		scheds = append(scheds, s)
	}
	for _, name := range []string{"reorder", "reinstall", "group"} {
		sc, _ := scenarios.Lookup(name)
		for i := range 4 {
			seed := uint64(100 + i)
			s, _, err := child().Exec(ctx, sc.Setup(seed, harness.Locked, "sqlite"), harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, seed))
			if err != nil {
				t.Fatal(err)
			}
			scheds = append(scheds, s)
		}
	}
	failing := 0
	for _, s := range scheds {
		_, got, err := child().Exec(ctx, s, harness.Controlled, harness.Ops(s.Ops))
		if err != nil {
			t.Fatalf("%s seed %d: %v", s.Scenario, s.Seed, err)
		}
		base, err := harness.Baseline(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := outcomes(got), outcomes(base); g != w {
			t.Errorf("%s seed %d: the child and the model differ:\nchild:\n%smodel:\n%s\n%s", s.Scenario, s.Seed, g, w, got.HistoryText())
		}
		if strings.Contains(outcomes(got), " recovered") {
			failing++
		}
	}
	t.Logf("%d schedules, the same outcomes as the model's; %d with messages recovered by retry receipts", len(scheds), failing)
	if failing == 0 {
		t.Errorf("no schedule exercised a retry receipt")
	}
}
