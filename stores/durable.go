package stores

import (
	"context"
	"sort"
	"strings"
	"sync"
)

// Durability (docs/design.md §7): a storage's state is durable state plus volatile
// state (caches, pending debounced writes, unsynced file data). The optional
// interfaces below let the harness crash a storage, flush it at a flush
// point, and persist the device's credentials in it.

// Crasher is storage with volatile state that a crash drops.
type Crasher interface {
	// Crash drops the volatile state. mode says, per pending write in
	// order, what the crash does with it: 'k' keeps it, 'd' drops it, 'g'
	// garbles it (keeps a prefix, a torn write); writes past the end of
	// mode are dropped. Stores whose pending writes cannot tear treat 'g'
	// as 'd'.
	Crash(mode string)
	// PendingWrites is the number of writes a crash would lose now.
	PendingWrites() int
}

// Stopper is storage that a clean shutdown affects: the process is told
// to stop (a deploy's SIGTERM), finishes what it is doing, closes its
// store and exits. Stop writes out what the store buffered, closes open
// instances, and leaves to the disk what the process had written: the
// kernel keeps a dead process's unsynced writes, only a machine crash
// loses them. Storage with no Stopper is as durable after a stop as it
// was before it.
type Stopper interface {
	Stop(ctx context.Context) error
}

// Flusher is storage with a flush point (a clean shutdown, the end of
// pairing): after Flush everything written so far is durable.
type Flusher interface {
	Flush(ctx context.Context) error
}

// CredsStore is storage that persists the device's long-term credentials
// (identity key, registration id, signed prekey), encoded by the caller.
// LoadCreds returns nil, nil when the storage holds none; an error means the
// storage knows its credentials are unreadable and refuses to start.
type CredsStore interface {
	LoadCreds(ctx context.Context) ([]byte, error)
	SaveCreds(ctx context.Context, creds []byte) error
}

// Snapshotter is storage whose durable state can be copied and restored (a
// backup restore, a volume rolled back).
type Snapshotter interface {
	Snapshot() map[string][]byte
	Restore(map[string][]byte)
}

const credsKey = "creds"

// The in-memory variants are durable at once and keep their credentials
// under one backend key.

func (m *memStorage) LoadCreds(ctx context.Context) ([]byte, error) {
	return m.backend.Quiet().Get(ctx, credsKey)
}

func (m *memStorage) SaveCreds(ctx context.Context, creds []byte) error {
	return m.backend.Quiet().Put(ctx, credsKey, creds)
}

func (m *memStorage) Snapshot() map[string][]byte { return m.backend.Snapshot() }
func (m *memStorage) Restore(s map[string][]byte) { m.backend.Restore(s) }

// Debounce is a backend whose writes go to a pending buffer that is flushed
// to the next backend after K further calls (logical time: a call counter,
// never the wall clock), or at a flush point. Reads see the pending writes.
// A crash loses whatever is still pending, as a debounced saveCreds or a
// write-behind cache does.
type Debounce struct {
	next Backend
	k    int
	mu   sync.Mutex
	// pending writes in order; calls counts calls since the oldest one.
	pending heldWrites
	calls   int
}

type debWrite struct {
	key    string
	val    []byte
	delete bool
}

// heldWrites are writes held back from a backend, in order: a debounce
// buffer, a transaction's writes until it commits.
type heldWrites []debWrite

// lookup is the last held write of key.
func (h heldWrites) lookup(key string) (debWrite, bool) {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].key == key {
			return h[i], true
		}
	}
	return debWrite{}, false
}

// get is what a read of key sees: a held write, else next's value.
func (h heldWrites) get(ctx context.Context, next Backend, key string) ([]byte, error) {
	if w, ok := h.lookup(key); ok {
		if w.delete {
			return nil, nil
		}
		return append([]byte{}, w.val...), nil
	}
	return next.Get(ctx, key)
}

// keys is next's keys under prefix as the held writes change them, sorted.
func (h heldWrites) keys(ctx context.Context, next Backend, prefix string) ([]string, error) {
	ks, err := next.Keys(ctx, prefix)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, k := range ks {
		set[k] = true
	}
	for _, w := range h {
		if strings.HasPrefix(w.key, prefix) {
			set[w.key] = !w.delete
		}
	}
	var out []string
	for k, ok := range set {
		if ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// apply makes the held writes on next, in order.
func (h heldWrites) apply(ctx context.Context, next Backend) error {
	for _, w := range h {
		var err error
		if w.delete {
			err = next.Delete(ctx, w.key)
		} else {
			err = next.Put(ctx, w.key, w.val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// NewDebounce returns a debouncing backend over next that flushes after k
// calls.
func NewDebounce(next Backend, k int) *Debounce { return &Debounce{next: next, k: k} }

// tick counts one call and flushes when the oldest pending write is k calls
// old. Called with d.mu held.
func (d *Debounce) tick(ctx context.Context) error {
	if len(d.pending) == 0 {
		return nil
	}
	d.calls++
	if d.calls < d.k {
		return nil
	}
	return d.flushLocked(ctx)
}

func (d *Debounce) flushLocked(ctx context.Context) error {
	ps := d.pending
	d.pending, d.calls = nil, 0
	return ps.apply(ctx, d.next)
}

// Flush writes every pending write to the next backend.
func (d *Debounce) Flush(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flushLocked(ctx)
}

func (d *Debounce) Get(ctx context.Context, key string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.tick(ctx); err != nil {
		return nil, err
	}
	return d.pending.get(ctx, d.next, key)
}

func (d *Debounce) Put(ctx context.Context, key string, val []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.tick(ctx); err != nil {
		return err
	}
	d.pending = append(d.pending, debWrite{key: key, val: append([]byte{}, val...)})
	return nil
}

func (d *Debounce) Delete(ctx context.Context, key string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.tick(ctx); err != nil {
		return err
	}
	d.pending = append(d.pending, debWrite{key: key, delete: true})
	return nil
}

func (d *Debounce) Keys(ctx context.Context, prefix string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.tick(ctx); err != nil {
		return nil, err
	}
	return d.pending.keys(ctx, d.next, prefix)
}

// Crash drops every pending write (process memory does not tear).
func (d *Debounce) Crash(string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending, d.calls = nil, 0
}

// PendingWrites counts the writes a crash would lose.
func (d *Debounce) PendingWrites() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

// DebounceCalls is how many backend calls a debounced write waits.
const DebounceCalls = 12

// debStorage is the debounced variant: one process's pending buffer over a
// durable in-memory backend, atomic per call (a lock, like reference), so
// that the only defect is durability.
type debStorage struct {
	mem *Memory
	deb *Debounce
}

func newDebStorage() *debStorage {
	m := NewMemory()
	return &debStorage{mem: m, deb: NewDebounce(m.Quiet(), DebounceCalls)}
}

func (s *debStorage) Instance(context.Context) (Set, error) {
	return SetOf(&KV{Backend: s.deb, Lock: newLock()}), nil
}
func (s *debStorage) Close() error      { return nil }
func (s *debStorage) Crash(mode string) { s.deb.Crash(mode) }

// Stop loses the buffer: the debounce timer dies with the process, and the
// seed's debounced saveCreds has no shutdown hook that flushes it.
func (s *debStorage) Stop(context.Context) error      { s.deb.Crash(""); return nil }
func (s *debStorage) PendingWrites() int              { return s.deb.PendingWrites() }
func (s *debStorage) Flush(ctx context.Context) error { return s.deb.Flush(ctx) }
func (s *debStorage) Snapshot() map[string][]byte     { return s.mem.Snapshot() }
func (s *debStorage) Restore(snap map[string][]byte)  { s.deb.Crash(""); s.mem.Restore(snap) }
func (s *debStorage) LoadCreds(ctx context.Context) ([]byte, error) {
	return s.deb.Get(ctx, credsKey)
}
func (s *debStorage) SaveCreds(ctx context.Context, creds []byte) error {
	return s.deb.Put(ctx, credsKey, creds)
}

func init() {
	Register(Variant{Name: "debounced",
		Doc:  "atomic per call, but writes wait in a buffer flushed every few calls: a crash loses them",
		Open: func(context.Context) (Storage, error) { return newDebStorage(), nil }})
}
