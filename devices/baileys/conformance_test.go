package baileys

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/badmac/badmac/devices/godevice"
	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/devproto/devprototest"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// TestMain lets the test binary be the Go device (the protocol's second
// implementation) when the conformance test starts it as a child.
func TestMain(m *testing.M) {
	if os.Getenv("BADMAC_GODEVICE") == "1" {
		if err := godevice.Serve(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString("godevice: " + err.Error() + "\n")
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// goOptions start the Go device: this test binary as a child (TestMain).
var goOptions = Options{Argv: []string{os.Args[0]}, BaselineVariant: "concurrent", Variants: []string{"concurrent"}}

// impl is one implementation of the device protocol.
type impl struct {
	name    string
	opt     Options
	version string
	serial  string // a variant that delivers everything when run one task at a time
}

// impls returns the Go device and, when installed, the Baileys adapter at
// both versions. Without node_modules the Baileys ones are skipped locally
// and fail under CI=true (.ci/run installs them).
func impls(t *testing.T) []impl {
	t.Setenv("BADMAC_GODEVICE", "1") // inherited by the Go device child only; the adapter ignores it
	out := []impl{{name: godevice.Name, opt: goOptions, serial: "concurrent"}}
	if _, err := installedAdapter(); err != nil {
		needAdapter(t, err)
		return out
	}
	for _, v := range Versions {
		out = append(out, impl{name: "baileys@" + v, version: v, serial: "locked"})
	}
	return out
}

// installedAdapter installs the adapter's pinned packages on first use
// (testenv.Baileys), then finds the adapter as the devices do.
func installedAdapter() (string, error) {
	if _, err := testenv.Baileys(); err != nil {
		return "", err
	}
	return AdapterDir()
}

func needAdapter(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and the Baileys adapter is not usable: %v", err)
	}
	if errors.Is(err, ErrNotInstalled) || errors.Is(err, testenv.ErrMissing) {
		t.Logf("skipping the Baileys side: %v", err)
		return
	}
	t.Fatal(err)
}

// One conformance test for every implementation of the protocol: the
// suite beside devproto (devprototest: hello, ids, strict lines, the ops,
// round trips with a libsignal peer, refusals, load after a kill for the
// adapter's files), then a whole generated schedule that must deliver
// everything on a variant that is correct one task at a time, and replay
// to the same history.
func TestConformance(t *testing.T) {
	ctx := context.Background()
	for _, im := range impls(t) {
		t.Run(im.name, func(t *testing.T) {
			st, err := starter(im.version, im.opt)
			if err != nil {
				t.Fatal(err)
			}
			start := func(ctx context.Context, dir string, _ int) (*devproto.Conn, error) { return st(ctx, dir) }
			// The adapter keeps its state in files (useMultiFileAuthState);
			// the Go device in memory.
			devprototest.TestDevice(t, nil, devprototest.Options{Start: start, Variant: im.serial, Durable: im.version != ""})
			rn, err := NewRunner(ctx, im.version, im.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer rn.Close()
			// One task at a time (every task stepped through its gates as
			// it starts): the protocol itself, no interleaving to blame.
			// The harness's own scenario drives it.
			sc, _ := scenarios.Lookup("reply")
			s := sc.Setup(3, harness.Locked, im.serial)
			_, res, err := rn.exec(ctx, s, true, scenarios.NewGenerator(sc, scenarios.Random, 3))
			if err != nil {
				t.Fatal(err)
			}
			cnt := res.Counts()
			if cnt.Messages <= sc.Messages || cnt.Delivered != cnt.Messages {
				t.Fatalf("%s: %d of %d messages delivered cleanly (want more than %d: replies too); history:\n%s", im.serial,
					cnt.Delivered, cnt.Messages, sc.Messages, strings.Join(res.History, "\n"))
			}
			// An explicit schedule replays to the same history.
			sched, res1, err := rn.exec(ctx, s, false, scenarios.NewGenerator(sc, scenarios.Random, 3))
			if err != nil {
				t.Fatal(err)
			}
			_, again, err := rn.exec(ctx, sched, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := res1.HistoryText(), again.HistoryText(); a != b {
				t.Fatalf("replay differs:\n%s\n---\n%s", a, b)
			}
		})
	}
}

// The Go device under the concurrent discipline loses ratchet steps in the
// reply scenario (docs/design.md §3), as the in-process harness finds: the
// harness's reply scenario, unchanged, runs on the protocol path through
// scenarios.RunPairs, fails, and its counterexample replays through
// harness.RunOn to the same failure, byte for byte.
func TestGoDeviceConcurrentFails(t *testing.T) {
	ctx := context.Background()
	t.Setenv("BADMAC_GODEVICE", "1")
	dev, err := Open(ctx, "", goOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	sc, _ := scenarios.Lookup("reply")
	prs, err := scenarios.RunPairs(ctx, []scenarios.Pair{{Scenario: sc, Discipline: harness.Locked,
		Variant: stores.Variant{Name: "concurrent"}, Device: dev}}, scenarios.Config{Mode: harness.Controlled, Seed: 1,
		Schedules: 8, ShrinkBudget: 10, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	pr := prs[0]
	if pr.Failed == 0 || pr.First == nil {
		t.Fatalf("no failure in %d schedules of concurrent/reply", pr.Schedules)
	}
	if pr.Device != godevice.Name || pr.First.Device != godevice.Name {
		t.Fatalf("row device %q, schedule device %q; want %s", pr.Device, pr.First.Device, godevice.Name)
	}
	text := pr.First.String()
	parsed, err := harness.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	sched, again, err := harness.RunOn(ctx, dev, parsed, harness.Controlled, harness.Ops(parsed.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Failed() || again.Summary() != pr.FirstResult.Summary() || sched.String() != text ||
		again.HistoryText() != pr.FirstResult.HistoryText() {
		t.Fatalf("replay: %q, want %q (or the schedule or history differ)", again.Summary(), pr.FirstResult.Summary())
	}
	t.Logf("%d of %d schedules failed; first (shrunk to %d ops): %s", pr.Failed, pr.Schedules, len(pr.First.Ops), pr.FirstResult.Summary())
}

// Check refuses what the adapter lacks, in one line naming the device.
func TestCheckRefuses(t *testing.T) {
	d := &Device{name: "baileys@6.17.16", variants: Variants}
	ok := &harness.Schedule{Scenario: "reply", Discipline: harness.Locked, Store: "stock", Instances: 1}
	if err := d.Check(ok, harness.Controlled); err != nil {
		t.Fatalf("reply/stock refused: %v", err)
	}
	for _, name := range []string{"burst", "reply", "reorder", "multi", "crash", "torn", "restart"} {
		sc, _ := scenarios.Lookup(name)
		if err := d.Check(sc.Setup(1, harness.Locked, "locked"), harness.Controlled); err != nil {
			t.Errorf("scenario %s refused: %v", name, err)
		}
	}
	with := func(f func(s *harness.Schedule)) *harness.Schedule { s := ok.Clone(); f(s); return s }
	for _, c := range []struct {
		s    *harness.Schedule
		mode harness.Mode
		want string
	}{
		{ok, harness.Free, "mode free"},
		{with(func(s *harness.Schedule) { s.Store = "sqlite" }), harness.Controlled, `store "sqlite"`},
		{with(func(s *harness.Schedule) { s.Device = "procs" }), harness.Controlled, "for device procs"},
		{with(func(s *harness.Schedule) { s.Instances = 2 }), harness.Controlled, "2 instances"},
		{with(func(s *harness.Schedule) { s.Group = "group" }), harness.Controlled, "group messages"},
		{with(func(s *harness.Schedule) { s.Scenario = "group" }), harness.Controlled, "scenario group"},
		{with(func(s *harness.Schedule) { s.Scenario = "overlap" }), harness.Controlled, "scenario overlap (2 instances"},
		{with(func(s *harness.Schedule) { s.Scenario = "replica" }), harness.Controlled, "scenario replica"},
		{with(func(s *harness.Schedule) { s.Scenario = "rollback" }), harness.Controlled, "snapshot/rollback"},
		{with(func(s *harness.Schedule) { s.Scenario = "reinstall" }), harness.Controlled, "op reinstall"},
		{with(func(s *harness.Schedule) { s.Ops = []harness.Op{harness.RekeyOp{Peer: "alice.0"}} }), harness.Controlled, "does not implement op rekey"},
		{with(func(s *harness.Schedule) { s.Ops = []harness.Op{harness.DeliverOp{ID: "m1", Inst: 1}} }), harness.Controlled, "instance 1"},
	} {
		err := d.Check(c.s, c.mode)
		if err == nil || !strings.HasPrefix(err.Error(), "device baileys@6.17.16 ") || !strings.Contains(err.Error(), c.want) ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf("Check(%s, %s) = %v; want one line naming the device and %q", c.s.Scenario, c.mode, err, c.want)
		}
	}
}
