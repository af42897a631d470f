package sqlstores

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"

	// Pure Go, so the harness builds without cgo; it registers driver
	// "sqlite", which dbutil maps to its SQLite dialect.
	_ "modernc.org/sqlite"

	"github.com/badmac/badmac/stores"
)

// SQLiteBusyTimeout is how long a connection waits for another's write lock
// before failing with SQLITE_BUSY. It bounds how long a run can stall when
// two instances contend; a deferred transaction that must upgrade to a
// writer after another commit fails at once regardless (SQLITE_BUSY_SNAPSHOT).
var SQLiteBusyTimeout = 5 * time.Second

// sqliteJID is the device of every SQLite run: each run has its own file, so
// it need not be unique, and the template can hold the device row.
var sqliteJID = types.JID{User: "badmac", Server: types.DefaultUserServer, Device: 1}

// sqliteDSN configures every connection the way whatsmeow's docs ask
// (foreign keys on) plus WAL, the usual choice for a bot. synchronous=NORMAL
// in WAL mode loses nothing when a process dies, only on power loss, which
// badmac does not model, and skips an fsync per commit.
func sqliteDSN(path string) string {
	return fmt.Sprintf("%s?_pragma=foreign_keys(1)&_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)",
		path, SQLiteBusyTimeout.Milliseconds())
}

var sqliteSeq atomic.Uint64

// nextSQLitePath names a run's file: unique per process and run.
func nextSQLitePath() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("badmac-%d-%d.db", os.Getpid(), sqliteSeq.Add(1)))
}

// The template is a database with whatsmeow's schema and the device row,
// built once per process. Copying its bytes makes a fresh database in tens
// of microseconds, where running the schema upgrade takes milliseconds.
var template struct {
	mu   sync.Mutex
	data []byte
}

func sqliteTemplate(ctx context.Context) ([]byte, error) {
	template.mu.Lock()
	defer template.mu.Unlock()
	if template.data != nil {
		return template.data, nil
	}
	f, err := os.CreateTemp("", "badmac-template-*.db")
	if err != nil {
		return nil, fmt.Errorf("sqlite template: %w", err)
	}
	path := f.Name()
	_ = f.Close()
	defer removeSQLite(path)
	data, err := buildSQLiteTemplate(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("sqlite template %s: %w", path, err)
	}
	template.data = data
	return data, nil
}

func buildSQLiteTemplate(ctx context.Context, path string) ([]byte, error) {
	c, err := sqliteContainer(ctx, path, true)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.PutDevice(ctx, newDevice(sqliteJID)); err != nil {
		return nil, fmt.Errorf("save device: %w", err)
	}
	// Fold the WAL into the main file so that the file alone is the database.
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return os.ReadFile(path)
}

// sqliteContainer opens path the way a process would, on its own pool.
// Only the template runs whatsmeow's upgrade (which also checks that foreign
// keys are on): every copy has the schema already.
func sqliteContainer(ctx context.Context, path string, upgrade bool) (*sqlstore.Container, error) {
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	c := newContainer(db, "sqlite")
	if upgrade {
		if err := c.Upgrade(ctx); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("upgrade: %w", err)
		}
	}
	return c, nil
}

// OpenSQLite creates a fresh whatsmeow database in a new file at path, which
// must not exist. Close removes the file and its WAL.
func OpenSQLite(ctx context.Context, path string) (stores.Storage, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite %s: path must not contain '?' or '#'", path)
	}
	data, err := sqliteTemplate(ctx)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		removeSQLite(path)
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	what := "sqlite " + path
	return &sqliteStorage{dbStorage{
		what: what,
		jid:  sqliteJID,
		newContainer: func(ctx context.Context) (*sqlstore.Container, error) {
			c, err := sqliteContainer(ctx, path, false)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			return c, nil
		},
		exec: func(ctx context.Context, query string, args ...any) error {
			db, err := sql.Open("sqlite", sqliteDSN(path))
			if err != nil {
				return err
			}
			defer db.Close()
			return execOne(ctx, db, query, args...)
		},
		release: func(context.Context) error { return removeSQLite(path) },
	}, path}, nil
}

// sqliteStorage is one run's SQLite file.
type sqliteStorage struct {
	dbStorage
	path string
}

// Path is the database file, for a child process that reopens it.
func (s *sqliteStorage) Path() string { return s.path }

// removeSQLite deletes a database and the files SQLite keeps beside it.
func removeSQLite(path string) error {
	var errs []error
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
