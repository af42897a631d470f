// Package sqlstores provides the "sqlite" and "postgres" store variants:
// whatsmeow's own sqlstore, unchanged, on a real database. They are the
// stores most bots actually run, so their results are the baseline users
// compare against; two instances over one database model two processes (or a
// restart) sharing it.
//
// Import it for its side effect to register the variants:
//
//	import _ "github.com/badmac/badmac/stores/sqlstores"
//
// Every Instance is a new sqlstore.Container on its own connection pool and
// runs whatsmeow's schema check, as a process starting would. Each Set's four
// stores are one *sqlstore.SQLStore, so callers may type-assert it to
// store.EventBuffer for DoDecryptionTxn.
package sqlstores

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/badmac/badmac/stores"
)

func init() {
	stores.Register(stores.Variant{
		Name: "sqlite",
		Doc:  "whatsmeow's sqlstore on SQLite (modernc, WAL, one file per run); instances are separate connection pools",
		Open: func(ctx context.Context) (stores.Storage, error) {
			return OpenSQLite(ctx, nextSQLitePath())
		},
	})
	stores.Register(stores.Variant{
		Name: "postgres",
		Doc:  "whatsmeow's sqlstore on PostgreSQL ($" + PostgresEnv + ", see scripts/postgres.sh); instances are separate connection pools",
		Open: openPostgresFromEnv,
	})
}

// closeTimeout bounds the cleanup in Close, which has no context of its own.
const closeTimeout = 10 * time.Second

// dbStorage is one run's storage on a database: one device row, any number
// of containers (processes) over it.
type dbStorage struct {
	what string // names the database in errors, never with a password
	jid  types.JID
	// newContainer connects a fresh container, as a starting process would.
	newContainer func(ctx context.Context) (*sqlstore.Container, error)
	loc          Locator // postgres: where the rows are, for Locate
	// exec runs one statement on the database outside any container.
	exec func(ctx context.Context, query string, args ...any) error
	// release drops what Open created, after the containers are closed.
	release func(ctx context.Context) error

	mu         sync.Mutex
	containers []*sqlstore.Container
	closed     bool
}

// JID is the device the run's rows belong to.
func (s *dbStorage) JID() types.JID { return s.jid }

func (s *dbStorage) Instance(ctx context.Context) (stores.Set, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return stores.Set{}, fmt.Errorf("%s: instance of closed storage", s.what)
	}
	c, err := s.newContainer(ctx)
	if err != nil {
		return stores.Set{}, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.Close()
		return stores.Set{}, fmt.Errorf("%s: storage closed while opening an instance", s.what)
	}
	s.containers = append(s.containers, c)
	s.mu.Unlock()

	dev, err := c.GetDevice(ctx, s.jid)
	if err != nil {
		return stores.Set{}, fmt.Errorf("%s: load device %s: %w", s.what, s.jid, err)
	} else if dev == nil {
		return stores.Set{}, fmt.Errorf("%s: device %s is missing", s.what, s.jid)
	}
	sq, ok := dev.Sessions.(*sqlstore.SQLStore)
	if !ok {
		return stores.Set{}, fmt.Errorf("%s: device store is %T, not *sqlstore.SQLStore", s.what, dev.Sessions)
	}
	return stores.SetOf(sq), nil
}

// pools maps each container badmac opened to its connection pool, which
// whatsmeow's Container does not expose: Crash watches the pools.
var pools sync.Map // *sqlstore.Container -> *sql.DB

// newContainer is sqlstore.NewWithDB, remembering the pool.
func newContainer(db *sql.DB, dialect string) *sqlstore.Container {
	c := sqlstore.NewWithDB(db, dialect, waLog.Noop)
	pools.Store(c, db)
	return c
}

// rollbackWait bounds Crash's wait; a rollback that takes longer is a
// database problem, and the run goes on (and meets its locks).
const rollbackWait = 30 * time.Second

// PendingWrites is 0: a committed write is the database's.
func (s *dbStorage) PendingWrites() int { return 0 }

// Crash is the process dying on a real database. Nothing it committed is
// lost, but a transaction it had open (DoDecryptionTxn) holds the
// database's locks until the database rolls it back, which database/sql
// does on a goroutine of its own once the transaction's context is
// cancelled (the killed task's). Crash waits until every connection the
// dead instances held is back, so the restarted process meets the database
// as it is once the dead one's connections are gone, however fast the
// machine is: without the wait, whether its first write met SQLITE_BUSY
// depended on that goroutine's timing.
func (s *dbStorage) Crash(string) {
	s.mu.Lock()
	cs := append([]*sqlstore.Container(nil), s.containers...)
	s.mu.Unlock()
	deadline := time.Now().Add(rollbackWait)
	for _, c := range cs {
		v, ok := pools.Load(c)
		if !ok {
			continue
		}
		db := v.(*sql.DB)
		for db.Stats().InUse > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}

func (s *dbStorage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cs := s.containers
	s.containers = nil
	s.mu.Unlock()

	var errs []error
	for _, c := range cs {
		pools.Delete(c)
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := s.release(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: close: %w", s.what, err)
	}
	return nil
}

// newDevice builds the run's device row. Its keys are derived from the JID
// rather than drawn like Container.NewDevice does, so that opening storage
// takes nothing from crypto/rand, which the harness seeds for replay. The
// Signal stores under test never read these keys.
func newDevice(jid types.JID) *store.Device {
	seed := sha256.Sum256([]byte("badmac device " + jid.String()))
	kp := keys.NewKeyPairFromPrivateKey(seed)
	return &store.Device{
		Log:            waLog.Noop,
		NoiseKey:       kp,
		IdentityKey:    kp,
		SignedPreKey:   &keys.PreKey{KeyPair: *kp, KeyID: 1, Signature: new([64]byte)},
		RegistrationID: 1,
		AdvSecretKey:   seed[:],
		ID:             &jid,
		Account: &waAdv.ADVSignedDeviceIdentity{
			Details:             []byte("badmac"),
			AccountSignature:    make([]byte, 64),
			AccountSignatureKey: make([]byte, 32),
			DeviceSignature:     make([]byte, 64),
		},
	}
}

// oneLine keeps a wrapped error on one line (driver errors sometimes carry
// newlines) while errors.Is/As still see the original.
type oneLine struct{ err error }

func (e oneLine) Error() string { return strings.Join(strings.Fields(e.err.Error()), " ") }
func (e oneLine) Unwrap() error { return e.err }
