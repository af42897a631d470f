package procs_test

import (
	"context"
	"sync/atomic"
	"testing"

	"go.mau.fi/whatsmeow/store"

	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/stores"
)

// batchCounter counts the session store's batch calls.
type batchCounter struct {
	store.SessionStore
	gets, puts *atomic.Int64
}

func (b batchCounter) GetManySessions(ctx context.Context, addrs []string) (map[string][]byte, error) {
	b.gets.Add(1)
	return b.SessionStore.GetManySessions(ctx, addrs)
}

func (b batchCounter) PutManySessions(ctx context.Context, s map[string][]byte) error {
	b.puts.Add(1)
	return b.SessionStore.PutManySessions(ctx, s)
}

// wrapped is a storage whose instances' sets pass through wrap; the
// credentials stay the storage's own.
type wrapped struct {
	stores.Storage
	wrap func(*stores.Set)
}

func (w wrapped) LoadCreds(ctx context.Context) ([]byte, error) {
	return w.Storage.(stores.CredsStore).LoadCreds(ctx)
}

func (w wrapped) SaveCreds(ctx context.Context, b []byte) error {
	return w.Storage.(stores.CredsStore).SaveCreds(ctx, b)
}

func (w wrapped) Instance(ctx context.Context) (stores.Set, error) {
	set, err := w.Storage.Instance(ctx)
	w.wrap(&set)
	return set, err
}

// The child device sends as whatsmeow's SendMessage does: sessions loaded
// with GetManySessions and written back with PutManySessions, so a store's
// batch methods are what the real-process tests exercise on a send.
func TestDeviceSendsThroughTheSessionCache(t *testing.T) {
	ctx := context.Background()
	st, err := stores.MustLookup("files-atomic").Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var gets, puts atomic.Int64
	cs := wrapped{st, func(set *stores.Set) { set.Sessions = batchCounter{set.Sessions, &gets, &puts} }}
	res, err := procs.Converse(ctx, conversation, procs.Local(cs, false), 0)
	if err != nil {
		t.Fatal(err)
	}
	replies := 0
	for _, m := range res.Messages {
		if m.Dir == "out" {
			replies++
		}
	}
	if replies == 0 {
		t.Fatal("the conversation sent no reply")
	}
	if g, p := gets.Load(), puts.Load(); g < int64(replies) || p < int64(replies) {
		t.Fatalf("%d replies made %d GetManySessions and %d PutManySessions calls, want at least one each per reply", replies, g, p)
	}
}
