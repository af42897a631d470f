// Package userstores is a store author's module, outside badmac: file-backed
// whatsmeow key stores, one correct and the others with bugs seen in real
// bots.
// badmac's storetest test copies it to a temporary directory and runs its
// tests there, as a user would.
package userstores

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/stores"
)

// state is everything the store keeps, as one JSON document.
type state struct {
	Sessions   map[string][]byte  `json:"sessions"`
	Identities map[string][]byte  `json:"identities"`
	SenderKeys map[string][]byte  `json:"sender_keys"`
	PreKeys    map[uint32]*preKey `json:"prekeys"`
	NextPreKey uint32             `json:"next_prekey"`
}

type preKey struct {
	Priv     []byte `json:"priv"`
	Uploaded bool   `json:"uploaded"`
}

// File keeps all keys in one JSON file under dir. Every call reads the file
// and a write replaces it (temp file, rename) under a process mutex and an
// exclusive flock, so two instances over one directory are safe. (No fsync:
// storetest crashes the process, not the machine.)
type File struct {
	path string
	// Unlocked drops the mutex and the flock and writes in place: an
	// unlocked whole-file read-modify-write.
	Unlocked bool
	// KeyByUser keys sessions by user only, without the device id.
	KeyByUser bool
	// DropBatches makes PutManySessions a no-op and GetManySessions empty.
	DropBatches bool
	// OmitMissing leaves addresses with no session out of
	// GetManySessions' answer (whatsmeow wants them, with nil).
	OmitMissing bool
	// CounterInMemory keeps the next prekey id in memory, read at Open and
	// saved only in Close: after a crash, ids are handed out again.
	CounterInMemory bool
	// Migrate breaks MigratePNToLID: "noop" does nothing, "copy" copies
	// without deleting the phone number's, "split" moves sessions,
	// identities and sender keys in three separate saves.
	Migrate string

	mu   sync.Mutex
	lock *os.File
	next uint32 // CounterInMemory's counter
}

// Open opens (or creates) the store in dir.
func Open(dir string) (*File, error) {
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	return &File{path: filepath.Join(dir, "keys.json"), lock: lock}, nil
}

func (f *File) Close() error {
	if f.CounterInMemory {
		if err := f.do(func(s *state) (bool, error) { s.NextPreKey = f.next; return true, nil }); err != nil {
			return err
		}
	}
	return f.lock.Close()
}

// do runs fn on the state; when fn reports a change, the state is saved.
func (f *File) do(fn func(s *state) (bool, error)) error {
	if !f.Unlocked {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := syscall.Flock(int(f.lock.Fd()), syscall.LOCK_EX); err != nil {
			return err
		}
		defer syscall.Flock(int(f.lock.Fd()), syscall.LOCK_UN)
	}
	s, err := f.load()
	if err != nil {
		return err
	}
	changed, err := fn(s)
	if err != nil || !changed {
		return err
	}
	return f.save(s)
}

func (f *File) load() (*state, error) {
	s := &state{Sessions: map[string][]byte{}, Identities: map[string][]byte{}, SenderKeys: map[string][]byte{}, PreKeys: map[uint32]*preKey{}, NextPreKey: 1}
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) || err == nil && len(b) == 0 {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	return s, nil
}

func (f *File) save(s *state) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if f.Unlocked {
		return os.WriteFile(f.path, b, 0o600)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "keys-*.tmp")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path)
}

func (f *File) sessionKey(addr string) string {
	if f.KeyByUser {
		user, _, _ := strings.Cut(addr, ":")
		return user
	}
	return addr
}

func userOf(addr string) string {
	u, _, _ := strings.Cut(addr, ":")
	u, _, _ = strings.Cut(u, "_")
	return u
}

func (f *File) PutIdentity(ctx context.Context, address string, key [32]byte) error {
	return f.do(func(s *state) (bool, error) { s.Identities[address] = key[:]; return true, nil })
}

func (f *File) DeleteAllIdentities(ctx context.Context, phone string) error {
	return f.do(func(s *state) (bool, error) {
		for a := range s.Identities {
			if userOf(a) == phone {
				delete(s.Identities, a)
			}
		}
		return true, nil
	})
}

func (f *File) DeleteIdentity(ctx context.Context, address string) error {
	return f.do(func(s *state) (bool, error) { delete(s.Identities, address); return true, nil })
}

func (f *File) IsTrustedIdentity(ctx context.Context, address string, key [32]byte) (bool, error) {
	ok := true
	err := f.do(func(s *state) (bool, error) {
		if k, found := s.Identities[address]; found {
			ok = string(k) == string(key[:])
		}
		return false, nil
	})
	return ok, err
}

func (f *File) GetSession(ctx context.Context, address string) ([]byte, error) {
	var b []byte
	err := f.do(func(s *state) (bool, error) { b = s.Sessions[f.sessionKey(address)]; return false, nil })
	return b, err
}

func (f *File) HasSession(ctx context.Context, address string) (bool, error) {
	b, err := f.GetSession(ctx, address)
	return len(b) > 0, err
}

func (f *File) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if f.DropBatches {
		return out, nil
	}
	err := f.do(func(s *state) (bool, error) {
		for _, a := range addresses {
			b, ok := s.Sessions[f.sessionKey(a)]
			if ok || !f.OmitMissing {
				out[a] = b // nil for none: whatsmeow wants every address back
			}
		}
		return false, nil
	})
	return out, err
}

func (f *File) PutSession(ctx context.Context, address string, session []byte) error {
	return f.do(func(s *state) (bool, error) { s.Sessions[f.sessionKey(address)] = session; return true, nil })
}

func (f *File) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	if f.DropBatches {
		return nil
	}
	return f.do(func(s *state) (bool, error) {
		for a, b := range sessions {
			s.Sessions[f.sessionKey(a)] = b
		}
		return true, nil
	})
}

func (f *File) DeleteAllSessions(ctx context.Context, phone string) error {
	return f.do(func(s *state) (bool, error) {
		for a := range s.Sessions {
			if userOf(a) == phone {
				delete(s.Sessions, a)
			}
		}
		return true, nil
	})
}

func (f *File) DeleteSession(ctx context.Context, address string) error {
	return f.do(func(s *state) (bool, error) { delete(s.Sessions, f.sessionKey(address)); return true, nil })
}

// MigratePNToLID moves the phone number's sessions, identities and
// sender keys to the LID, in one save, as whatsmeow's sqlstore does in one
// transaction.
func (f *File) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	p, l := pn.SignalAddressUser()+":", lid.SignalAddressUser()+":"
	del := f.Migrate != "copy"
	move := func(m map[string][]byte, sender bool) bool {
		moved := false
		for k, b := range m {
			prefix, user := "", k
			if sender {
				group, u, _ := strings.Cut(k, "|")
				prefix, user = group+"|", u
			}
			if dev, ok := strings.CutPrefix(user, p); ok {
				m[prefix+l+dev], moved = b, true
				if del {
					delete(m, k)
				}
			}
		}
		return moved
	}
	switch f.Migrate {
	case "noop":
		return nil
	case "split":
		for _, which := range []string{"sessions", "identities", "sender keys"} {
			err := f.do(func(s *state) (bool, error) {
				m := map[string]map[string][]byte{"sessions": s.Sessions, "identities": s.Identities, "sender keys": s.SenderKeys}[which]
				return move(m, which == "sender keys"), nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	return f.do(func(s *state) (bool, error) {
		a, b, c := move(s.Sessions, false), move(s.Identities, false), move(s.SenderKeys, true)
		return a || b || c, nil
	})
}

func newPreKey(id uint32) (*keys.PreKey, error) {
	var priv [32]byte
	if _, err := rand.Read(priv[:]); err != nil {
		return nil, err
	}
	kp := keys.NewKeyPairFromPrivateKey(priv)
	return &keys.PreKey{KeyPair: *kp, KeyID: id}, nil
}

func fromStored(id uint32, p *preKey) *keys.PreKey {
	var priv [32]byte
	copy(priv[:], p.Priv)
	return &keys.PreKey{KeyPair: *keys.NewKeyPairFromPrivateKey(priv), KeyID: id}
}

func (f *File) gen(s *state) (*keys.PreKey, error) {
	next := &s.NextPreKey
	if f.CounterInMemory {
		next = &f.next
	}
	k, err := newPreKey(*next)
	if err != nil {
		return nil, err
	}
	s.PreKeys[k.KeyID] = &preKey{Priv: k.Priv[:]}
	*next++
	return k, nil
}

func (f *File) GetOrGenPreKeys(ctx context.Context, count uint32) ([]*keys.PreKey, error) {
	var out []*keys.PreKey
	err := f.do(func(s *state) (bool, error) {
		for id := uint32(1); id < max(s.NextPreKey, f.next) && uint32(len(out)) < count; id++ {
			if p, ok := s.PreKeys[id]; ok && !p.Uploaded {
				out = append(out, fromStored(id, p))
			}
		}
		for uint32(len(out)) < count {
			k, err := f.gen(s)
			if err != nil {
				return false, err
			}
			out = append(out, k)
		}
		return true, nil
	})
	return out, err
}

func (f *File) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	var k *keys.PreKey
	err := f.do(func(s *state) (bool, error) {
		var err error
		k, err = f.gen(s)
		if err == nil {
			s.PreKeys[k.KeyID].Uploaded = true
		}
		return err == nil, err
	})
	return k, err
}

func (f *File) GetPreKey(ctx context.Context, id uint32) (*keys.PreKey, error) {
	var k *keys.PreKey
	err := f.do(func(s *state) (bool, error) {
		if p, ok := s.PreKeys[id]; ok {
			k = fromStored(id, p)
		}
		return false, nil
	})
	return k, err
}

func (f *File) RemovePreKey(ctx context.Context, id uint32) error {
	return f.do(func(s *state) (bool, error) { delete(s.PreKeys, id); return true, nil })
}

func (f *File) MarkPreKeysAsUploaded(ctx context.Context, upToID uint32) error {
	return f.do(func(s *state) (bool, error) {
		for id, p := range s.PreKeys {
			if id <= upToID {
				p.Uploaded = true
			}
		}
		return true, nil
	})
}

func (f *File) UploadedPreKeyCount(ctx context.Context) (int, error) {
	n := 0
	err := f.do(func(s *state) (bool, error) {
		for _, p := range s.PreKeys {
			if p.Uploaded {
				n++
			}
		}
		return false, nil
	})
	return n, err
}

func (f *File) PutSenderKey(ctx context.Context, group, user string, session []byte) error {
	return f.do(func(s *state) (bool, error) { s.SenderKeys[group+"|"+user] = session; return true, nil })
}

func (f *File) GetSenderKey(ctx context.Context, group, user string) ([]byte, error) {
	var b []byte
	err := f.do(func(s *state) (bool, error) { b = s.SenderKeys[group+"|"+user]; return false, nil })
	return b, err
}

// WriteBack buffers session writes in memory and writes them to the File
// every FlushEvery writes and on Close: a write-behind cache. Reads see
// the buffer. A crash loses what is buffered.
type WriteBack struct {
	*File
	FlushEvery int

	mu      sync.Mutex
	pending map[string][]byte
	order   []string
}

func (w *WriteBack) GetSession(ctx context.Context, address string) ([]byte, error) {
	w.mu.Lock()
	b, ok := w.pending[address]
	w.mu.Unlock()
	if ok {
		return b, nil
	}
	return w.File.GetSession(ctx, address)
}

func (w *WriteBack) HasSession(ctx context.Context, address string) (bool, error) {
	b, err := w.GetSession(ctx, address)
	return len(b) > 0, err
}

func (w *WriteBack) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, a := range addresses {
		b, err := w.GetSession(ctx, a)
		if err != nil {
			return nil, err
		}
		out[a] = b
	}
	return out, nil
}

func (w *WriteBack) PutSession(ctx context.Context, address string, session []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		w.pending = map[string][]byte{}
	}
	w.pending[address] = session
	w.order = append(w.order, address)
	if len(w.order) >= w.FlushEvery {
		return w.flushLocked(ctx)
	}
	return nil
}

func (w *WriteBack) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	for a, b := range sessions {
		if err := w.PutSession(ctx, a, b); err != nil {
			return err
		}
	}
	return nil
}

// Deletes go through the buffer first, so that a buffered record does not
// outlive its delete.
func (w *WriteBack) DeleteSession(ctx context.Context, address string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.flushLocked(ctx); err != nil {
		return err
	}
	return w.File.DeleteSession(ctx, address)
}

func (w *WriteBack) DeleteAllSessions(ctx context.Context, phone string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.flushLocked(ctx); err != nil {
		return err
	}
	return w.File.DeleteAllSessions(ctx, phone)
}

func (w *WriteBack) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.flushLocked(ctx); err != nil {
		return err
	}
	return w.File.MigratePNToLID(ctx, pn, lid)
}

func (w *WriteBack) flushLocked(ctx context.Context) error {
	p := w.pending
	w.pending, w.order = nil, nil
	if len(p) == 0 {
		return nil
	}
	return w.File.PutManySessions(ctx, p)
}

func (w *WriteBack) Close() error {
	w.mu.Lock()
	err := w.flushLocked(context.Background())
	w.mu.Unlock()
	return errors.Join(err, w.File.Close())
}

// TimerWriteBack buffers session writes in memory and writes them to the
// File when a timer fires (FlushAfter after the first buffered write) and
// on Close: the write-behind a bot adds "to save disk writes". Reads see
// the buffer. A killed process loses what is buffered; an abandoned one
// (storetest before it killed processes) flushed it later from its timer
// and passed.
type TimerWriteBack struct {
	*File
	FlushAfter time.Duration

	mu      sync.Mutex
	pending map[string][]byte
	timer   *time.Timer
}

func (w *TimerWriteBack) GetSession(ctx context.Context, address string) ([]byte, error) {
	w.mu.Lock()
	b, ok := w.pending[address]
	w.mu.Unlock()
	if ok {
		return b, nil
	}
	return w.File.GetSession(ctx, address)
}

func (w *TimerWriteBack) HasSession(ctx context.Context, address string) (bool, error) {
	b, err := w.GetSession(ctx, address)
	return len(b) > 0, err
}

func (w *TimerWriteBack) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, a := range addresses {
		b, err := w.GetSession(ctx, a)
		if err != nil {
			return nil, err
		}
		out[a] = b
	}
	return out, nil
}

func (w *TimerWriteBack) PutSession(ctx context.Context, address string, session []byte) error {
	return w.PutManySessions(ctx, map[string][]byte{address: session})
}

func (w *TimerWriteBack) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		w.pending = map[string][]byte{}
	}
	for a, b := range sessions {
		w.pending[a] = b
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.FlushAfter, func() { w.flush(context.Background()) })
	}
	return nil
}

func (w *TimerWriteBack) flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending
	w.pending, w.timer = nil, nil
	if len(p) == 0 {
		return nil
	}
	return w.File.PutManySessions(ctx, p)
}

// Deletes and migrations write the buffer out first.
func (w *TimerWriteBack) DeleteSession(ctx context.Context, address string) error {
	if err := w.flush(ctx); err != nil {
		return err
	}
	return w.File.DeleteSession(ctx, address)
}

func (w *TimerWriteBack) DeleteAllSessions(ctx context.Context, phone string) error {
	if err := w.flush(ctx); err != nil {
		return err
	}
	return w.File.DeleteAllSessions(ctx, phone)
}

func (w *TimerWriteBack) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	if err := w.flush(ctx); err != nil {
		return err
	}
	return w.File.MigratePNToLID(ctx, pn, lid)
}

func (w *TimerWriteBack) Close() error {
	return errors.Join(w.flush(context.Background()), w.File.Close())
}

// The openers a user passes to storetest.RunOpener.

func opener(mod func(f *File)) func(dir string) (stores.Set, io.Closer, error) {
	return func(dir string) (stores.Set, io.Closer, error) {
		f, err := Open(dir)
		if err != nil {
			return stores.Set{}, nil, err
		}
		mod(f)
		return stores.SetOf(f), f, nil
	}
}

var (
	OpenCorrect     = opener(func(*File) {})
	OpenUnlocked    = opener(func(f *File) { f.Unlocked = true })
	OpenKeyByUser   = opener(func(f *File) { f.KeyByUser = true })
	OpenDropBatches = opener(func(f *File) { f.DropBatches = true })
	OpenOmitMissing = opener(func(f *File) { f.OmitMissing = true })
	OpenMigrateNoop = opener(func(f *File) { f.Migrate = "noop" })
	OpenMigrateCopy = opener(func(f *File) { f.Migrate = "copy" })
	// OpenMigrateSplit is not atomic: a crash between its saves leaves half
	// a migration.
	OpenMigrateSplit = opener(func(f *File) { f.Migrate = "split" })
)

// OpenPreKeyCounter's store hands out prekey ids from a counter kept in
// memory and saved only in Close.
func OpenPreKeyCounter(dir string) (stores.Set, io.Closer, error) {
	f, err := Open(dir)
	if err != nil {
		return stores.Set{}, nil, err
	}
	f.CounterInMemory = true
	err = f.do(func(s *state) (bool, error) { f.next = s.NextPreKey; return false, nil })
	return stores.SetOf(f), f, err
}

// OpenTimerWriteBack's store flushes its buffered session writes a minute
// after the first one, or on Close.
func OpenTimerWriteBack(dir string) (stores.Set, io.Closer, error) {
	f, err := Open(dir)
	if err != nil {
		return stores.Set{}, nil, err
	}
	w := &TimerWriteBack{File: f, FlushAfter: time.Minute}
	return stores.SetOf(w), w, nil
}

func OpenWriteBack(dir string) (stores.Set, io.Closer, error) {
	f, err := Open(dir)
	if err != nil {
		return stores.Set{}, nil, err
	}
	w := &WriteBack{File: f, FlushEvery: 10}
	return stores.SetOf(w), w, nil
}
