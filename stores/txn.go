package stores

import (
	"context"
	"encoding/hex"
	"sync"
	"time"

	"go.mau.fi/whatsmeow/store"
)

// ReferenceTxn is the reference store with transactions: the same store,
// plus whatsmeow's store.EventBuffer, where DoDecryptionTxn keeps its writes
// apart and applies them all when fn succeeds, or none (fn failed, or the
// task was killed inside it: a crash rolls back). It is what the store
// attribution compares a txn client with (docs/design.md §5): the same
// client, the same buffer, a store that loses nothing; without it a crash
// that a candidate's transaction correctly rolled back would be blamed on
// the candidate because the reference kept the write. Not a variant users
// pick: it is in no list.
func ReferenceTxn() Variant {
	return memVariant("reference", "the reference store with transactions (DoDecryptionTxn)", func(b *Memory) Set {
		tb := &txnBackend{Backend: b.Quiet()}
		s := SetOf(&KV{Backend: tb, Lock: newLock()})
		s.Sessions = &txnSessions{SessionStore: s.Sessions, b: tb}
		return s
	})
}

type txnKey struct{}

// overlay is one transaction's writes, held until it commits.
type overlay struct {
	mu     sync.Mutex
	writes heldWrites
}

func txnOf(ctx context.Context) *overlay {
	o, _ := ctx.Value(txnKey{}).(*overlay)
	return o
}

// txnBackend reads a transaction's own writes first and holds its writes
// until the commit.
type txnBackend struct{ Backend }

func (b *txnBackend) Get(ctx context.Context, key string) ([]byte, error) {
	if o := txnOf(ctx); o != nil {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.writes.get(ctx, b.Backend, key)
	}
	return b.Backend.Get(ctx, key)
}

func (b *txnBackend) Put(ctx context.Context, key string, val []byte) error {
	return b.hold(ctx, debWrite{key: key, val: append([]byte{}, val...)}, func() error { return b.Backend.Put(ctx, key, val) })
}

func (b *txnBackend) Delete(ctx context.Context, key string) error {
	return b.hold(ctx, debWrite{key: key, delete: true}, func() error { return b.Backend.Delete(ctx, key) })
}

// hold keeps w in the transaction of ctx, or writes it at once outside one.
func (b *txnBackend) hold(ctx context.Context, w debWrite, now func() error) error {
	o := txnOf(ctx)
	if o == nil {
		return now()
	}
	o.mu.Lock()
	o.writes = append(o.writes, w)
	o.mu.Unlock()
	return nil
}

func (b *txnBackend) Keys(ctx context.Context, prefix string) ([]string, error) {
	if o := txnOf(ctx); o != nil {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.writes.keys(ctx, b.Backend, prefix)
	}
	return b.Backend.Keys(ctx, prefix)
}

// txnSessions adds whatsmeow's store.EventBuffer (store/store.go) to the
// sessions: buffered events are kept under "buffer:<hash>" in the same
// backend, so they commit with the decrypt that produced them.
type txnSessions struct {
	store.SessionStore
	b *txnBackend
}

var _ store.EventBuffer = (*txnSessions)(nil)

func bufKey(h [32]byte) string { return "buffer:" + hex.EncodeToString(h[:]) }

// GetBufferedEvent returns the event; a cleared one has a nil Plaintext.
func (s *txnSessions) GetBufferedEvent(ctx context.Context, h [32]byte) (*store.BufferedEvent, error) {
	v, err := s.b.Get(ctx, bufKey(h))
	if err != nil || v == nil {
		return nil, err
	}
	ev := &store.BufferedEvent{}
	if v[0] == 1 {
		ev.Plaintext = v[1:]
	}
	return ev, nil
}

// PutBufferedEvent stores the plaintext (time is not kept: nothing here
// reads it).
func (s *txnSessions) PutBufferedEvent(ctx context.Context, h [32]byte, pt []byte, _ time.Time) error {
	return s.b.Put(ctx, bufKey(h), append([]byte{1}, pt...))
}

// ClearBufferedEventPlaintext keeps the hash and drops the plaintext.
func (s *txnSessions) ClearBufferedEventPlaintext(ctx context.Context, h [32]byte) error {
	return s.b.Put(ctx, bufKey(h), []byte{0})
}

// DeleteOldBufferedHashes keeps everything: a run is too short to expire.
func (s *txnSessions) DeleteOldBufferedHashes(context.Context) error { return nil }

// DoDecryptionTxn runs fn in a transaction: its writes are applied when it
// returns nil with its context alive, dropped otherwise. A nested call joins
// the outer transaction, as sqlstore's does.
func (s *txnSessions) DoDecryptionTxn(ctx context.Context, fn func(context.Context) error) error {
	if txnOf(ctx) != nil {
		return fn(ctx)
	}
	o := &overlay{}
	if err := fn(context.WithValue(ctx, txnKey{}, o)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // killed: the connection died with the transaction open
	}
	// The backend is quiet (no yield points): in controlled mode no task
	// runs during the commit, so it is atomic.
	return o.writes.apply(ctx, s.b.Backend)
}
