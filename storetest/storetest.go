// Package storetest checks a whatsmeow key store from its author's own
// `go test`, the way badmac's CLI checks its built-in stores. The simple
// form takes a constructor of fresh in-memory stores:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func() (stores.Set, error) {
//			return stores.SetOf(mystore.New()), nil
//		})
//	}
//
// A store that persists anything takes the full form, an Opener over a
// directory, so that crashes, restarts, a second process and a backup
// restore reopen the store from what it really wrote:
//
//	func TestMyStore(t *testing.T) {
//		storetest.RunOpener(t, func(dir string) (stores.Set, io.Closer, error) {
//			s, err := mystore.Open(filepath.Join(dir, "keys.db"))
//			return stores.SetOf(s), s, err
//		})
//	}
//
// Both run direct conformance checks of every store method (16 goroutines
// at once among them), the scenarios under the controlled scheduler
// (deterministic, shrunk, replayable), and the same scenarios with real
// goroutines (meaningful under -race; reported with the seed and rerun).
// The schedules of a scenario run on Options.Workers goroutines at once
// (default GOMAXPROCS), so the constructor or Opener is called
// concurrently, once per schedule; what the test prints does not depend
// on the number of workers.
// The client is the locked discipline (one lock per Signal address across
// load→decrypt→store), and a message counts against the store only when it
// fares worse than on badmac's reference store under the same schedule, so
// what is reported is the store's. A failure says first what the store did
// wrong, from its call trace, then what production would show, then the
// shrunk schedule and the command that replays it.
package storetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// NewStore returns a fresh, empty store: the four whatsmeow interfaces. It
// cannot reopen what an earlier call returned; use an Opener for that.
// Schedules run on Options.Workers goroutines at once, so it is called
// concurrently, once per schedule.
type NewStore func() (stores.Set, error)

// Options tune Check; zero values are the defaults.
type Options struct {
	// Scenarios to run. Default: burst, reply, multi, group, reorder and
	// longlived; with an Opener also crash, restart, replica, overlap and
	// rollback.
	Scenarios []string
	// Schedules per scenario under the controlled scheduler; default 20.
	Schedules int
	// FreeSchedules per scenario with real goroutines; default 3, negative
	// for none.
	FreeSchedules int
	Seed          uint64 // default 1
	// Discipline of the client; default locked. Under another discipline
	// the client's own races are not charged to the store: a message
	// counts only when it fares worse than on the reference store.
	Discipline harness.Discipline
	// ShrinkBudget bounds the runs spent shrinking a failing schedule;
	// default 100, negative for none. $BADMAC_SHRINK_BUDGET overrides it.
	ShrinkBudget int
	// SkipConformance skips the direct method checks.
	SkipConformance bool
	// Workers is how many schedules (and shrink candidates) run at once;
	// default GOMAXPROCS, 1 for one at a time. Each run records its own
	// store calls and the results merge in schedule order, so what the
	// test prints is the same for any number. With more than one, the
	// constructor or Opener is called from several goroutines at once,
	// each call for a schedule of its own: a store whose instances share
	// state outside what the call returns (a package variable, one file
	// name for every dir) must guard it, and a store whose bug depends on
	// such shared state fails less reproducibly than with Workers: 1.
	Workers int
	// Client also runs the scenarios on the real whatsmeow Client over
	// your store (realclient.Device; those it can run: not group, multi,
	// longlived or the crash scenarios), ClientSchedules each (default 4)
	// with inline and with async replies. Inline failures fail the test;
	// async rates are logged (whatsmeow's own send/receive race).
	Client          bool
	ClientSchedules int
}

// TB is the part of testing.TB that Check uses.
type TB interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Environment variables a user sets on the command storetest prints.
const (
	// ReplayEnv names a schedule file to replay instead of the suite.
	ReplayEnv = "BADMAC_REPLAY"
	// HTMLEnv, with ReplayEnv, writes the replay's timeline as HTML there.
	HTMLEnv = "BADMAC_HTML"
	// ShrinkEnv raises the shrink budget (with ReplayEnv: shrinks the file).
	ShrinkEnv = "BADMAC_SHRINK_BUDGET"
)

// LongLived is the scenario whose records grow as after months of use
// (scenarios.LongLived: badmac replay knows it too).
var LongLived = scenarios.LongLived

// reopening are the scenarios added to the default set for an Opener.
var reopening = []string{"crash", "restart", "replica", "overlap", "rollback"}

// Run checks an in-memory store with the default options.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	Check(t, newStore, Options{})
}

// RunOpener checks a store that persists, through an Opener, with the
// default options.
func RunOpener(t *testing.T, open Opener) {
	t.Helper()
	CheckOpener(t, open, Options{})
}

// Check runs the suite (or the schedule named by $BADMAC_REPLAY) against
// stores from a constructor. Scenarios that need to reopen the store are
// refused: use CheckOpener.
func Check(t TB, newStore NewStore, o Options) {
	t.Helper()
	check(t, &subject{newStore: newStore, tally: newTally()}, o)
}

// CheckOpener runs the suite (or the schedule named by $BADMAC_REPLAY)
// against the store the Opener opens.
func CheckOpener(t TB, open Opener, o Options) {
	t.Helper()
	check(t, &subject{open: open, tally: newTally()}, o)
}

func lookup(name string) (scenarios.Scenario, error) {
	if name == LongLived.Name {
		return LongLived, nil
	}
	return scenarios.Lookup(name)
}

func check(t TB, s *subject, o Options) {
	t.Helper()
	ctx := context.Background()
	if o.Schedules == 0 {
		o.Schedules = 20
	}
	if o.FreeSchedules == 0 {
		o.FreeSchedules = 3
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Discipline == "" {
		o.Discipline = harness.Locked
	}
	if o.ShrinkBudget == 0 {
		o.ShrinkBudget = 100
	}
	if v := os.Getenv(ShrinkEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("storetest: $%s=%q: want a number of runs", ShrinkEnv, v)
			return
		}
		o.ShrinkBudget = n
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = append(append([]string(nil), scenarios.Default...), LongLived.Name)
		if s.open != nil {
			o.Scenarios = append(o.Scenarios, reopening...)
		}
	}
	if _, err := harness.ParseDiscipline(string(o.Discipline)); err != nil {
		t.Fatalf("storetest: %v", err)
		return
	}
	if o.Discipline == harness.Txn {
		t.Fatalf("storetest: the txn discipline needs the store's DoDecryptionTxn, which storetest does not drive; use locked, whatsmeow or concurrent")
		return
	}
	var scs []scenarios.Scenario
	for _, name := range o.Scenarios {
		sc, err := lookup(name)
		if err != nil {
			t.Fatalf("storetest: %v", err)
			return
		}
		if need := needs[name]; need != "" && s.open == nil {
			t.Fatalf("storetest: scenario %s needs a store that can %s, and a constructor cannot: "+
				"pass an Opener (storetest.RunOpener / CheckOpener) that opens the store over a directory, so that %s",
				name, capWords[need], capWhy[need])
			return
		}
		scs = append(scs, sc)
	}
	who := caller()
	who.test = t.Name()
	if path := os.Getenv(ReplayEnv); path != "" {
		replay(t, s, path, o, who)
		return
	}
	if !o.SkipConformance {
		findings, skipped, err := conformance(ctx, s)
		if err != nil {
			t.Fatalf("storetest: %v", err)
			return
		}
		if len(findings) > 0 {
			t.Errorf("storetest: conformance: what the store did wrong (direct calls, no scenario):\n  %s", strings.Join(findings, "\n  "))
		} else {
			t.Logf("storetest: conformance: every method answered as whatsmeow expects")
		}
		if len(skipped) > 0 {
			t.Logf("storetest: conformance checks not run (a constructor cannot reopen): %s", strings.Join(skipped, ", "))
		}
	}
	before := s.tally.counts()
	pool := harness.NewPool(o.Workers)
	for _, sc := range scs {
		n := o.Schedules
		if sc.Name == LongLived.Name {
			n = max(2, n/5) // each is ten schedules' work
		}
		if !runScenario(ctx, t, s, sc, o, harness.Controlled, n, who, pool) {
			continue // one failure per scenario is enough to read
		}
		// Two processes race each other in the client whatever the store
		// does (with real goroutines, replica's turns overlap too), and a
		// contact that starts a new session or reinstalls while messages
		// are in flight meets libsignal's own limits (a late message on
		// the old session, docs/design.md §3) in an order the controlled
		// rerun on the reference store does not repeat: only that rerun can
		// tell the store's part, so these scenarios have no real-goroutine
		// run.
		if o.FreeSchedules > 0 && sc.Instances <= 1 && sc.Crash != scenarios.CrashRekey && sc.Crash != scenarios.CrashReinstall {
			runScenario(ctx, t, s, sc, o, harness.Free, o.FreeSchedules, who, pool)
		}
	}
	if o.Client {
		runClient(ctx, t, s, scs, o, who)
	}
	s.tally.mu.Lock()
	t.Logf("storetest: largest record the store was handed: %s (%s); largest read back: %s (%s)",
		sizeString(s.tally.maxWritten), s.tally.maxWrittenBy, sizeString(s.tally.maxRead), s.tally.maxReadBy)
	s.tally.mu.Unlock()
	if only := s.tally.notIncreased(before); len(only) > 0 && len(scs) > 0 {
		t.Logf("storetest: called by the conformance checks only, by no scenario: %s", strings.Join(only, ", "))
	}
	if !o.SkipConformance {
		if un := s.tally.uncalled(); len(un) > 0 {
			t.Errorf("storetest: never called: %s. whatsmeow's interfaces have methods this version of storetest does not exercise; update badmac", strings.Join(un, ", "))
		}
	}
}

var capWords = map[string]string{capReopen: "reopen what it persisted", capInstances: "open two instances at once"}
var capWhy = map[string]string{
	capReopen:    "a crash or restart reopens what your store really wrote (a constructor would hand back the same in-memory object: a silent pass)",
	capInstances: "two processes open your store over one location (a constructor would hand both the same object)",
}

// scheduleOut is what one schedule of runScenario left: enough to count
// it, merge its tally in order, and report it if it is the first failure.
type scheduleOut struct {
	done     bool
	err      error // already worded for the test
	messages int
	failed   bool
	tally    *tally
	// The rest only for the lowest-numbered failing schedule so far.
	sched *harness.Schedule
	res   *harness.Result
	finds []string
	worse []string
}

// runScenario runs n schedules of sc in mode on the pool and reports the
// first failure. It returns false when a schedule failed. Each schedule
// records into a runLog of its own; counts, tallies and the reported
// failure (the lowest-numbered failing schedule) are taken in schedule
// order, so the output is that of running them one after another.
func runScenario(ctx context.Context, t TB, s *subject, sc scenarios.Scenario, o Options, mode harness.Mode, n int, who testRef, pool *harness.Pool) bool {
	t.Helper()
	outs := make([]scheduleOut, n)
	var (
		mu      sync.Mutex
		next    int
		lowest  = n // lowest failing schedule so far: later ones drop theirs
		stopped bool
	)
	one := func(i int) {
		so := &outs[i]
		seed := scenarios.SeedFor(o.Seed, i)
		setup := sc.Setup(seed, o.Discipline, StoreName)
		log := newRunLog()
		sched, res, err := harness.Execute(ctx, setup, s.variant(log), mode, scenarios.NewGenerator(sc, scenarios.Random, seed))
		if err != nil {
			so.err = fmt.Errorf("storetest: scenario %s (%s) seed %d: %w", sc.Name, mode, seed, err)
			return
		}
		so.tally = log.tally
		finds := diagnoseAll(log.traces())
		so.messages = len(res.Messages)
		var worse []string
		if res.Failed() {
			if worse, err = worseThanReference(ctx, sched, res, mode); err != nil {
				so.err = fmt.Errorf("storetest: scenario %s seed %d on the reference store: %w", sc.Name, seed, err)
				return
			}
		}
		so.done = true
		// With real goroutines, calls to one key from two tasks overlap and
		// the trace order is not the store's: findings explain a blamed
		// message but do not fail a schedule by themselves.
		if len(worse) == 0 && (len(finds) == 0 || mode == harness.Free) {
			return
		}
		so.failed = true
		mu.Lock()
		defer mu.Unlock()
		if i < lowest {
			if lowest < n {
				f := &outs[lowest]
				f.sched, f.res, f.finds, f.worse = nil, nil, nil, nil
			}
			lowest = i
			so.sched, so.res, so.finds, so.worse = sched, res, finds, worse
		}
	}
	var wg sync.WaitGroup
	for range min(pool.Size(), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := stopped
				mu.Unlock()
				// After an error no new schedule starts: those before it
				// have all started (they are taken in order) and finish.
				if i >= n || stop {
					return
				}
				if err := pool.Acquire(ctx); err != nil {
					outs[i].err = err
					return
				}
				one(i)
				pool.Release()
				if outs[i].err != nil {
					mu.Lock()
					stopped = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	var fo *scheduleOut
	failed, messages := 0, 0
	for i := range outs {
		out := &outs[i]
		if out.err != nil {
			t.Fatalf("%v", out.err)
			return false
		}
		if !out.done {
			t.Fatalf("storetest: scenario %s (%s): schedule %d did not run", sc.Name, mode, i)
			return false
		}
		s.tally.merge(out.tally)
		messages += out.messages
		if out.failed {
			failed++
			if fo == nil {
				fo = out
			}
		}
	}
	var (
		first              *harness.Schedule
		firstRes           *harness.Result
		firstFinds, blamed []string
	)
	if fo != nil {
		first, firstRes, firstFinds, blamed = fo.sched, fo.res, fo.finds, fo.worse
	}
	label := map[harness.Mode]string{harness.Controlled: "controlled interleavings", harness.Free: "real goroutines"}[mode]
	if first == nil {
		t.Logf("storetest: %s (%s, %s client): %d schedules, %d messages, no failures", sc.Name, label, o.Discipline, n, messages)
		return true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "storetest: scenario %s (%s, %s client): %d of %d schedules failed\n", sc.Name, label, o.Discipline, failed, n)
	if mode == harness.Free {
		writeFailure(&b, firstFinds, firstRes, blamed)
		fmt.Fprintf(&b, "seed %d (real goroutines: the interleaving is not recorded; rerun, ideally with -race):\n  %s\n",
			first.Seed, who.command(nil))
		t.Errorf("%s", b.String())
		return false
	}
	if o.ShrinkBudget > 0 {
		sh, err := shrink(ctx, s, first, o.ShrinkBudget, pool)
		if err != nil {
			t.Fatalf("storetest: shrinking %s seed %d: %v", sc.Name, first.Seed, err)
			return false
		}
		if sh != nil {
			first, firstRes, firstFinds, blamed = sh.sched, sh.res, sh.finds, sh.blamed
		}
	}
	writeFailure(&b, firstFinds, firstRes, blamed)
	// A file of this process's own: two go test processes at once must not
	// share or delete each other's; within the process the name depends
	// only on the test, scenario and seed.
	path := filepath.Join(os.TempDir(), fmt.Sprintf("badmac-%s-%s-seed%d-pid%d.txt", sanitize(t.Name()), sc.Name, first.Seed, os.Getpid()))
	cmd := who.command([]string{ReplayEnv + "=" + path})
	text := annotate(first.String(), "# recorded by storetest in "+who.test+" ("+who.pkg+") against your store\n# replay: "+cmd+"\n")
	err := os.WriteFile(path, []byte(text), 0o644)
	if err != nil {
		cmd = fmt.Sprintf("(could not save the schedule: %v)", err)
	}
	fmt.Fprintf(&b, "shrunk schedule (%d ops):\n%s", len(first.Ops), first)
	fmt.Fprintf(&b, "replay (from any directory of your module; add %s=timeline.html for an HTML timeline, %s=N to shrink further):\n  %s\n",
		HTMLEnv, ShrinkEnv, cmd)
	t.Errorf("%s", b.String())
	return false
}

func diagnoseAll(trs []*trace) []string {
	var out []string
	for _, tr := range trs {
		out = append(out, diagnose(tr.snapshot(), 4)...)
	}
	return out
}

// writeFailure writes what the store did wrong, then what production shows.
func writeFailure(b *strings.Builder, finds []string, res *harness.Result, blamed []string) {
	b.WriteString("what the store did wrong (from its call trace):\n")
	if len(finds) == 0 {
		b.WriteString("  no store call returned other than what was last written: the messages below fare worse than on the reference store for another reason (timing of a call, an error the store returned)\n")
	}
	for _, f := range finds {
		b.WriteString("  " + f + "\n")
	}
	b.WriteString("what production would show:\n")
	b.WriteString(symptoms(res, blamed))
}

// annotate inserts comment lines after a schedule's version line.
func annotate(sched, comment string) string {
	first, rest, _ := strings.Cut(sched, "\n")
	return first + "\n" + comment + rest
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '\\' {
			return '_'
		}
		return r
	}, s)
}

// testRef is where the user's test lives: what a replay command names.
type testRef struct {
	pkg  string // import path of the test's package
	test string // t.Name()
}

var selfPkg = reflect.TypeFor[Options]().PkgPath()

// caller finds the user's test function on the stack: the first frame
// outside this package. Its package path, not ".", makes the printed
// command work from any directory of the user's module.
func caller() testRef {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		pkg := funcPackage(f.Function)
		if pkg != "" && pkg != selfPkg && pkg != "testing" && pkg != "runtime" {
			return testRef{pkg: strings.TrimSuffix(pkg, "_test")}
		}
		if !more {
			return testRef{pkg: "."}
		}
	}
}

// funcPackage is the package path of a function name from runtime.Frame:
// "example.com/m/sub_test.TestX.func1" → "example.com/m/sub_test".
func funcPackage(fn string) string {
	slash := strings.LastIndexByte(fn, '/')
	dot := strings.IndexByte(fn[slash+1:], '.')
	if dot < 0 {
		return ""
	}
	return fn[:slash+1+dot]
}

// command is the go test command that runs this test again with env set.
func (r testRef) command(env []string) string {
	var parts []string
	for _, p := range strings.Split(r.test, "/") {
		parts = append(parts, "^"+regexp.QuoteMeta(p)+"$")
	}
	cmd := fmt.Sprintf("go test -count=1 -run '%s' %s", strings.Join(parts, "/"), r.pkg)
	if len(env) > 0 {
		cmd = strings.Join(env, " ") + " " + cmd
	}
	return cmd
}
