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
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
	// Schedules per scenario under the controlled scheduler; default 20,
	// negative for none.
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
	// Conformance, when set, runs only the direct checks of these names
	// (ConformanceChecks lists them); an unknown name is an error.
	Conformance []string
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
	// async rates are logged (whatsmeow's own send/receive race). It needs
	// the real client in the test binary: import _
	// "github.com/badmac/badmac/storetest/client" (without, the test
	// fails saying so).
	Client          bool
	ClientSchedules int
	// SingleProcess says your store is only ever opened by one process at
	// a time (say, it loads a file into memory at Open and writes it out
	// whole: a second process would not see the first one's writes). With
	// an Opener, storetest then runs no two instances at once: replica,
	// overlap, the direct check "two instances at once" and combined's
	// second process are not run, each saying why. Without it, a store that
	// opens a second instance over one dir is run with two processes, and
	// one that answers from its own copy fails there. A lock on dir that
	// refuses a second Open says the same, and also keeps two processes
	// from losing writes in production.
	SingleProcess bool
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

// FirstContact is the bot writing first: to every device of contacts with
// several devices, with no session yet, so the send path asks the store
// for sessions it does not have and builds them from fetched bundles
// (whatsmeow send.go: a device left out of GetManySessions' answer gets no
// bundle and no message); then the conversation goes on.
var FirstContact = scenarios.Scenario{Name: "firstcontact",
	Doc:      "the bot writes first to contacts with several devices and no session, then a conversation",
	Contacts: []harness.Contact{{User: "alice", Devices: 3}, {User: "bob", Devices: 2}},
	Messages: 8, Reply: 0.5, First: true}

// Combined is every feature at once, as a real bot's store meets them:
// group messages and direct replies, contacts with several devices,
// out-of-order and redelivered messages, contacts starting new sessions
// (records grow as after months), clean restarts, crashes, a backup
// restored and a second process on the same store, in one conversation.
// With a store that cannot open two instances at once, or cannot be
// rolled back, the combination leaves that feature out and says so.
var Combined = scenarios.Scenario{Name: "combined",
	Doc:      "groups, replies, several devices, reordering, new sessions, restarts, crashes, a backup restore and a second process, all in one conversation",
	Contacts: []harness.Contact{{User: "alice", Devices: 2}, {User: "bob", Devices: 1}, {User: "carol", Devices: 1}},
	Group:    true, Messages: 24, Reply: 0.6, Reorder: true, Instances: 2, Overlap: true, Crashes: 90,
	Mix: []scenarios.CrashKind{scenarios.CrashRekey, scenarios.CrashRekey, scenarios.CrashRekey, scenarios.CrashRekey, scenarios.CrashRekey, scenarios.CrashRekey,
		scenarios.CrashRestart, scenarios.CrashRandom, scenarios.CrashRollback}}

// combinedFor is Combined as far as the store can go, and what it leaves
// out.
func combinedFor(s *subject) (scenarios.Scenario, []string) {
	sc := Combined
	var out []string
	if s.open == nil {
		sc.Instances, sc.Overlap = 1, false
		sc.Mix = []scenarios.CrashKind{scenarios.CrashRekey}
		return sc, []string{"restarts, crashes, a backup restore and a second process (a constructor cannot reopen)"}
	}
	if why := s.lacks(capInstances); why != "" {
		sc.Instances, sc.Overlap = 1, false
		out = append(out, "a second process ("+why+")")
	}
	if why := s.lacks(capRollback); why != "" {
		sc.Mix = slices.DeleteFunc(slices.Clone(sc.Mix), func(k scenarios.CrashKind) bool { return k == scenarios.CrashRollback })
		out = append(out, "a backup restore ("+why+")")
	}
	return sc, out
}

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
	for _, sc := range []scenarios.Scenario{LongLived, FirstContact, Combined} {
		if name == sc.Name {
			return sc, nil
		}
	}
	return scenarios.Lookup(name)
}

func check(t TB, s *subject, o Options) {
	t.Helper()
	ctx := context.Background()
	if child, mine := isChild(t.Name()); child {
		// This process is a store server (child.go): the test that started
		// it sees the results, this one serves its store or does nothing.
		if mine && s.open != nil {
			serveChild(t.Name(), s.open) // never returns
		}
		return
	}
	s.test = t.Name()
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
	asked := len(o.Scenarios) > 0
	if !asked {
		o.Scenarios = append(append([]string(nil), scenarios.Default...), LongLived.Name, FirstContact.Name, Combined.Name)
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
	if s.open != nil {
		c, err := s.probe(ctx)
		if err != nil {
			t.Fatalf("storetest: %v", err)
			return
		}
		if o.SingleProcess {
			c.lacks[capInstances] = singleProcess
		}
		s.caps = c
	}
	var scs []scenarios.Scenario
	for _, name := range o.Scenarios {
		sc, err := lookup(name)
		if err != nil {
			t.Fatalf("storetest: %v", err)
			return
		}
		if name == Combined.Name {
			var left []string
			sc, left = combinedFor(s)
			if len(left) > 0 {
				t.Logf("storetest: scenario combined without %s", strings.Join(left, ", "))
			}
		}
		need := scenarioNeeds(sc)
		if need != "" && s.open == nil {
			t.Fatalf("storetest: scenario %s needs a store that can %s, and a constructor cannot: "+
				"pass an Opener (storetest.RunOpener / CheckOpener) that opens the store over a directory, so that %s",
				name, capWords[need], capWhy[need])
			return
		}
		if why := s.lacks(need); why != "" {
			// Refused, never run and blamed; asked for by name and not run
			// is not a pass.
			if asked {
				t.Errorf("storetest: scenario %s not run: %s", name, why)
			} else {
				t.Logf("storetest: scenario %s not run: %s", name, why)
			}
			continue
		}
		scs = append(scs, sc)
	}
	who := caller()
	who.test = t.Name()
	if path := os.Getenv(ReplayEnv); path != "" {
		replay(t, s, path, o, who)
		return
	}
	for _, name := range o.Conformance {
		if !slices.Contains(ConformanceChecks(), name) {
			t.Fatalf("storetest: Options.Conformance: unknown check %q (known: %s)", name, strings.Join(ConformanceChecks(), "; "))
			return
		}
	}
	// ran counts what was judged: a check, a scenario's schedules, the
	// real client's runs. A test that judged nothing is not a pass.
	ran := 0
	if o.Client {
		ran++ // runClient fails when it has nothing to run
	}
	if !o.SkipConformance {
		findings, skipped, err := conformance(ctx, s, o.Conformance)
		selected := len(o.Conformance)
		if selected == 0 {
			selected = len(conformanceChecks)
		}
		ran += selected - len(skipped)
		if err != nil {
			t.Fatalf("storetest: %v", err)
			return
		}
		if len(findings) > 0 {
			hint := ""
			if slices.ContainsFunc(findings, func(f string) bool { return strings.HasPrefix(f, twoInstances+":") }) {
				hint = "\n" + twoProcessHint
			}
			t.Errorf("storetest: conformance: what the store did wrong (direct calls, no scenario):\n  %s%s", strings.Join(findings, "\n  "), hint)
		} else {
			t.Logf("storetest: conformance: every method answered as whatsmeow expects")
		}
		if len(skipped) > 0 {
			t.Logf("storetest: conformance checks not run: %s", strings.Join(skipped, "; "))
		}
	}
	before := s.tally.counts()
	pool := harness.NewPool(o.Workers)
	var slowest time.Duration
	for i, sc := range scs {
		if left, ok := timeLeft(t); ok && left < slowest+deadlineMargin {
			var names []string
			for _, sc := range scs[i:] {
				names = append(names, sc.Name)
			}
			t.Errorf("storetest: stopped before scenario %s: go test's -timeout ends in %s and the slowest scenario so far took %s; not run, so not judged: %s. Run again with a longer timeout (go test -timeout 60m)",
				sc.Name, left.Round(time.Second), slowest.Round(time.Second), strings.Join(names, ", "))
			return
		}
		began := time.Now()
		n := o.Schedules
		if n > 0 && (sc.Name == LongLived.Name || sc.Name == Combined.Name) {
			n = max(2, n/5) // each is ten schedules' work
		}
		if n > 0 {
			ran++
			if !runScenario(ctx, t, s, sc, o, harness.Controlled, n, who, pool) {
				continue // one failure per scenario is enough to read
			}
		}
		// Two processes race each other in the client whatever the store
		// does (with real goroutines, replica's turns overlap too), and a
		// contact that starts a new session or reinstalls while messages
		// are in flight meets libsignal's own limits (a late message on
		// the old session, docs/design.md §3): these scenarios have no
		// real-goroutine run.
		if o.FreeSchedules > 0 && sc.Instances <= 1 && sc.Crash != scenarios.CrashRekey && sc.Crash != scenarios.CrashReinstall && len(sc.Mix) == 0 {
			ran++
			runFree(ctx, t, s, sc, o, who, pool)
		}
		slowest = max(slowest, time.Since(began))
	}
	if ran == 0 {
		t.Errorf("storetest: nothing was run, so nothing was judged (no direct check, no scenario schedule: Schedules and FreeSchedules negative, " +
			"SkipConformance, or every scenario asked for was refused): a store is not passed on nothing")
		return
	}
	if o.Client {
		runClient(ctx, t, s, scs, o, who)
	}
	s.tally.mu.Lock()
	t.Logf("storetest: largest record the store was handed: %s (%s); largest read back: %s (%s)",
		sizeString(s.tally.maxWritten), s.tally.maxWrittenBy, sizeString(s.tally.maxRead), s.tally.maxReadBy)
	s.tally.mu.Unlock()
	if only := s.tally.notIncreased(before); len(only) > 0 && len(scs) > 0 && len(o.Conformance) == 0 {
		if o.SkipConformance {
			t.Logf("storetest: called by no scenario (and the conformance checks were skipped): %s", strings.Join(only, ", "))
		} else {
			t.Logf("storetest: called by the conformance checks only, by no scenario: %s", strings.Join(only, ", "))
		}
	}
	if !o.SkipConformance && len(o.Conformance) == 0 {
		if un := s.tally.uncalled(); len(un) > 0 {
			t.Errorf("storetest: never called: %s. whatsmeow's interfaces have methods this version of storetest does not exercise; update badmac", strings.Join(un, ", "))
		}
	}
}

// deadlineMargin is what storetest keeps free before go test's -timeout:
// the report, and the shrinking of a failure found late.
const deadlineMargin = 30 * time.Second

// timeLeft is the time until the test's deadline (go test -timeout), when
// t has one. storetest stops before a scenario that would not fit, with a
// failure naming what was not run: a slow store (a database per schedule)
// on a loaded machine would otherwise end in go test's panic and goroutine
// dump, with nothing said of what passed. Whether it stops depends on the
// machine's speed; what it says when it does, and that it fails, does not.
func timeLeft(t TB) (time.Duration, bool) {
	d, ok := t.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return 0, false
	}
	end, ok := d.Deadline()
	if !ok {
		return 0, false
	}
	return time.Until(end), true
}

// scenarioNeeds is the capability a scenario needs beyond a fresh store:
// by name for the harness's scenarios, by what it does for storetest's own.
func scenarioNeeds(sc scenarios.Scenario) string {
	if need := needs[sc.Name]; need != "" {
		return need
	}
	kinds := append([]scenarios.CrashKind{sc.Crash}, sc.Mix...)
	need := ""
	for _, k := range kinds {
		switch k {
		case scenarios.CrashRollback:
			return capRollback
		case scenarios.CrashRandom, scenarios.CrashRestart, scenarios.CrashTorn:
			need = capReopen
		}
	}
	if sc.Instances > 1 {
		return capInstances
	}
	return need
}

// singleProcess is why two instances are not run under
// Options.SingleProcess.
const singleProcess = "Options.SingleProcess: your store is only ever opened by one process at a time"

// twoProcessHint follows a failure with two instances open at once: a
// store written for one process fails there by design.
const twoProcessHint = "two processes had your store open at once (as in a rolling deploy); if it is only ever opened by one process, " +
	"set Options.SingleProcess (or hold a lock on dir, so that a second Open fails) and storetest leaves two instances out\n"

var capWords = map[string]string{capReopen: "reopen what it persisted", capInstances: "open two instances at once",
	capRollback: "reopen what it persisted and be restored from a backup"}
var capWhy = map[string]string{
	capReopen:    "a crash or restart reopens what your store really wrote (a constructor would hand back the same in-memory object: a silent pass)",
	capInstances: "two processes open your store over one location (a constructor would hand both the same object)",
	capRollback:  "a backup of what your store wrote is restored (a constructor keeps nothing to back up)",
}

// scheduleOut is what one schedule left: enough to count it, merge its
// tally in order, and report it if it is the first failure.
type scheduleOut struct {
	done     bool
	err      error // already worded for the test
	messages int
	failed   bool // the store's failure (what fails the test)
	pair     bool // worse than the protocol baseline (free mode's rate)
	tally    *tally
	// The rest only for the lowest-numbered failing schedule so far.
	sched *harness.Schedule
	res   *harness.Result
	finds []string
	worse []string
}

// runAll runs n schedules of sc in mode on the pool, on the store under
// test (ref false) or on badmac's reference store (ref true: free mode's
// comparison). Each schedule records into a runLog of its own; the
// lowest-numbered failing schedule keeps its details, so the result is
// that of running them one after another whatever the number of workers.
func runAll(ctx context.Context, s *subject, sc scenarios.Scenario, o Options, mode harness.Mode, n int, pool *harness.Pool, ref bool) []scheduleOut {
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
		v := s.variant(log, setup.Instances, scenarioNeeds(sc) != "")
		if ref {
			v = stores.MustLookup("reference")
		}
		sched, res, err := harness.Execute(ctx, setup, v, mode, scenarios.NewGenerator(sc, scenarios.Random, seed))
		if err == nil {
			err = log.failure()
		}
		if err != nil {
			so.err = fmt.Errorf("storetest: scenario %s (%s) seed %d: %w", sc.Name, mode, seed, err)
			return
		}
		so.tally = log.tally
		so.messages = len(res.Messages)
		so.pair = res.Failed()
		so.done = true
		if ref {
			return
		}
		finds := diagnoseAll(log.traces())
		var worse []string
		switch {
		case mode == harness.Controlled && res.Failed():
			if worse, err = worseThanReference(ctx, sched, res); err != nil {
				so.err = fmt.Errorf("storetest: scenario %s seed %d on the reference store: %w", sc.Name, seed, err)
				return
			}
		case mode == harness.Free:
			// A free run has no interleaving to replay on the reference
			// store: what fails it is what a correct store cannot do (the
			// findings, prekeys lost across a restart); its messages count
			// in the rate compared with the reference store's (runFree). A
			// backup restored loses the prekeys uploaded after it on any
			// store.
			if !slices.ContainsFunc(sched.Ops, func(op harness.Op) bool { return op == harness.Op(harness.RollbackOp{}) }) {
				worse = restartFailures(res)
			}
		}
		if len(worse) == 0 && len(finds) == 0 {
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
	return outs
}

// tallyOuts checks that every schedule ran, merges the tallies in order,
// and counts: schedules the store failed, schedules worse than the
// protocol baseline, messages; fo is the first the store failed.
func tallyOuts(t TB, s *subject, sc scenarios.Scenario, mode harness.Mode, outs []scheduleOut) (failed, pair, messages int, fo *scheduleOut, ok bool) {
	t.Helper()
	for i := range outs {
		out := &outs[i]
		if out.err != nil {
			t.Fatalf("%v", out.err)
			return 0, 0, 0, nil, false
		}
		if !out.done {
			t.Fatalf("storetest: scenario %s (%s): schedule %d did not run", sc.Name, mode, i)
			return 0, 0, 0, nil, false
		}
		if out.tally != nil {
			s.tally.merge(out.tally)
		}
		messages += out.messages
		if out.pair {
			pair++
		}
		if out.failed {
			failed++
			if fo == nil {
				fo = out
			}
		}
	}
	return failed, pair, messages, fo, true
}

// runScenario runs n schedules of sc under the controlled scheduler on the
// pool and reports the first failure, shrunk and saved. It returns false
// when a schedule failed.
func runScenario(ctx context.Context, t TB, s *subject, sc scenarios.Scenario, o Options, mode harness.Mode, n int, who testRef, pool *harness.Pool) bool {
	t.Helper()
	outs := runAll(ctx, s, sc, o, mode, n, pool, false)
	failed, _, messages, fo, ok := tallyOuts(t, s, sc, mode, outs)
	if !ok {
		return false
	}
	label := modeLabel[mode]
	if fo == nil {
		t.Logf("storetest: %s (%s, %s client): %d schedules, %d messages, no failures", sc.Name, label, o.Discipline, n, messages)
		return true
	}
	first, firstRes, firstFinds, blamed := fo.sched, fo.res, fo.finds, fo.worse
	var b strings.Builder
	fmt.Fprintf(&b, "storetest: scenario %s (%s, %s client): %d of %d schedules failed\n", sc.Name, label, o.Discipline, failed, n)
	ops := len(first.Ops)
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
	if first.Instances > 1 && s.open != nil {
		b.WriteString(twoProcessHint)
	}
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
	what := "shrunk schedule"
	switch {
	case o.ShrinkBudget <= 0:
		what = "schedule (not shrunk)"
	case len(first.Ops) == ops:
		what = "schedule (shrinking found nothing shorter)"
	}
	fmt.Fprintf(&b, "%s (%d ops):\n%s", what, len(first.Ops), first)
	fmt.Fprintf(&b, "replay (from any directory of your module; add %s=$PWD/timeline.html for an HTML timeline, %s=N to shrink further):\n  %s\n",
		HTMLEnv, ShrinkEnv, cmd)
	t.Errorf("%s", b.String())
	return false
}

var modeLabel = map[harness.Mode]string{harness.Controlled: "controlled interleavings", harness.Free: "real goroutines"}

func diagnoseAll(trs []*trace) []string {
	var out []string
	for _, tr := range trs {
		out = append(out, diagnose(tr.snapshot(), 4, tr.perRun)...)
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
