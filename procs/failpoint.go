package procs

import (
	"context"
	"sync"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/stores"
)

// counter counts completed store writes once armed (after init or hello)
// and calls die right after the after-th one: the failpoint.
type counter struct {
	mu    sync.Mutex
	armed bool
	n     int
	after int
	die   func()
	// report, when set, is told of each counted write (before die).
	report func()
}

func (c *counter) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = true
}

// wrote counts a write that returned err.
func (c *counter) wrote(err error) error {
	c.mu.Lock()
	if !c.armed || err != nil {
		c.mu.Unlock()
		return err
	}
	c.n++
	hit := c.after > 0 && c.n == c.after
	report := c.report
	c.mu.Unlock()
	if report != nil {
		report()
	}
	if hit {
		c.die()
	}
	return nil
}

// countWrites wraps a store set so that every write that changes state is
// counted when it returns: the calls harness treats as write points.
func countWrites(s stores.Set, c *counter) stores.Set {
	return stores.Set{
		Sessions:   &cSessions{s.Sessions, c},
		PreKeys:    &cPreKeys{s.PreKeys, c},
		Identities: &cIdentities{s.Identities, c},
		SenderKeys: &cSenderKeys{s.SenderKeys, c},
	}
}

type cSessions struct {
	store.SessionStore
	c *counter
}

func (s *cSessions) PutSession(ctx context.Context, a string, b []byte) error {
	return s.c.wrote(s.SessionStore.PutSession(ctx, a, b))
}
func (s *cSessions) PutManySessions(ctx context.Context, m map[string][]byte) error {
	return s.c.wrote(s.SessionStore.PutManySessions(ctx, m))
}
func (s *cSessions) DeleteAllSessions(ctx context.Context, p string) error {
	return s.c.wrote(s.SessionStore.DeleteAllSessions(ctx, p))
}
func (s *cSessions) DeleteSession(ctx context.Context, a string) error {
	return s.c.wrote(s.SessionStore.DeleteSession(ctx, a))
}
func (s *cSessions) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	return s.c.wrote(s.SessionStore.MigratePNToLID(ctx, pn, lid))
}

type cPreKeys struct {
	store.PreKeyStore
	c *counter
}

func (s *cPreKeys) GetOrGenPreKeys(ctx context.Context, n uint32) ([]*keys.PreKey, error) {
	pks, err := s.PreKeyStore.GetOrGenPreKeys(ctx, n)
	return pks, s.c.wrote(err)
}
func (s *cPreKeys) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	pk, err := s.PreKeyStore.GenOnePreKey(ctx)
	return pk, s.c.wrote(err)
}
func (s *cPreKeys) RemovePreKey(ctx context.Context, id uint32) error {
	return s.c.wrote(s.PreKeyStore.RemovePreKey(ctx, id))
}
func (s *cPreKeys) MarkPreKeysAsUploaded(ctx context.Context, id uint32) error {
	return s.c.wrote(s.PreKeyStore.MarkPreKeysAsUploaded(ctx, id))
}

type cIdentities struct {
	store.IdentityStore
	c *counter
}

func (s *cIdentities) PutIdentity(ctx context.Context, a string, k [32]byte) error {
	return s.c.wrote(s.IdentityStore.PutIdentity(ctx, a, k))
}
func (s *cIdentities) DeleteAllIdentities(ctx context.Context, p string) error {
	return s.c.wrote(s.IdentityStore.DeleteAllIdentities(ctx, p))
}
func (s *cIdentities) DeleteIdentity(ctx context.Context, a string) error {
	return s.c.wrote(s.IdentityStore.DeleteIdentity(ctx, a))
}

type cSenderKeys struct {
	store.SenderKeyStore
	c *counter
}

func (s *cSenderKeys) PutSenderKey(ctx context.Context, g, u string, b []byte) error {
	return s.c.wrote(s.SenderKeyStore.PutSenderKey(ctx, g, u, b))
}
