// Package stores holds the key stores badmac tests: the reference store and
// the candidate variants, each a real pattern seen in bots, all built on one
// byte-level backend so that they differ only in the behaviour that matters.
//
// The contract is whatsmeow's own store interfaces: a Set is the four of them
// that the Signal send and receive paths touch, so any whatsmeow user's store
// plugs in unchanged.
package stores

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"go.mau.fi/whatsmeow/store"
)

// Set is a candidate key store: the four whatsmeow interfaces that Signal
// encryption and decryption use.
type Set struct {
	Sessions   store.SessionStore
	PreKeys    store.PreKeyStore
	Identities store.IdentityStore
	SenderKeys store.SenderKeyStore
}

// All is a value implementing all four interfaces, like sqlstore.SQLStore.
type All interface {
	store.SessionStore
	store.PreKeyStore
	store.IdentityStore
	store.SenderKeyStore
}

// SetOf splits one implementation of all four interfaces into a Set.
func SetOf(s All) Set {
	return Set{Sessions: s, PreKeys: s, Identities: s, SenderKeys: s}
}

// Complete reports which of the four interfaces are missing, if any.
func (s Set) Complete() error {
	var missing []string
	if s.Sessions == nil {
		missing = append(missing, "Sessions")
	}
	if s.PreKeys == nil {
		missing = append(missing, "PreKeys")
	}
	if s.Identities == nil {
		missing = append(missing, "Identities")
	}
	if s.SenderKeys == nil {
		missing = append(missing, "SenderKeys")
	}
	if len(missing) > 0 {
		return fmt.Errorf("store set is missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Variant is a named store pattern.
type Variant struct {
	Name string
	Doc  string
	// Open creates fresh, empty storage for one run. Each Instance over it
	// models one process; two instances over one Storage model two processes
	// (or a restarted one) on one database.
	Open func(ctx context.Context) (Storage, error)
}

// Storage is what one run's store instances share: a database, a directory,
// a backend.
type Storage interface {
	Instance(ctx context.Context) (Set, error)
	Close() error
}

// memStorage is the storage of the in-memory variants.
type memStorage struct {
	backend *Memory
	mk      func(b *Memory) Set
}

func (m *memStorage) Instance(context.Context) (Set, error) { return m.mk(m.backend), nil }
func (m *memStorage) Close() error                          { return nil }

func memVariant(name, doc string, mk func(b *Memory) Set) Variant {
	return Variant{Name: name, Doc: doc, Open: func(context.Context) (Storage, error) {
		return &memStorage{backend: NewMemory(), mk: mk}, nil
	}}
}

// DefaultCacheTTL is long enough that cache entries never expire within a
// scenario: staleness comes from other writers, not from the clock.
const DefaultCacheTTL = 1 << 40

var variants = []Variant{
	memVariant("reference", "in memory, bytes copied in and out, atomic per call, durable at once", func(b *Memory) Set {
		return SetOf(&KV{Backend: b.Quiet(), Lock: newLock()})
	}),
	memVariant("uncached", "every call straight to the backend, no lock of its own", func(b *Memory) Set {
		return SetOf(&KV{Backend: b})
	}),
	memVariant("mutexed", "the seed's fix: one mutex around each get and each set, write-through, no cache", func(b *Memory) Set {
		return SetOf(&KV{Backend: b, Lock: newLock()})
	}),
	memVariant("cached", "read-through cache over the backend, cache written before the backend", func(b *Memory) Set {
		return SetOf(&KV{Backend: NewCache(b, DefaultCacheTTL)})
	}),
}

// Variants lists the built-in store variants in a stable order.
func Variants() []Variant {
	out := make([]Variant, len(variants))
	copy(out, variants)
	return out
}

// Lookup returns the named variant.
func Lookup(name string) (Variant, error) {
	for _, v := range variants {
		if v.Name == name {
			return v, nil
		}
	}
	return Variant{}, fmt.Errorf("unknown store %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Register adds a variant (the sqlstore-backed stores register themselves).
func Register(v Variant) {
	for i, old := range variants {
		if old.Name == v.Name {
			variants[i] = v
			return
		}
	}
	variants = append(variants, v)
}

// Names lists the variant names.
func Names() []string {
	var out []string
	for _, v := range variants {
		out = append(out, v.Name)
	}
	return out
}

// sortedKeys is used wherever map order would leak into behaviour.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// MustLookup is Lookup for built-in names; it panics on an unknown name.
func MustLookup(name string) Variant {
	v, err := Lookup(name)
	if err != nil {
		panic(err)
	}
	return v
}
