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

	"github.com/badmac/badmac/stores"
)

// Opener opens the store kept at dir: a directory of its own for each
// schedule, empty at first. It is called again for every restart (after a
// clean Close, or after a crash in which the old instance was abandoned,
// never closed) and once per process when two run at once (replica,
// overlap), so crash, restart, replica, overlap and rollback test what the
// store really persists. A store kept elsewhere (a database) may use dir as
// a name. close may be nil. Schedules run on Options.Workers goroutines
// at once, so the Opener is called concurrently, each call with a
// directory of its own.
type Opener func(dir string) (set stores.Set, close io.Closer, err error)

// Capabilities a scenario needs from the store under test.
const (
	capReopen    = "reopen"      // a new instance from what the old one persisted
	capInstances = "two at once" // two instances over one location
)

// needs says which capability a scenario requires beyond a fresh store.
var needs = map[string]string{
	"crash": capReopen, "torn": capReopen, "restart": capReopen, "rollback": capReopen,
	"replica": capInstances, "overlap": capInstances,
}

// subject is the store under test: a constructor (in memory, cannot reopen)
// or an opener over a location.
type subject struct {
	newStore NewStore
	open     Opener
	// tally is the whole Check's: the conformance checks note into it
	// directly, runs through their own runLog, merged in schedule order.
	tally *tally
}

// runLog is what one run's store instances recorded: the traces of its
// locations, in the order they closed, and a tally of its calls. Each run
// has its own, so runs on several workers at once neither interleave their
// traces nor make the tally depend on which worker got there first: the
// caller merges the tallies in schedule order (tally.merge).
type runLog struct {
	mu     sync.Mutex
	closed []*trace
	tally  *tally
}

func newRunLog() *runLog { return &runLog{tally: newTally()} }

func (l *runLog) finished(tr *trace) {
	l.mu.Lock()
	l.closed = append(l.closed, tr)
	l.mu.Unlock()
}

// traces returns the traces of the run's closed locations.
func (l *runLog) traces() []*trace {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*trace(nil), l.closed...)
}

// variant adapts the subject to a badmac store variant whose locations
// record into log: each Open is one schedule's location.
func (s *subject) variant(log *runLog) stores.Variant {
	return stores.Variant{Name: StoreName, Doc: "the store under test", Open: func(context.Context) (stores.Storage, error) {
		tr := newTrace(log.tally)
		if s.open == nil {
			return &memStorage{subject: s, log: log, tr: tr}, nil
		}
		dir, err := os.MkdirTemp("", "badmac-storetest-")
		if err != nil {
			return nil, fmt.Errorf("storetest: location: %w", err)
		}
		return &dirStorage{subject: s, log: log, tr: tr, dir: dir}, nil
	}}
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

// dirStorage is one schedule's location for an Opener: every Instance opens
// the store anew over the directory; a crash abandons the open instances.
type dirStorage struct {
	subject *subject
	log     *runLog
	tr      *trace
	dir     string
	n       int         // instances opened so far
	live    []io.Closer // open instances not abandoned
}

func (d *dirStorage) Instance(context.Context) (stores.Set, error) {
	set, c, err := d.subject.open(d.dir)
	if err != nil {
		return stores.Set{}, fmt.Errorf("opening %s: %w", d.dir, err)
	}
	if err := set.Complete(); err != nil {
		return stores.Set{}, err
	}
	if c != nil {
		d.live = append(d.live, c)
	}
	d.n++
	return recordedSet(set, d.tr, d.n-1), nil
}

// Crash abandons every open instance: never closed, never called again, as
// a killed process's store is. Crash points lie between store calls, so
// the store has no pending write the harness could keep or tear.
func (d *dirStorage) Crash(string) {
	d.live = nil
	d.tr.event("crash", d.n)
}

func (d *dirStorage) PendingWrites() int { return 0 }

// Stop is a clean shutdown: every open instance is closed, so a store
// that writes back on Close gets to.
func (d *dirStorage) Stop(context.Context) error {
	var errs []error
	for _, c := range d.live {
		errs = append(errs, c.Close())
	}
	d.live = nil
	d.tr.event("stop", d.n)
	return errors.Join(errs...)
}

func (d *dirStorage) Close() error {
	var errs []error
	for _, c := range d.live {
		errs = append(errs, c.Close())
	}
	d.live = nil
	d.tr.event("close", d.n)
	d.log.finished(d.tr)
	errs = append(errs, os.RemoveAll(d.dir))
	return errors.Join(errs...)
}

// Snapshot copies the directory: the backup a rollback restores. The
// harness takes it while instances are open, as a live volume snapshot is.
func (d *dirStorage) Snapshot() map[string][]byte {
	out := map[string][]byte{}
	filepath.WalkDir(d.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil {
			rel, _ := filepath.Rel(d.dir, path)
			out[rel] = b
		}
		return nil
	})
	d.tr.event("snapshot", d.n)
	return out
}

// Restore puts the backup back; the harness calls it after the crash that
// abandoned the instances.
func (d *dirStorage) Restore(snap map[string][]byte) {
	ents, _ := os.ReadDir(d.dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(d.dir, e.Name()))
	}
	for rel, b := range snap {
		p := filepath.Join(d.dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, b, 0o644)
	}
	d.tr.event("rollback", d.n)
}
