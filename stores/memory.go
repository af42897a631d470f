package stores

import (
	"context"
	"strings"
	"sync"

	"github.com/badmac/badmac/sim"
)

// Backend is byte-level key-value storage, the common ground of the variants.
type Backend interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, val []byte) error
	Delete(ctx context.Context, key string) error
	Keys(ctx context.Context, prefix string) ([]string, error)
}

// Memory is an in-memory backend. Every operation is a yield point, like a
// round trip to a database server, unless the view is quiet.
type Memory struct {
	data  *memData
	quiet bool
}

type memData struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemory returns an empty backend.
func NewMemory() *Memory { return &Memory{data: &memData{m: make(map[string][]byte)}} }

// Quiet returns a view of the same data whose operations are not yield points.
func (b *Memory) Quiet() *Memory { return &Memory{data: b.data, quiet: true} }

func (b *Memory) yield(ctx context.Context, op, key string) {
	if !b.quiet {
		sim.Yield(ctx, op+" "+key)
	}
}

func (b *Memory) Get(ctx context.Context, key string) ([]byte, error) {
	b.yield(ctx, "backend.get", key)
	b.data.mu.Lock()
	defer b.data.mu.Unlock()
	v, ok := b.data.m[key]
	if !ok {
		return nil, nil
	}
	return append([]byte{}, v...), nil
}

func (b *Memory) Put(ctx context.Context, key string, val []byte) error {
	b.yield(ctx, "backend.put", key)
	b.data.mu.Lock()
	defer b.data.mu.Unlock()
	b.data.m[key] = append([]byte{}, val...)
	return nil
}

func (b *Memory) Delete(ctx context.Context, key string) error {
	b.yield(ctx, "backend.delete", key)
	b.data.mu.Lock()
	defer b.data.mu.Unlock()
	delete(b.data.m, key)
	return nil
}

func (b *Memory) Keys(ctx context.Context, prefix string) ([]string, error) {
	b.yield(ctx, "backend.keys", prefix)
	b.data.mu.Lock()
	defer b.data.mu.Unlock()
	var out []string
	for _, k := range sortedKeys(b.data.m) {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// Snapshot copies the whole content (for rollback and crash models).
func (b *Memory) Snapshot() map[string][]byte {
	b.data.mu.Lock()
	defer b.data.mu.Unlock()
	out := make(map[string][]byte, len(b.data.m))
	for k, v := range b.data.m {
		out[k] = append([]byte{}, v...)
	}
	return out
}

// Restore replaces the content with a snapshot.
func (b *Memory) Restore(snap map[string][]byte) {
	b.data.mu.Lock()
	defer b.data.mu.Unlock()
	b.data.m = make(map[string][]byte, len(snap))
	for k, v := range snap {
		b.data.m[k] = append([]byte{}, v...)
	}
}

// Cache is a read-through cache in front of a backend, written before the
// backend, as Baileys' makeCacheableSignalKeyStore does. It never learns of
// writes made by other instances through the backend.
type Cache struct {
	next Backend
	ttl  int64
	mu   sync.Mutex
	m    map[string]cacheEntry
}

type cacheEntry struct {
	val     []byte
	present bool
	at      int64
}

// NewCache returns a cache over next with the given time to live in logical
// time (see sim.Clock); in free mode entries never expire.
func NewCache(next Backend, ttl int64) *Cache {
	return &Cache{next: next, ttl: ttl, m: make(map[string]cacheEntry)}
}

func (c *Cache) lookup(ctx context.Context, key string) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return e, false
	}
	if now := sim.Clock(ctx); now >= 0 && now-e.at > c.ttl {
		delete(c.m, key)
		return e, false
	}
	return e, true
}

func (c *Cache) set(ctx context.Context, key string, val []byte, present bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = cacheEntry{val: append([]byte{}, val...), present: present, at: sim.Clock(ctx)}
}

func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	if e, ok := c.lookup(ctx, key); ok {
		if !e.present {
			return nil, nil
		}
		return append([]byte{}, e.val...), nil
	}
	v, err := c.next.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	c.set(ctx, key, v, v != nil)
	return v, nil
}

func (c *Cache) Put(ctx context.Context, key string, val []byte) error {
	c.set(ctx, key, val, true)
	return c.next.Put(ctx, key, val)
}

func (c *Cache) Delete(ctx context.Context, key string) error {
	c.set(ctx, key, nil, false)
	return c.next.Delete(ctx, key)
}

func (c *Cache) Keys(ctx context.Context, prefix string) ([]string, error) {
	return c.next.Keys(ctx, prefix)
}
