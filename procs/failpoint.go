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
// and calls die right after the after-th one: the failpoint. It also
// counts the steps of the request in progress (one before each store
// call, read or write) and calls stop when step stopAt begins: the kill
// at a random moment, placed by count rather than by time so that a slow
// machine kills at the same place as a fast one.
type counter struct {
	mu    sync.Mutex
	armed bool
	n     int
	after int
	die   func()
	// steps counts store calls of the current request; stop is called
	// with (stopAt, n) when call number stopAt is about to start.
	steps, stopAt int
	stop          func(step, writes int)
}

// before marks the start of a store call.
func (c *counter) before() {
	c.mu.Lock()
	if !c.armed {
		c.mu.Unlock()
		return
	}
	c.steps++
	hit := c.stopAt > 0 && c.steps == c.stopAt
	n, stop := c.n, c.stop
	c.mu.Unlock()
	if hit {
		stop(c.stopAt, n)
	}
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
	c.mu.Unlock()
	if hit {
		c.die()
	}
	return nil
}

// countWrites wraps a store set so that every write that changes state is
// counted when it returns (the calls harness treats as write points), and
// every call, read or write, is a step before it starts.
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
	s.c.before()
	return s.c.wrote(s.SessionStore.PutSession(ctx, a, b))
}
func (s *cSessions) PutManySessions(ctx context.Context, m map[string][]byte) error {
	s.c.before()
	return s.c.wrote(s.SessionStore.PutManySessions(ctx, m))
}
func (s *cSessions) DeleteAllSessions(ctx context.Context, p string) error {
	s.c.before()
	return s.c.wrote(s.SessionStore.DeleteAllSessions(ctx, p))
}
func (s *cSessions) DeleteSession(ctx context.Context, a string) error {
	s.c.before()
	return s.c.wrote(s.SessionStore.DeleteSession(ctx, a))
}
func (s *cSessions) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	s.c.before()
	return s.c.wrote(s.SessionStore.MigratePNToLID(ctx, pn, lid))
}

type cPreKeys struct {
	store.PreKeyStore
	c *counter
}

func (s *cPreKeys) GetOrGenPreKeys(ctx context.Context, n uint32) ([]*keys.PreKey, error) {
	s.c.before()
	pks, err := s.PreKeyStore.GetOrGenPreKeys(ctx, n)
	return pks, s.c.wrote(err)
}
func (s *cPreKeys) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	s.c.before()
	pk, err := s.PreKeyStore.GenOnePreKey(ctx)
	return pk, s.c.wrote(err)
}
func (s *cPreKeys) RemovePreKey(ctx context.Context, id uint32) error {
	s.c.before()
	return s.c.wrote(s.PreKeyStore.RemovePreKey(ctx, id))
}
func (s *cPreKeys) MarkPreKeysAsUploaded(ctx context.Context, id uint32) error {
	s.c.before()
	return s.c.wrote(s.PreKeyStore.MarkPreKeysAsUploaded(ctx, id))
}

type cIdentities struct {
	store.IdentityStore
	c *counter
}

func (s *cIdentities) PutIdentity(ctx context.Context, a string, k [32]byte) error {
	s.c.before()
	return s.c.wrote(s.IdentityStore.PutIdentity(ctx, a, k))
}
func (s *cIdentities) DeleteAllIdentities(ctx context.Context, p string) error {
	s.c.before()
	return s.c.wrote(s.IdentityStore.DeleteAllIdentities(ctx, p))
}
func (s *cIdentities) DeleteIdentity(ctx context.Context, a string) error {
	s.c.before()
	return s.c.wrote(s.IdentityStore.DeleteIdentity(ctx, a))
}

type cSenderKeys struct {
	store.SenderKeyStore
	c *counter
}

func (s *cSenderKeys) PutSenderKey(ctx context.Context, g, u string, b []byte) error {
	s.c.before()
	return s.c.wrote(s.SenderKeyStore.PutSenderKey(ctx, g, u, b))
}

// Reads are steps too: a kill between a load and the write that follows
// it is a moment of its own.

func (s *cSessions) GetSession(ctx context.Context, a string) ([]byte, error) {
	s.c.before()
	return s.SessionStore.GetSession(ctx, a)
}
func (s *cSessions) HasSession(ctx context.Context, a string) (bool, error) {
	s.c.before()
	return s.SessionStore.HasSession(ctx, a)
}
func (s *cSessions) GetManySessions(ctx context.Context, as []string) (map[string][]byte, error) {
	s.c.before()
	return s.SessionStore.GetManySessions(ctx, as)
}
func (s *cPreKeys) GetPreKey(ctx context.Context, id uint32) (*keys.PreKey, error) {
	s.c.before()
	return s.PreKeyStore.GetPreKey(ctx, id)
}
func (s *cPreKeys) UploadedPreKeyCount(ctx context.Context) (int, error) {
	s.c.before()
	return s.PreKeyStore.UploadedPreKeyCount(ctx)
}
func (s *cIdentities) IsTrustedIdentity(ctx context.Context, a string, k [32]byte) (bool, error) {
	s.c.before()
	return s.IdentityStore.IsTrustedIdentity(ctx, a, k)
}
func (s *cSenderKeys) GetSenderKey(ctx context.Context, g, u string) ([]byte, error) {
	s.c.before()
	return s.SenderKeyStore.GetSenderKey(ctx, g, u)
}
