package sqlstores

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	// pgx rather than lib/pq: maintained, and its errors carry no password.
	"github.com/jackc/pgx/v5/stdlib"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/badmac/badmac/stores"
)

// PostgresEnv names the variable holding the server DSN of the "postgres"
// variant; scripts/postgres.sh prints it.
const PostgresEnv = "BADMAC_POSTGRES_DSN"

// PostgresLinger is how long a database stays after its last run closes, so
// that runs opened one after another reuse it instead of paying for CREATE
// DATABASE each time.
var PostgresLinger = 2 * time.Second

// defaultConnectTimeout applies when the DSN sets no connect_timeout, so that
// a wrong address or a stopped server fails in seconds.
const defaultConnectTimeout = 3 * time.Second

func openPostgresFromEnv(ctx context.Context) (stores.Storage, error) {
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		return nil, fmt.Errorf("store postgres needs %s (a server DSN); start a throwaway server with: eval \"$(scripts/postgres.sh)\"", PostgresEnv)
	}
	return OpenPostgres(ctx, dsn)
}

// OpenPostgres gives a run its own device in a database this process
// creates on the server at dsn (badmac_<pid>_<n>). Runs of one process share
// that database, isolated by device JID since every whatsmeow_* table is
// keyed by it; Close deletes the run's rows, and the database is dropped
// PostgresLinger after its last run closes, or by Shutdown. It never touches
// a database it did not create.
func OpenPostgres(ctx context.Context, dsn string) (stores.Storage, error) {
	srv, err := pgServerFor(dsn)
	if err != nil {
		return nil, err
	}
	d, err := srv.acquire(ctx)
	if err != nil {
		return nil, err
	}
	jid := types.JID{User: fmt.Sprintf("badmac%d", pgRunSeq.Add(1)), Server: types.DefaultUserServer, Device: 1}
	if err := d.setup.PutDevice(ctx, newDevice(jid)); err != nil {
		srv.release(d)
		return nil, fmt.Errorf("%s: save device %s: %w", d.what, jid, oneLine{err})
	}
	return &dbStorage{
		what: d.what,
		jid:  jid,
		loc:  Locator{Driver: "postgres", DSN: dsn, Database: d.name, JID: jid},
		newContainer: func(context.Context) (*sqlstore.Container, error) {
			return d.container(), nil
		},
		exec: func(ctx context.Context, query string, args ...any) error {
			return execOne(ctx, d.raw, query, args...)
		},
		release: func(ctx context.Context) error {
			defer srv.release(d)
			if d.dropped.Load() {
				return nil
			}
			// Cascades to every per-device table except privacy tokens.
			if _, err := d.raw.ExecContext(ctx, `DELETE FROM whatsmeow_device WHERE jid=$1`, jid); err != nil {
				return oneLine{err}
			}
			if _, err := d.raw.ExecContext(ctx, `DELETE FROM whatsmeow_privacy_tokens WHERE our_jid=$1`, jid); err != nil {
				return oneLine{err}
			}
			return nil
		},
	}, nil
}

var (
	pgRunSeq atomic.Uint64
	pgDBSeq  atomic.Uint64

	pgMu      sync.Mutex
	pgServers = map[string]*pgServer{}
)

// pgServer is one server DSN; it holds at most one database at a time.
type pgServer struct {
	what string // "postgres <redacted dsn>"
	cfg  *pgx.ConnConfig

	mu    sync.Mutex
	db    *pgDatabase
	refs  int
	timer *time.Timer
}

// pgDatabase is a database this process created.
type pgDatabase struct {
	name  string
	what  string
	cfg   *pgx.ConnConfig
	raw   *sql.DB             // for Open and Close of runs
	setup *sqlstore.Container // over raw, to save devices
	// dropped tells a run closing after Shutdown that its rows are gone.
	dropped atomic.Bool
}

// container makes a container on a new pool, as a starting process would,
// minus whatsmeow's upgrade: on a fresh backend its information_schema
// queries cost ~8 ms, and create already ran it.
func (d *pgDatabase) container() *sqlstore.Container {
	return newContainer(stdlib.OpenDB(*d.cfg), "postgres")
}

func pgServerFor(dsn string) (*pgServer, error) {
	pgMu.Lock()
	defer pgMu.Unlock()
	if s := pgServers[dsn]; s != nil {
		return s, nil
	}
	what := "postgres " + Redact(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx quotes the DSN in some parse errors: keep only what is safe.
		return nil, fmt.Errorf("%s: parse DSN: %w", what, redactedError{err, dsn})
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
		cfg.DialFunc = (&net.Dialer{Timeout: defaultConnectTimeout, KeepAlive: 5 * time.Minute}).DialContext
	}
	s := &pgServer{what: what, cfg: cfg}
	pgServers[dsn] = s
	return s, nil
}

// acquire returns the server's database, creating it if there is none.
func (s *pgServer) acquire(ctx context.Context) (*pgDatabase, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.db == nil {
		d, err := s.create(ctx)
		if err != nil {
			return nil, err
		}
		s.db = d
	}
	s.refs++
	return s.db, nil
}

func (s *pgServer) release(d *pgDatabase) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs--
	if s.refs > 0 || s.db != d {
		return
	}
	s.timer = time.AfterFunc(PostgresLinger, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.refs == 0 && s.db == d {
			s.db, s.timer = nil, nil
			_ = s.drop(d)
		}
	})
}

// connectCtx bounds one connection attempt even when ctx has no deadline:
// pgx applies connect_timeout to the dial only, not to a server that
// accepts and then hangs.
func (s *pgServer) connectCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.ConnectTimeout)
}

func (s *pgServer) admin(ctx context.Context) (*sql.DB, error) {
	db := stdlib.OpenDB(*s.cfg)
	cctx, cancel := s.connectCtx(ctx)
	defer cancel()
	if err := db.PingContext(cctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%s: connect: %w", s.what, oneLine{err})
	}
	return db, nil
}

func (s *pgServer) create(ctx context.Context) (*pgDatabase, error) {
	admin, err := s.admin(ctx)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	name := fmt.Sprintf("badmac_%d_%d", os.Getpid(), pgDBSeq.Add(1))
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("%s: create database %s: %w", s.what, name, oneLine{err})
	}
	cfg := s.cfg.Copy()
	cfg.Database = name
	d := &pgDatabase{name: name, what: fmt.Sprintf("%s database %s", s.what, name), cfg: cfg}
	d.raw = stdlib.OpenDB(*cfg)
	d.setup = sqlstore.NewWithDB(d.raw, "postgres", waLog.Noop)
	if err := d.setup.Upgrade(ctx); err != nil {
		_ = s.drop(d)
		return nil, fmt.Errorf("%s: upgrade: %w", d.what, oneLine{err})
	}
	return d, nil
}

// drop closes the database's own pools and drops it; FORCE ends any
// connections still open (ours: runs that were never closed).
func (s *pgServer) drop(d *pgDatabase) error {
	d.dropped.Store(true)
	if d.setup != nil {
		_ = d.setup.Close() // closes raw too
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	admin, err := s.admin(ctx)
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("%s: drop database %s: %w", s.what, d.name, oneLine{err})
	}
	return nil
}

// Shutdown drops every database this process created, now, whether or not
// runs are still open over it. Call it before exiting (a TestMain, main):
// a database left lingering when the process ends stays on the server.
func Shutdown() error {
	pgMu.Lock()
	servers := make([]*pgServer, 0, len(pgServers))
	for _, s := range pgServers {
		servers = append(servers, s)
	}
	pgMu.Unlock()
	var errs []error
	for _, s := range servers {
		s.mu.Lock()
		d := s.db
		s.db, s.refs = nil, 0
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
		s.mu.Unlock()
		if d != nil {
			if err := s.drop(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Redact hides the password in a PostgreSQL DSN, URL or key=value form, as
// xxxxx.
func Redact(dsn string) string {
	if strings.Contains(dsn, "://") {
		if u, err := url.Parse(dsn); err == nil {
			dsn = u.Redacted()
		} else {
			// Unparsable (a password with '/' or '#'): hide everything from
			// the user's colon to the last '@'.
			dsn = urlUserinfo.ReplaceAllString(dsn, "${1}:xxxxx@")
		}
	}
	return passwordParam.ReplaceAllString(dsn, "${1}xxxxx")
}

var (
	urlUserinfo   = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):.*@`)
	passwordParam = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)`)
)

// redactedError hides the DSN (and so its password) wherever the wrapped
// error quotes it.
type redactedError struct {
	err error
	dsn string
}

func (e redactedError) Error() string {
	msg := strings.ReplaceAll(e.err.Error(), e.dsn, Redact(e.dsn))
	return oneLine{errors.New(passwordParam.ReplaceAllString(msg, "${1}xxxxx"))}.Error()
}
func (e redactedError) Unwrap() error { return e.err }
