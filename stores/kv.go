package stores

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/sim"
)

// KV implements whatsmeow's Signal store interfaces over a Backend. With a
// Lock, every call holds it from start to end (atomic per call); without
// one, a call that touches several keys interleaves with other calls.
type KV struct {
	Backend Backend
	Lock    *sim.Mutex

	mu       sync.Mutex
	migrated map[string]bool // PN users MigratePNToLID moved in this instance
}

func newLock() *sim.Mutex { return &sim.Mutex{} }

var (
	_ store.SessionStore   = (*KV)(nil)
	_ store.PreKeyStore    = (*KV)(nil)
	_ store.IdentityStore  = (*KV)(nil)
	_ store.SenderKeyStore = (*KV)(nil)
)

func (s *KV) lock(ctx context.Context) func() {
	if s.Lock == nil {
		return func() {}
	}
	s.Lock.Lock(ctx)
	return func() { s.Lock.Unlock(ctx) }
}

const (
	sessionPrefix   = "session/"
	identityPrefix  = "identity/"
	preKeyPrefix    = "prekey/"
	senderKeyPrefix = "senderkey/"
)

// --- identities

func (s *KV) PutIdentity(ctx context.Context, address string, key [32]byte) error {
	defer s.lock(ctx)()
	return s.Backend.Put(ctx, identityPrefix+address, key[:])
}

func (s *KV) deletePrefix(ctx context.Context, prefix string) error {
	ks, err := s.Backend.Keys(ctx, prefix)
	if err != nil {
		return err
	}
	for _, k := range ks {
		if err := s.Backend.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

func (s *KV) DeleteAllIdentities(ctx context.Context, phone string) error {
	defer s.lock(ctx)()
	return s.deletePrefix(ctx, identityPrefix+phone+":")
}

func (s *KV) DeleteIdentity(ctx context.Context, address string) error {
	defer s.lock(ctx)()
	return s.Backend.Delete(ctx, identityPrefix+address)
}

func (s *KV) IsTrustedIdentity(ctx context.Context, address string, key [32]byte) (bool, error) {
	defer s.lock(ctx)()
	v, err := s.Backend.Get(ctx, identityPrefix+address)
	if err != nil || v == nil {
		return err == nil, err
	}
	if len(v) != 32 {
		return false, fmt.Errorf("identity of %s has %d bytes, want 32", address, len(v))
	}
	return [32]byte(v) == key, nil
}

// --- sessions

func (s *KV) GetSession(ctx context.Context, address string) ([]byte, error) {
	defer s.lock(ctx)()
	return s.Backend.Get(ctx, sessionPrefix+address)
}

func (s *KV) HasSession(ctx context.Context, address string) (bool, error) {
	defer s.lock(ctx)()
	v, err := s.Backend.Get(ctx, sessionPrefix+address)
	return v != nil, err
}

func (s *KV) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	defer s.lock(ctx)()
	out := make(map[string][]byte, len(addresses))
	for _, a := range addresses {
		v, err := s.Backend.Get(ctx, sessionPrefix+a)
		if err != nil {
			return nil, err
		}
		out[a] = v
	}
	return out, nil
}

func (s *KV) PutSession(ctx context.Context, address string, session []byte) error {
	defer s.lock(ctx)()
	return s.Backend.Put(ctx, sessionPrefix+address, session)
}

func (s *KV) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	defer s.lock(ctx)()
	for _, a := range sortedKeys(sessions) {
		if err := s.Backend.Put(ctx, sessionPrefix+a, sessions[a]); err != nil {
			return err
		}
	}
	return nil
}

func (s *KV) DeleteAllSessions(ctx context.Context, phone string) error {
	defer s.lock(ctx)()
	return s.deletePrefix(ctx, sessionPrefix+phone+":")
}

func (s *KV) DeleteSession(ctx context.Context, address string) error {
	defer s.lock(ctx)()
	return s.Backend.Delete(ctx, sessionPrefix+address)
}

// MigratePNToLID moves the phone number's sessions, identities and sender
// keys (every group) to the LID, deleting the phone number's, as
// whatsmeow's sqlstore does in one transaction (store/sqlstore/store.go
// MigratePNToLID; docs/design.md §4): addresses are
// types.JID.SignalAddressUser, "PN:dev" to "LID_1:dev". With a Lock the
// whole move is one atomic call.
//
// Like sqlstore, an instance moves a PN user once: a later call for it is
// a no-op, even if a PN row was written in between (sqlstore keeps the
// users it migrated in memory, per SQLStore, so per process:
// store/sqlstore/store.go:53,66,249-252 at the pinned whatsmeow;
// docs/lid.md §1.8). whatsmeow calls MigratePNToLID on every PN stanza and
// send of a mapped contact, so a store that moves again copies a PN
// session a send wrote before the mapping was known over the LID one; the
// reference store must do what whatsmeow's own store does, or the same
// race would blame sqlstore for it. Unlike sqlstore, a failed move is
// not remembered (the next call tries again).
func (s *KV) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	defer s.lock(ctx)()
	s.mu.Lock()
	done := s.migrated[pn.User]
	s.mu.Unlock()
	if done {
		return nil
	}
	if err := s.migrate(ctx, pn, lid); err != nil {
		return err
	}
	s.mu.Lock()
	if s.migrated == nil {
		s.migrated = map[string]bool{}
	}
	s.migrated[pn.User] = true
	s.mu.Unlock()
	return nil
}

func (s *KV) migrate(ctx context.Context, pn, lid types.JID) error {
	from, to := pn.SignalAddressUser()+":", lid.SignalAddressUser()+":"
	for _, prefix := range []string{sessionPrefix, identityPrefix} {
		ks, err := s.Backend.Keys(ctx, prefix+from)
		if err != nil {
			return err
		}
		for _, k := range ks {
			if err := s.move(ctx, k, prefix+to+strings.TrimPrefix(k, prefix+from)); err != nil {
				return err
			}
		}
	}
	ks, err := s.Backend.Keys(ctx, senderKeyPrefix)
	if err != nil {
		return err
	}
	for _, k := range ks {
		i := strings.LastIndexByte(k, '/')
		if dev, ok := strings.CutPrefix(k[i+1:], from); ok {
			if err := s.move(ctx, k, k[:i+1]+to+dev); err != nil {
				return err
			}
		}
	}
	return nil
}

// move renames a backend key.
func (s *KV) move(ctx context.Context, from, to string) error {
	v, err := s.Backend.Get(ctx, from)
	if err != nil || v == nil {
		return err
	}
	if err := s.Backend.Put(ctx, to, v); err != nil {
		return err
	}
	return s.Backend.Delete(ctx, from)
}

// --- prekeys: value is the private key (32 bytes) and an uploaded flag.

func preKeyName(id uint32) string { return fmt.Sprintf("%s%010d", preKeyPrefix, id) }

func encodePreKey(k *keys.PreKey, uploaded bool) []byte {
	out := append([]byte{}, k.Priv[:]...)
	if uploaded {
		return append(out, 1)
	}
	return append(out, 0)
}

func decodePreKey(id uint32, v []byte) (*keys.PreKey, bool, error) {
	if len(v) != 33 {
		return nil, false, fmt.Errorf("prekey %d has %d bytes, want 33", id, len(v))
	}
	kp := KeyPairFromPrivate([32]byte(v[:32]))
	return &keys.PreKey{KeyPair: *kp, KeyID: id}, v[32] == 1, nil
}

// nextPreKeyID is one past the highest prekey id stored, the way
// whatsmeow's sqlstore numbers them (store/sqlstore/store.go,
// getNextPreKeyID: SELECT MAX(key_id) + 1; whatsmeow 11cf47c62d32): when
// the highest key was used and removed, its id is handed out again. A
// store that never reuses an id (a persistent counter, as libsignal and
// Baileys keep) does no worse than this one, so it is never blamed for it.
func (s *KV) nextPreKeyID(ctx context.Context) (uint32, error) {
	ks, err := s.Backend.Keys(ctx, preKeyPrefix)
	if err != nil {
		return 0, err
	}
	return nextPreKeyID(ks), nil
}

// nextPreKeyID is one past the highest id among the prekey names ks.
func nextPreKeyID(ks []string) uint32 {
	var last uint32
	for _, k := range ks {
		if id, err := strconv.ParseUint(strings.TrimPrefix(k, preKeyPrefix), 10, 32); err == nil {
			last = max(last, uint32(id)) // a name that is no id (a stray file) numbers nothing
		}
	}
	return last + 1
}

func (s *KV) GetOrGenPreKeys(ctx context.Context, count uint32) ([]*keys.PreKey, error) {
	defer s.lock(ctx)()
	ks, err := s.Backend.Keys(ctx, preKeyPrefix)
	if err != nil {
		return nil, err
	}
	var out []*keys.PreKey
	for _, k := range ks {
		if uint32(len(out)) == count {
			break
		}
		id64, err := strconv.ParseUint(strings.TrimPrefix(k, preKeyPrefix), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad prekey key %q: %w", k, err)
		}
		v, err := s.Backend.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		pk, uploaded, err := decodePreKey(uint32(id64), v)
		if err != nil {
			return nil, err
		}
		if !uploaded {
			out = append(out, pk)
		}
	}
	next := nextPreKeyID(ks)
	for uint32(len(out)) < count {
		pk := NewPreKey(next)
		if err := s.Backend.Put(ctx, preKeyName(next), encodePreKey(pk, false)); err != nil {
			return nil, err
		}
		out = append(out, pk)
		next++
	}
	return out, nil
}

func (s *KV) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	defer s.lock(ctx)()
	next, err := s.nextPreKeyID(ctx)
	if err != nil {
		return nil, err
	}
	pk := NewPreKey(next)
	if err := s.Backend.Put(ctx, preKeyName(next), encodePreKey(pk, true)); err != nil {
		return nil, err
	}
	return pk, nil
}

func (s *KV) GetPreKey(ctx context.Context, id uint32) (*keys.PreKey, error) {
	defer s.lock(ctx)()
	v, err := s.Backend.Get(ctx, preKeyName(id))
	if err != nil || v == nil {
		return nil, err
	}
	pk, _, err := decodePreKey(id, v)
	return pk, err
}

func (s *KV) RemovePreKey(ctx context.Context, id uint32) error {
	defer s.lock(ctx)()
	return s.Backend.Delete(ctx, preKeyName(id))
}

func (s *KV) MarkPreKeysAsUploaded(ctx context.Context, upToID uint32) error {
	defer s.lock(ctx)()
	ks, err := s.Backend.Keys(ctx, preKeyPrefix)
	if err != nil {
		return err
	}
	for _, k := range ks {
		id64, err := strconv.ParseUint(strings.TrimPrefix(k, preKeyPrefix), 10, 32)
		if err != nil || uint32(id64) > upToID {
			continue
		}
		v, err := s.Backend.Get(ctx, k)
		if err != nil {
			return err
		}
		if len(v) == 33 && v[32] == 0 {
			v[32] = 1
			if err := s.Backend.Put(ctx, k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *KV) UploadedPreKeyCount(ctx context.Context) (int, error) {
	defer s.lock(ctx)()
	ks, err := s.Backend.Keys(ctx, preKeyPrefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range ks {
		v, err := s.Backend.Get(ctx, k)
		if err != nil {
			return 0, err
		}
		if len(v) == 33 && v[32] == 1 {
			n++
		}
	}
	return n, nil
}

// --- sender keys

func (s *KV) PutSenderKey(ctx context.Context, group, user string, session []byte) error {
	defer s.lock(ctx)()
	return s.Backend.Put(ctx, senderKeyPrefix+group+"/"+user, session)
}

func (s *KV) GetSenderKey(ctx context.Context, group, user string) ([]byte, error) {
	defer s.lock(ctx)()
	return s.Backend.Get(ctx, senderKeyPrefix+group+"/"+user)
}
