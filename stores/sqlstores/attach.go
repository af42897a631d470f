package sqlstores

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/stores"
)

// Locator names a run's database and device so that another process (a
// child running the device under test) can open the same rows.
type Locator struct {
	Driver   string    // "sqlite" or "postgres"
	DSN      string    // the SQLite file, or the server DSN as the user gave it
	Database string    // postgres: the database badmac created on that server
	JID      types.JID // the device the rows belong to
}

// Locate returns where storage from the sqlite or postgres variant lives.
func Locate(st stores.Storage) (Locator, bool) {
	switch s := st.(type) {
	case *sqliteStorage:
		return Locator{Driver: "sqlite", DSN: s.path, JID: s.jid}, true
	case *dbStorage:
		if s.loc.Driver != "" {
			return s.loc, true
		}
	}
	return Locator{}, false
}

// Attach opens storage on a database another process created (Locate): it
// creates nothing, and Close only closes its own connections, never deleting
// rows, files or databases.
func Attach(ctx context.Context, loc Locator) (stores.Storage, error) {
	var open func(context.Context) (*sqlstore.Container, error)
	var exec func(ctx context.Context, query string, args ...any) error
	var what string
	switch loc.Driver {
	case "sqlite":
		what = "sqlite " + loc.DSN
		open = func(ctx context.Context) (*sqlstore.Container, error) {
			c, err := sqliteContainer(ctx, loc.DSN, false)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			return c, nil
		}
		exec = func(ctx context.Context, query string, args ...any) error {
			db, err := sql.Open("sqlite", sqliteDSN(loc.DSN))
			if err != nil {
				return err
			}
			defer db.Close()
			return execOne(ctx, db, query, args...)
		}
	case "postgres":
		cfg, err := pgx.ParseConfig(loc.DSN)
		if err != nil {
			return nil, fmt.Errorf("postgres %s: parse DSN: %w", Redact(loc.DSN), redactedError{err, loc.DSN})
		}
		cfg.Database = loc.Database
		what = fmt.Sprintf("postgres %s database %s", Redact(loc.DSN), loc.Database)
		open = func(context.Context) (*sqlstore.Container, error) {
			return newContainer(stdlib.OpenDB(*cfg), "postgres"), nil
		}
		exec = func(ctx context.Context, query string, args ...any) error {
			db := stdlib.OpenDB(*cfg)
			defer db.Close()
			return execOne(ctx, db, query, args...)
		}
	default:
		return nil, fmt.Errorf("attach: unknown driver %q (known: sqlite, postgres)", loc.Driver)
	}
	s := &dbStorage{what: what, jid: loc.JID, newContainer: open, exec: exec,
		release: func(context.Context) error { return nil }}
	// Check the device is there before the caller relies on it.
	if b, err := s.LoadCreds(ctx); err != nil {
		return nil, err
	} else if b == nil {
		return nil, fmt.Errorf("%s: device %s is missing", what, loc.JID)
	}
	return s, nil
}
