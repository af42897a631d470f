package procs

import (
	"context"
	"maps"
	"slices"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
)

// behind is a non-durable setting of the device, for showing that the
// harness catches one on a real process: session records wait in process
// memory and reach the database every few writes (and at a clean exit),
// as a bot's write-back cache does. A SIGKILL loses what waits; the
// restarted process reads older records than its contacts' ratchets are at.
type behind struct {
	store.SessionStore
	every   int
	n       int
	pending map[string][]byte
}

func (b *behind) GetSession(ctx context.Context, a string) ([]byte, error) {
	if rec, ok := b.pending[a]; ok {
		return rec, nil
	}
	return b.SessionStore.GetSession(ctx, a)
}

func (b *behind) HasSession(ctx context.Context, a string) (bool, error) {
	if _, ok := b.pending[a]; ok {
		return true, nil
	}
	return b.SessionStore.HasSession(ctx, a)
}

func (b *behind) GetManySessions(ctx context.Context, as []string) (map[string][]byte, error) {
	out, err := b.SessionStore.GetManySessions(ctx, as)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		if rec, ok := b.pending[a]; ok {
			out[a] = rec
		}
	}
	return out, nil
}

func (b *behind) PutSession(ctx context.Context, a string, rec []byte) error {
	return b.PutManySessions(ctx, map[string][]byte{a: rec})
}

func (b *behind) PutManySessions(ctx context.Context, m map[string][]byte) error {
	if b.pending == nil {
		b.pending = map[string][]byte{}
	}
	maps.Copy(b.pending, m)
	if b.n++; b.n%b.every == 0 {
		return b.flush(ctx)
	}
	return nil
}

func (b *behind) DeleteSession(ctx context.Context, a string) error {
	delete(b.pending, a)
	return b.SessionStore.DeleteSession(ctx, a)
}

func (b *behind) DeleteAllSessions(ctx context.Context, phone string) error {
	if err := b.flush(ctx); err != nil {
		return err
	}
	return b.SessionStore.DeleteAllSessions(ctx, phone)
}

func (b *behind) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	if err := b.flush(ctx); err != nil {
		return err
	}
	return b.SessionStore.MigratePNToLID(ctx, pn, lid)
}

// flush writes what waits, in address order (one statement per record).
func (b *behind) flush(ctx context.Context) error {
	for _, a := range slices.Sorted(maps.Keys(b.pending)) {
		if err := b.SessionStore.PutSession(ctx, a, b.pending[a]); err != nil {
			return err
		}
	}
	clear(b.pending)
	return nil
}

// WriteBehind makes the handler's session writes wait in memory, reaching
// the store every n-th write; it returns the flush a clean exit runs. Call
// it before the first request.
func (d *Handler) WriteBehind(n int) (flush func(context.Context) error) {
	cs := d.set.Sessions.(*cSessions)
	b := &behind{SessionStore: cs.SessionStore, every: n}
	cs.SessionStore = b
	return b.flush
}
