package procs_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"go.mau.fi/whatsmeow/store"

	"github.com/badmac/badmac/harness"
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

// runWrapped runs the hand schedule sched on the device in process over
// store's storage whose sets pass through wrap.
func runWrapped(t *testing.T, store string, wrap func(*stores.Set), sched string) *harness.Result {
	t.Helper()
	s, err := harness.Parse(strings.NewReader(sched))
	if err != nil {
		t.Fatal(err)
	}
	dev := procs.Device{Local: true, Storage: func(ctx context.Context) (stores.Storage, error) {
		st, err := stores.MustLookup(store).Open(ctx)
		if err != nil {
			return nil, err
		}
		return wrapped{st, wrap}, nil
	}}
	_, res, err := dev.Exec(context.Background(), s, harness.Controlled, harness.Ops(s.Ops))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The child device sends as whatsmeow's SendMessage does: sessions loaded
// with GetManySessions and written back with PutManySessions, so a store's
// batch methods are what the real-process tests exercise on a send.
func TestDeviceSendsThroughTheSessionCache(t *testing.T) {
	var gets, puts atomic.Int64
	res := runWrapped(t, "files-atomic", func(set *stores.Set) { set.Sessions = batchCounter{set.Sessions, &gets, &puts} }, `badmac schedule v1
seed 7
scenario reply
discipline locked
store files-atomic
contacts alice:1
ops
send alice.0 m1
deliver m1
reply alice.0 r1
read r1
send alice.0 m2
deliver m2
reply alice.0 r2
read r2
`)
	replies := 0
	for _, m := range res.Messages {
		if m.Dir == "out" && m.Outcome() == harness.Delivered {
			replies++
		}
	}
	if replies != 2 {
		t.Fatalf("%d of 2 replies delivered:\n%s", replies, res.HistoryText())
	}
	if g, p := gets.Load(), puts.Load(); g < int64(replies) || p < int64(replies) {
		t.Fatalf("%d replies made %d GetManySessions and %d PutManySessions calls, want at least one each per reply", replies, g, p)
	}
}
