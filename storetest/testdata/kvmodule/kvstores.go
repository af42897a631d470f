// Package kvstores is a store author's module, outside badmac: whatsmeow key
// stores on Badger and on bbolt, written to be correct (each call one
// database transaction; every address GetManySessions was asked for comes
// back, nil for none; prekey ids from a counter kept in the same
// transaction as the keys; MigratePNToLID moves sessions, identities and
// sender keys in one transaction, as whatsmeow's sqlstore does). badmac's
// storetest test copies it to a temporary directory and runs its tests
// there, as a user would.
package kvstores

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/stores"
)

// tx is one database transaction: what the store needs of Badger and bbolt.
type tx interface {
	get(key string) ([]byte, error) // nil, nil when absent
	set(key string, val []byte) error
	del(key string) error
	keys(prefix string) ([]string, error) // sorted
}

// db runs fn in one transaction, read-only or read-write; a read-write one
// that conflicts with another is retried by the backend.
type db interface {
	view(fn func(tx) error) error
	update(fn func(tx) error) error
	io.Closer
}

// Store implements whatsmeow's four Signal store interfaces over a db.
type Store struct{ db db }

var _ stores.All = (*Store)(nil)

const (
	sessionP  = "session/"
	identityP = "identity/"
	preKeyP   = "prekey/"
	senderP   = "senderkey/"
	nextKey   = "prekey-next"
)

func (s *Store) Close() error { return s.db.Close() }

func (s *Store) getOne(key string) (v []byte, err error) {
	err = s.db.view(func(t tx) error { v, err = t.get(key); return err })
	return v, err
}

func (s *Store) setOne(key string, val []byte) error {
	return s.db.update(func(t tx) error { return t.set(key, val) })
}

func (s *Store) delPrefix(prefix string) error {
	return s.db.update(func(t tx) error {
		ks, err := t.keys(prefix)
		for _, k := range ks {
			if err == nil {
				err = t.del(k)
			}
		}
		return err
	})
}

func (s *Store) PutIdentity(_ context.Context, address string, key [32]byte) error {
	return s.setOne(identityP+address, key[:])
}

func (s *Store) DeleteAllIdentities(_ context.Context, phone string) error {
	return s.delPrefix(identityP + phone + ":")
}

func (s *Store) DeleteIdentity(_ context.Context, address string) error {
	return s.db.update(func(t tx) error { return t.del(identityP + address) })
}

func (s *Store) IsTrustedIdentity(_ context.Context, address string, key [32]byte) (bool, error) {
	v, err := s.getOne(identityP + address)
	if err != nil || v == nil {
		return err == nil, err // unknown: trusted on first use, as sqlstore
	}
	return len(v) == 32 && [32]byte(v) == key, nil
}

func (s *Store) GetSession(_ context.Context, address string) ([]byte, error) {
	return s.getOne(sessionP + address)
}

func (s *Store) HasSession(ctx context.Context, address string) (bool, error) {
	v, err := s.GetSession(ctx, address)
	return v != nil, err
}

func (s *Store) GetManySessions(_ context.Context, addresses []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(addresses))
	err := s.db.view(func(t tx) error {
		for _, a := range addresses {
			v, err := t.get(sessionP + a)
			if err != nil {
				return err
			}
			out[a] = v // nil for none: whatsmeow's send path wants every address
		}
		return nil
	})
	return out, err
}

func (s *Store) PutSession(_ context.Context, address string, session []byte) error {
	return s.setOne(sessionP+address, session)
}

func (s *Store) PutManySessions(_ context.Context, sessions map[string][]byte) error {
	return s.db.update(func(t tx) error {
		for a, v := range sessions {
			if err := t.set(sessionP+a, v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) DeleteAllSessions(_ context.Context, phone string) error {
	return s.delPrefix(sessionP + phone + ":")
}

func (s *Store) DeleteSession(_ context.Context, address string) error {
	return s.db.update(func(t tx) error { return t.del(sessionP + address) })
}

// MigratePNToLID moves "PN:dev" to "LID_1:dev" (types.JID.SignalAddressUser)
// for sessions, identities and sender keys in every group, deleting the
// phone number's, in one transaction.
func (s *Store) MigratePNToLID(_ context.Context, pn, lid types.JID) error {
	from, to := pn.SignalAddressUser()+":", lid.SignalAddressUser()+":"
	return s.db.update(func(t tx) error {
		move := func(oldKey, newKey string) error {
			v, err := t.get(oldKey)
			if err != nil || v == nil {
				return err
			}
			if err := t.set(newKey, v); err != nil {
				return err
			}
			return t.del(oldKey)
		}
		for _, p := range []string{sessionP, identityP} {
			ks, err := t.keys(p + from)
			if err != nil {
				return err
			}
			for _, k := range ks {
				if err := move(k, p+to+strings.TrimPrefix(k, p+from)); err != nil {
					return err
				}
			}
		}
		ks, err := t.keys(senderP)
		if err != nil {
			return err
		}
		for _, k := range ks {
			i := strings.LastIndexByte(k, '/')
			if dev, ok := strings.CutPrefix(k[i+1:], from); ok {
				if err := move(k, k[:i+1]+to+dev); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// A prekey is its private key and an uploaded flag.
func preKeyName(id uint32) string { return fmt.Sprintf("%s%010d", preKeyP, id) }

func encodePreKey(k *keys.PreKey, uploaded bool) []byte {
	flag := byte(0)
	if uploaded {
		flag = 1
	}
	return append(append([]byte(nil), k.Priv[:]...), flag)
}

func decodePreKey(id uint32, v []byte) (*keys.PreKey, bool, error) {
	if len(v) != 33 {
		return nil, false, fmt.Errorf("prekey %d: %d bytes, want 33", id, len(v))
	}
	return &keys.PreKey{KeyPair: *keys.NewKeyPairFromPrivateKey([32]byte(v[:32])), KeyID: id}, v[32] == 1, nil
}

// next draws n new ids from the counter, in the caller's transaction.
func next(t tx, n uint32) (uint32, error) {
	v, err := t.get(nextKey)
	if err != nil {
		return 0, err
	}
	id := uint32(1)
	if len(v) == 4 {
		id = binary.BigEndian.Uint32(v)
	}
	return id, t.set(nextKey, binary.BigEndian.AppendUint32(nil, id+n))
}

func (s *Store) GetOrGenPreKeys(_ context.Context, count uint32) (out []*keys.PreKey, err error) {
	err = s.db.update(func(t tx) error {
		out = nil
		ks, err := t.keys(preKeyP)
		if err != nil {
			return err
		}
		for _, k := range ks {
			if uint32(len(out)) == count {
				break
			}
			var id uint32
			fmt.Sscanf(strings.TrimPrefix(k, preKeyP), "%d", &id)
			v, err := t.get(k)
			if err != nil {
				return err
			}
			pk, uploaded, err := decodePreKey(id, v)
			if err != nil {
				return err
			}
			if !uploaded {
				out = append(out, pk)
			}
		}
		need := count - uint32(len(out))
		if need == 0 {
			return nil
		}
		id, err := next(t, need)
		if err != nil {
			return err
		}
		for i := range need {
			pk := keys.NewPreKey(id + i)
			if err := t.set(preKeyName(pk.KeyID), encodePreKey(pk, false)); err != nil {
				return err
			}
			out = append(out, pk)
		}
		return nil
	})
	return out, err
}

func (s *Store) GenOnePreKey(_ context.Context) (pk *keys.PreKey, err error) {
	err = s.db.update(func(t tx) error {
		id, err := next(t, 1)
		if err != nil {
			return err
		}
		pk = keys.NewPreKey(id)
		return t.set(preKeyName(id), encodePreKey(pk, true))
	})
	return pk, err
}

func (s *Store) GetPreKey(_ context.Context, id uint32) (*keys.PreKey, error) {
	v, err := s.getOne(preKeyName(id))
	if err != nil || v == nil {
		return nil, err
	}
	pk, _, err := decodePreKey(id, v)
	return pk, err
}

func (s *Store) RemovePreKey(_ context.Context, id uint32) error {
	return s.db.update(func(t tx) error { return t.del(preKeyName(id)) })
}

func (s *Store) MarkPreKeysAsUploaded(_ context.Context, upToID uint32) error {
	return s.db.update(func(t tx) error {
		ks, err := t.keys(preKeyP)
		if err != nil {
			return err
		}
		for _, k := range ks {
			var id uint32
			fmt.Sscanf(strings.TrimPrefix(k, preKeyP), "%d", &id)
			if id > upToID {
				break // sorted, zero-padded
			}
			v, err := t.get(k)
			if err != nil {
				return err
			}
			if len(v) == 33 && v[32] == 0 {
				if err := t.set(k, append(v[:32:32], 1)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (s *Store) UploadedPreKeyCount(_ context.Context) (n int, err error) {
	err = s.db.view(func(t tx) error {
		n = 0
		ks, err := t.keys(preKeyP)
		for _, k := range ks {
			if err != nil {
				return err
			}
			var v []byte
			if v, err = t.get(k); len(v) == 33 && v[32] == 1 {
				n++
			}
		}
		return err
	})
	return n, err
}

func (s *Store) PutSenderKey(_ context.Context, group, user string, session []byte) error {
	return s.setOne(senderP+group+"/"+user, session)
}

func (s *Store) GetSenderKey(_ context.Context, group, user string) ([]byte, error) {
	return s.getOne(senderP + group + "/" + user)
}
