package harness

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.mau.fi/whatsmeow/store"

	"github.com/badmac/badmac/stores"
)

// The device follows whatsmeow's send, retry and locking rules (docs/model.md,
// "whatsmeow rules modelled"); these tests pin each one.

// wrapped is a variant over the reference store whose session store is
// replaced by wrap, to make one kind of store call misbehave.
func wrapped(name string, wrap func(store.SessionStore) store.SessionStore) stores.Variant {
	ref := stores.MustLookup("reference")
	return stores.Variant{Name: name, Open: func(ctx context.Context) (stores.Storage, error) {
		st, err := ref.Open(ctx)
		if err != nil {
			return nil, err
		}
		return wrappedStorage{st, wrap}, nil
	}}
}

type wrappedStorage struct {
	stores.Storage
	wrap func(store.SessionStore) store.SessionStore
}

func (w wrappedStorage) Instance(ctx context.Context) (stores.Set, error) {
	set, err := w.Storage.Instance(ctx)
	set.Sessions = w.wrap(set.Sessions)
	return set, err
}

// batchDropper loses every PutManySessions: only a send path that writes
// through the batch method can be hurt by it.
type batchDropper struct {
	store.SessionStore
	mu      sync.Mutex
	dropped int
}

func (b *batchDropper) PutManySessions(context.Context, map[string][]byte) error {
	b.mu.Lock()
	b.dropped++
	b.mu.Unlock()
	return nil
}

const replySchedule = `badmac schedule v1
seed 3
scenario reply
discipline locked
store STORE
contacts alice:1
ops
send alice.0 m1
deliver m1
run m1
reply alice.0 r1
run r1
read r1
reply alice.0 r2
run r2
read r2
send alice.0 m2
deliver m2
run m2
`

// whatsmeow's SendMessage loads with GetManySessions and writes back with
// PutManySessions (send.go encryptMessageForDevices, store/sessioncache.go).
// The reference store passes; one that drops batch writes is caught, which
// it could not be if sends called PutSession.
func TestSendUsesBatchCalls(t *testing.T) {
	ctx := context.Background()
	s, err := Parse(strings.NewReader(strings.Replace(replySchedule, "STORE", "reference", 1)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(ctx, s, Controlled)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() {
		t.Fatalf("reference: %s", res.Summary())
	}
	var calls []string
	for _, l := range res.History {
		if strings.HasPrefix(l, "r1 ") && !strings.Contains(l, ":") {
			continue
		}
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "r1" {
			calls = append(calls, f[1])
		}
	}
	want := []string{"GetManySessions", "IsTrustedIdentity", "PutIdentity", "PutManySessions"}
	if !slices.Equal(calls, want) {
		t.Errorf("r1's store calls %v, want %v", calls, want)
	}

	var bd *batchDropper
	v := wrapped("batch-dropper", func(s store.SessionStore) store.SessionStore {
		bd = &batchDropper{SessionStore: s}
		return bd
	})
	_, res, err = Execute(ctx, s, v, Controlled, Ops(s.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if bd == nil || bd.dropped == 0 || !res.Failed() {
		t.Fatalf("a store dropping PutManySessions passed (%v dropped): %s\n%s", bd, res.Summary(), res.HistoryText())
	}
}

// failingReads makes every session read fail: every decryption fails, so
// one message walks through all of whatsmeow's retry receipts.
type failingReads struct{ store.SessionStore }

var errGone = errors.New("backend gone")

func (failingReads) GetSession(context.Context, string) ([]byte, error) { return nil, errGone }
func (failingReads) HasSession(context.Context, string) (bool, error)   { return false, errGone }

// sendRetryReceipt (whatsmeow retry.go): the receiver counts receipts per
// message, attaches keys only from count 2 and sends none from count 5; the
// sender (handleRetryReceipt, shouldRecreateSession) re-encrypts on its
// session at count 1 and rebuilds from the keys after.
func TestRetryReceiptRules(t *testing.T) {
	ctx := context.Background()
	s, err := Parse(strings.NewReader(`badmac schedule v1
seed 1
scenario reply
discipline locked
store failing
contacts alice:1
ops
send alice.0 m1
deliver m1
run m1
send alice.0 m2
`))
	if err != nil {
		t.Fatal(err)
	}
	// m1 reaches the device's store, then its reads fail: m1 is decrypted,
	// m2 and its retries are not.
	fail := false
	v := wrapped("failing", func(s store.SessionStore) store.SessionStore {
		return &switchable{SessionStore: s, on: &fail}
	})
	r, err := Start(ctx, s, v, Controlled)
	if err != nil {
		t.Fatal(err)
	}
	for i, op := range s.Ops {
		if i == 3 {
			fail = true
		}
		if err := r.Apply(op); err != nil {
			t.Fatal(err)
		}
	}
	_, res, err := r.Stop()
	if err != nil {
		t.Fatal(err)
	}
	h := res.HistoryText()
	var got []string
	re := regexp.MustCompile(`^alice\.0: retry (\d) of m2 queued as (\S+) \((\w+)(, rebuilt from the receipt's keys)?\)$`)
	for _, l := range res.History {
		if m := re.FindStringSubmatch(l); m != nil {
			g := m[1] + " " + m[3]
			if m[4] != "" {
				g += " rebuilt"
			}
			got = append(got, g)
		}
	}
	want := []string{"1 pkmsg", "2 pkmsg rebuilt", "3 pkmsg rebuilt", "4 pkmsg rebuilt"}
	if !slices.Equal(got, want) {
		t.Errorf("receipts answered %q, want %q\n%s", got, want, h)
	}
	if !strings.Contains(h, "m2.5: no retry receipt (count 5)") {
		t.Errorf("no stop at count 5:\n%s", h)
	}
	for _, m := range res.Messages {
		if m.ID == "m2" && (m.Outcome() != Lost || len(m.Attempts) != 5) {
			t.Errorf("m2: %s after %d attempts, want lost after 5", m.Outcome(), len(m.Attempts))
		}
	}
}

type switchable struct {
	store.SessionStore
	on *bool
}

func (s *switchable) GetSession(ctx context.Context, a string) ([]byte, error) {
	if *s.on {
		return nil, errGone
	}
	return s.SessionStore.GetSession(ctx, a)
}

func (s *switchable) HasSession(ctx context.Context, a string) (bool, error) {
	if *s.on {
		return false, errGone
	}
	return s.SessionStore.HasSession(ctx, a)
}
