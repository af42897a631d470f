package realclient

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"go.mau.fi/whatsmeow/store"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// wrapped is the reference store with its session store replaced by
// wrap's.
func wrapped(name string, wrap func(store.SessionStore) store.SessionStore) stores.Variant {
	return wrappedSet(name, func(set stores.Set) stores.Set {
		set.Sessions = wrap(set.Sessions)
		return set
	})
}

// wrappedSet is the reference store with its set replaced by wrap's.
func wrappedSet(name string, wrap func(stores.Set) stores.Set) stores.Variant {
	return stores.Variant{Name: name, Open: func(ctx context.Context) (stores.Storage, error) {
		st, err := stores.MustLookup("reference").Open(ctx)
		return wrappedStorage{st, wrap}, err
	}}
}

type wrappedStorage struct {
	stores.Storage
	wrap func(stores.Set) stores.Set
}

func (w wrappedStorage) Instance(ctx context.Context) (stores.Set, error) {
	set, err := w.Storage.Instance(ctx)
	if err == nil {
		set = w.wrap(set)
	}
	return set, err
}

// dropsSenderKeys drops every sender key write.
type dropsSenderKeys struct{ store.SenderKeyStore }

func (dropsSenderKeys) PutSenderKey(context.Context, string, string, []byte) error { return nil }

// dropsWrites drops every session write.
type dropsWrites struct{ store.SessionStore }

func (dropsWrites) PutSession(context.Context, string, []byte) error         { return nil }
func (dropsWrites) PutManySessions(context.Context, map[string][]byte) error { return nil }

// staleReads answers GetSession (the receive path) with the first record
// ever written for the address, as a cache that never refreshes; the send
// path (GetManySessions) and writes are the store's.
type staleReads struct {
	store.SessionStore
	mu    sync.Mutex
	first map[string][]byte
}

func (s *staleReads) GetSession(ctx context.Context, addr string) ([]byte, error) {
	s.mu.Lock()
	b, ok := s.first[addr]
	s.mu.Unlock()
	if ok {
		return b, nil
	}
	return s.SessionStore.GetSession(ctx, addr)
}

func (s *staleReads) PutSession(ctx context.Context, addr string, b []byte) error {
	s.keep(addr, b)
	return s.SessionStore.PutSession(ctx, addr, b)
}

func (s *staleReads) PutManySessions(ctx context.Context, m map[string][]byte) error {
	for a, b := range m {
		s.keep(a, b)
	}
	return s.SessionStore.PutManySessions(ctx, m)
}

func (s *staleReads) keep(addr string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.first[addr]; !ok {
		s.first[addr] = append([]byte(nil), b...)
	}
}

// failing fails every session read.
type failing struct{ store.SessionStore }

func (failing) GetSession(context.Context, string) ([]byte, error) {
	return nil, errors.New("disk I/O error")
}

func ops(text string) []harness.Op {
	var out []harness.Op
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		op, err := harness.ParseOp(l)
		if err != nil {
			panic(err) // the test's own text
		}
		out = append(out, op)
	}
	return out
}

// Each failure class of endpoint/classify.go, produced on the real client
// the way a broken store produces it in the field, and classified from
// whatsmeow's events and the store's reads (Classify), not its log: the
// same class the model's rows give the same libsignal error. The first
// failed attempt of the named message has the class.
func TestClassesFromEvents(t *testing.T) {
	cases := []struct {
		name    string
		store   stores.Variant
		ops     string
		msg     string
		class   endpoint.Class
		errText string
	}{
		{"an old counter: a redelivered copy, acknowledged without an event", stores.MustLookup("reference"),
			"send alice.0 m1\ndeliver m1\ndup m1\ndeliver m1.2", "m1", endpoint.OldCounter, waweb.Ignored},
		{"a MAC mismatch: a stale record without the ratchet key the contact answered", wrapped("stale-reads", func(s store.SessionStore) store.SessionStore {
			return &staleReads{SessionStore: s, first: map[string][]byte{}}
		}),
			"send alice.0 m1\ndeliver m1\nrun recv\nreply alice.0 r1\nrun recv\nread r1\nsend alice.0 m2\ndeliver m2\nrun recv\nreply alice.0 r2\nrun recv\nread r2\nsend alice.0 m3\ndeliver m3", "m3", endpoint.BadMAC, "no valid sessions"},
		{"no session: a msg after the session was never stored", wrapped("dropsWrites", func(s store.SessionStore) store.SessionStore { return dropsWrites{s} }),
			"send alice.0 m1\ndeliver m1\nrun recv\nreply alice.0 r1\nrun recv\nread r1\nsend alice.0 m2\ndeliver m2", "m2", endpoint.NoSession, "no session"},
		{"an invalid prekey: a second pkmsg on a one-time prekey already used", wrapped("dropsWrites", func(s store.SessionStore) store.SessionStore { return dropsWrites{s} }),
			"send alice.0 m1\ndeliver m1\nsend alice.0 m2\ndeliver m2", "m2", endpoint.InvalidPreKey, "prekey"},
		{"no sender key: the distribution's write lost", wrappedSet("drops-sender-keys", func(set stores.Set) stores.Set {
			set.SenderKeys = dropsSenderKeys{set.SenderKeys}
			return set
		}), "group alice.0 g1\ndeliver g1", "g1", endpoint.NoSenderKey, "sender key"},
		{"a store error", wrapped("failing", func(s store.SessionStore) store.SessionStore { return failing{s} }),
			"send alice.0 m1\ndeliver m1", "m1", endpoint.StoreError, "disk I/O error"},
	}
	for _, c := range cases {
		t.Run(string(c.class), func(t *testing.T) {
			s := &harness.Schedule{Seed: 1, Scenario: "multi", Discipline: harness.Whatsmeow, Store: c.store.Name, Group: "group",
				Contacts: []harness.Contact{{User: "alice", Devices: 1}, {User: "bob", Devices: 1}}, Ops: ops(c.ops)}
			v := c.store
			dev := &Device{Reply: Inline, Variant: &v}
			_, res, err := dev.Exec(context.Background(), s, harness.Controlled, harness.Ops(s.Ops))
			if err != nil {
				t.Fatal(err)
			}
			var got *harness.Attempt
			for _, m := range res.Messages {
				for i, a := range m.Attempts {
					if !a.OK && strings.Contains(a.Err, errSandboxDecrypts.Error()) {
						t.Errorf("%s: %s: whatsmeow failed a copy libsignal decrypts from the store's reads", c.name, a.Delivery)
					}
					if m.ID == c.msg && !a.OK && got == nil {
						got = &m.Attempts[i]
					}
				}
			}
			if got == nil {
				t.Fatalf("%s: %s has no failed attempt: %s", c.name, c.msg, outcomes(res))
			}
			if got.Class != c.class || !strings.Contains(got.Err, c.errText) {
				t.Errorf("%s: %s failed as %s (%s), want %s (%q)", c.name, got.Delivery, got.Class, got.Err, c.class, c.errText)
			}
		})
	}
}
