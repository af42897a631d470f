package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// Opener opens the store kept at dir: a directory of its own for each
// schedule, empty at first. Each instance it opens lives in a process of
// its own (your test binary, run again by storetest), so a crash is a real
// SIGKILL of that process and a restart a new process over the same dir
// (after a clean Close, or after a crash in which nothing of the old
// process ran on: no Close, no deferred function, no timer). Two processes
// at once (replica, overlap) open it once each. A store kept elsewhere (a
// database) may use dir as a name; its rollback then needs a Snapshotter.
// close may be nil. Schedules run on Options.Workers goroutines at once,
// so several processes run at once, each with a directory of its own.
type Opener func(dir string) (set stores.Set, close io.Closer, err error)

// Snapshotter is implemented by the io.Closer an Opener returns when the
// store's data is not (only) in dir, a database for instance: Snapshot is
// a backup of everything the store holds for this dir, Restore puts a
// backup back (called on a freshly opened instance, after the crash that
// ended every other; the instances opened after it must read the backup).
// storetest's rollback uses them. A store without them whose dir stays
// empty is not rolled back at all: rollback is refused, never run and
// blamed. A store whose data is in dir needs neither: rollback copies dir
// while its processes are stopped (SIGSTOP), as a volume snapshot does.
type Snapshotter interface {
	Snapshot(ctx context.Context) ([]byte, error)
	Restore(ctx context.Context, backup []byte) error
}

// Capabilities a scenario needs from the store under test.
const (
	capReopen    = "reopen"      // a new instance from what the old one persisted
	capInstances = "two at once" // two instances over one location
	capRollback  = "rollback"    // its data restored from a backup
)

// needs says which capability a scenario requires beyond a fresh store.
var needs = map[string]string{
	"crash": capReopen, "torn": capReopen, "restart": capReopen, "rollback": capRollback,
	"replica": capInstances, "overlap": capInstances,
}

// caps is what the store under an Opener turned out to be able to do
// (probe): a reason per capability it lacks.
type caps struct {
	lacks map[string]string
	// snapshots: its Closer is a Snapshotter; inDir: it wrote files in dir.
	snapshots, inDir bool
}

// secondOpenTimeout bounds the Open of a second instance while the first
// is open: a store that waits for the first one's file lock forever
// (bbolt without a timeout) would hang the probe. A bound on a hang, not a
// speed: no loaded machine takes this long to open a store that can open.
const secondOpenTimeout = 30 * time.Second

// probe finds out, with real processes, whether the store opens a second
// instance while one is open and where it keeps its data.
func (s *subject) probe(ctx context.Context) (caps, error) {
	c := caps{lacks: map[string]string{}}
	dir, err := os.MkdirTemp("", "badmac-probe-")
	if err != nil {
		return c, err
	}
	defer os.RemoveAll(dir)
	a, err := spawn(ctx, s.test, dir, nil, 0)
	if err != nil {
		return c, fmt.Errorf("opening the store: %w", err)
	}
	c.snapshots = a.snapshots
	if err := a.PutSession(ctx, "probe:0", record("probe:0", 1)); err != nil {
		a.kill()
		return c, fmt.Errorf("PutSession: %w", err)
	}
	b, err := spawn(ctx, s.test, dir, nil, secondOpenTimeout)
	if err != nil {
		c.lacks[capInstances] = fmt.Sprintf("your store did not open a second instance over a dir while one was open (%v): "+
			"two processes on one store at once cannot happen with it", err)
	} else if err := b.close(ctx); err != nil {
		a.kill()
		return c, err
	}
	if err := a.close(ctx); err != nil {
		return c, err
	}
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if info, err := e.Info(); err == nil && info.Size() > 0 {
				c.inDir = true
			}
		}
		return nil
	})
	if !c.snapshots && !c.inDir {
		c.lacks[capRollback] = "your store wrote nothing under dir (its data lives elsewhere, a database), so restoring a copy of dir " +
			"would roll nothing back; implement storetest.Snapshotter on the io.Closer your Opener returns to run it"
	}
	return c, nil
}

// subject is the store under test: a constructor (in memory, cannot reopen)
// or an opener over a location.
type subject struct {
	newStore NewStore
	open     Opener
	// test is the name of the test whose binary serves an Opener's store
	// in child processes.
	test string
	caps caps
	// tally is the whole Check's: the conformance checks note into it
	// directly, runs through their own runLog, merged in schedule order.
	tally *tally
}

// runLog is what one run's store instances recorded: the traces of its
// locations, in the order they closed, a tally of its calls, and the first
// error of the storage itself (a process that would not start or stop).
// Each run has its own, so runs on several workers at once neither
// interleave their traces nor make the tally depend on which worker got
// there first: the caller merges the tallies in schedule order
// (tally.merge).
type runLog struct {
	mu     sync.Mutex
	closed []*trace
	tally  *tally
	err    error
}

func newRunLog() *runLog { return &runLog{tally: newTally()} }

func (l *runLog) finished(tr *trace) {
	l.mu.Lock()
	l.closed = append(l.closed, tr)
	l.mu.Unlock()
}

func (l *runLog) fail(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
}

func (l *runLog) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// traces returns the traces of the run's closed locations.
func (l *runLog) traces() []*trace {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*trace(nil), l.closed...)
}

// variant adapts the subject to a badmac store variant whose locations
// record into log: each Open is one schedule's location, with instances
// device instances at a time (for naming them as the history does). With
// procs, every instance an Opener opens is a process of its own, killed
// by a crash; without, a schedule that never reopens its store (no crash,
// restart or rollback, one instance) opens it in this process, as it was
// always opened once and closed at the end: nothing there is killed, and
// a process per schedule would only cost time.
func (s *subject) variant(log *runLog, instances int, procs bool) stores.Variant {
	return stores.Variant{Name: StoreName, Doc: "the store under test", Open: func(ctx context.Context) (stores.Storage, error) {
		tr := newTrace(log.tally, instances)
		if s.open == nil {
			return &memStorage{subject: s, log: log, tr: tr}, nil
		}
		dir, err := os.MkdirTemp("", "badmac-storetest-")
		if err != nil {
			return nil, fmt.Errorf("storetest: location: %w", err)
		}
		return &dirStorage{subject: s, log: log, tr: tr, dir: dir, ctx: ctx, local: !procs}, nil
	}}
}

// reopens reports whether a schedule reopens its store or runs two
// instances: those run the store in processes.
func reopens(sched *harness.Schedule) bool {
	if sched.Instances > 1 {
		return true
	}
	for _, op := range sched.Ops {
		switch op.(type) {
		case harness.CrashOp, harness.StopOp, harness.RestartOp, harness.SnapshotOp, harness.RollbackOp:
			return true
		}
	}
	return false
}

// StoreName is the store name in schedules storetest writes.
const StoreName = "yours"

// memStorage is a store from a constructor: one instance, never reopened.
// Scenarios that need more are refused before they run (needs).
type memStorage struct {
	subject *subject
	log     *runLog
	tr      *trace
	set     *stores.Set
}

func (m *memStorage) Instance(context.Context) (stores.Set, error) {
	if m.set != nil {
		return stores.Set{}, errors.New("storetest: a store from a constructor cannot be opened twice (use an Opener)")
	}
	set, err := m.subject.newStore()
	if err != nil {
		return stores.Set{}, err
	}
	if err := set.Complete(); err != nil {
		return stores.Set{}, err
	}
	rs := recordedSet(set, m.tr, 0)
	m.set = &rs
	return rs, nil
}

func (m *memStorage) Close() error {
	m.log.finished(m.tr)
	return nil
}

// dirStorage is one schedule's location for an Opener: every Instance is
// a new store process over the directory; a crash kills the processes.
type dirStorage struct {
	subject *subject
	log     *runLog
	tr      *trace
	dir     string
	ctx     context.Context
	n       int     // instances opened so far
	live    []*proc // processes not killed or closed
	// local: the instance is opened in this process (a schedule that
	// never reopens); closers are its Closers.
	local   bool
	closers []io.Closer
}

func (d *dirStorage) Instance(ctx context.Context) (stores.Set, error) {
	if d.local {
		if d.n > 0 {
			return stores.Set{}, errors.New("storetest: a second instance in a schedule run in this process")
		}
		set, c, err := d.subject.open(d.dir)
		if err == nil {
			err = set.Complete()
		}
		if err != nil {
			return stores.Set{}, fmt.Errorf("opening %s: %w", d.dir, err)
		}
		if c != nil {
			d.closers = append(d.closers, c)
		}
		d.n++
		return recordedSet(set, d.tr, 0), nil
	}
	p, err := spawn(ctx, d.subject.test, d.dir, nil, 0)
	if err != nil {
		return stores.Set{}, fmt.Errorf("opening %s: %w", d.dir, err)
	}
	d.live = append(d.live, p)
	d.n++
	return recordedSet(stores.SetOf(p), d.tr, d.n-1), nil
}

// Crash kills every store process with SIGKILL. Crash points lie between
// store calls, so the store has no pending write the harness could keep or
// tear: what a killed process leaves is the store's own doing.
func (d *dirStorage) Crash(string) {
	for _, p := range d.live {
		p.kill()
	}
	d.live = nil
	d.tr.event("crash", d.n)
}

func (d *dirStorage) PendingWrites() int { return 0 }

// Stop is a clean shutdown: every open instance is closed (the store's
// Close runs) and its process exits.
func (d *dirStorage) Stop(ctx context.Context) error {
	err := d.closeAll(ctx)
	d.tr.event("stop", d.n)
	return err
}

func (d *dirStorage) closeAll(ctx context.Context) error {
	var errs []error
	for _, p := range d.live {
		errs = append(errs, p.close(ctx))
	}
	for _, c := range d.closers {
		errs = append(errs, c.Close())
	}
	d.live, d.closers = nil, nil
	return errors.Join(errs...)
}

func (d *dirStorage) Close() error {
	err := d.closeAll(d.ctx)
	d.log.fail(err)
	d.tr.event("close", d.n)
	d.log.finished(d.tr)
	return errors.Join(err, os.RemoveAll(d.dir))
}

// backupKey holds a Snapshotter's backup in the harness's snapshot map.
const backupKey = "\x00storetest backup"

// Snapshot is the backup a rollback restores, taken while instances are
// open, as a live volume snapshot is: the store's own (Snapshotter), or a
// copy of dir made while every process is stopped, so that the copy is
// what a kill at that instant would leave.
func (d *dirStorage) Snapshot() map[string][]byte {
	defer d.tr.span("snapshot", d.n, d.tr.begin())
	if d.subject.caps.snapshots {
		p := d.any()
		if p == nil {
			return nil
		}
		b, err := p.snapshot(d.ctx)
		if err != nil {
			d.log.fail(fmt.Errorf("Snapshot: %w", err))
			return nil
		}
		return map[string][]byte{backupKey: b}
	}
	for _, p := range d.live {
		if err := p.conn.Stop(); err != nil {
			d.log.fail(fmt.Errorf("Snapshot: %w", err)) // a copy of a running store is no backup
		}
	}
	defer func() {
		for _, p := range d.live {
			p.conn.Cont()
		}
	}()
	return copyDir(d.dir)
}

// any is a live process, or a new one when none is.
func (d *dirStorage) any() *proc {
	if len(d.live) > 0 {
		return d.live[0]
	}
	p, err := spawn(d.ctx, d.subject.test, d.dir, nil, 0)
	if err != nil {
		d.log.fail(err)
		return nil
	}
	d.live = append(d.live, p)
	return p
}

// Restore puts the backup back; the harness calls it after the crash that
// killed the processes.
func (d *dirStorage) Restore(snap map[string][]byte) {
	defer d.tr.event("rollback", d.n)
	if b, ok := snap[backupKey]; ok {
		p, err := spawn(d.ctx, d.subject.test, d.dir, nil, 0)
		if err != nil {
			d.log.fail(err)
			return
		}
		if err := p.restore(d.ctx, b); err != nil {
			p.kill()
			d.log.fail(fmt.Errorf("Restore: %w", err))
			return
		}
		d.log.fail(p.close(d.ctx))
		return
	}
	d.log.fail(restoreDir(d.dir, snap))
}

func copyDir(dir string) map[string][]byte {
	out := map[string][]byte{}
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil {
			rel, _ := filepath.Rel(dir, path)
			out[rel] = b
		}
		return nil
	})
	return out
}

func restoreDir(dir string, snap map[string][]byte) error {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	for rel, b := range snap {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
