package userstores

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"
	_ "modernc.org/sqlite"

	"github.com/badmac/badmac/stores"
)

// whatsmeow's own sqlstore, as a bot opens it: on a SQLite file in dir, or
// on a PostgreSQL database named after dir.

var botJID = types.JID{User: "15559990000", Server: types.DefaultUserServer, Device: 1}

// OpenSQLite opens whatsmeow's sqlstore on dir/whatsmeow.db (pure-Go SQLite).
func OpenSQLite(dir string) (stores.Set, io.Closer, error) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "whatsmeow.db")+
		"?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return stores.Set{}, nil, err
	}
	return openSQL(db, "sqlite")
}

// PostgresEnv names the server; each dir gets a database of its own on it.
const PostgresEnv = "BADMAC_POSTGRES_DSN"

// PostgresTagEnv keeps one test's databases apart from every other run's
// on a shared server (the test sets it; its store processes inherit it).
const PostgresTagEnv = "USERSTORES_PG_TAG"

// OpenPostgres opens whatsmeow's sqlstore on a database named after dir.
// It has no Snapshot and Restore: its data is not in dir, so storetest
// cannot roll it back and says so.
func OpenPostgres(dir string) (stores.Set, io.Closer, error) {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(os.Getenv(PostgresEnv))
	if err != nil {
		return stores.Set{}, nil, err
	}
	sum := sha256.Sum256([]byte(dir))
	name := fmt.Sprintf("userstores_%s_%s", os.Getenv(PostgresTagEnv), hex.EncodeToString(sum[:6]))
	admin := stdlib.OpenDB(*cfg)
	_, err = admin.ExecContext(ctx, "CREATE DATABASE "+name)
	admin.Close()
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") { // duplicate_database: a reopen
		return stores.Set{}, nil, err
	}
	cfg.Database = name
	return openSQL(stdlib.OpenDB(*cfg), "postgres")
}

// DropPostgres drops the databases OpenPostgres made under tag.
func DropPostgres(tag string) error {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(os.Getenv(PostgresEnv))
	if err != nil {
		return err
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", "userstores_"+tag+"_%")
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+n+" WITH (FORCE)"); err != nil {
			return err
		}
	}
	return nil
}

// openSQL runs whatsmeow's schema upgrade and opens the store of the bot's
// device, creating the device row the first time (docs: NewDevice, an ID
// and an Account, PutDevice).
func openSQL(db *sql.DB, dialect string) (stores.Set, io.Closer, error) {
	ctx := context.Background()
	c := sqlstore.NewWithDB(db, dialect, waLog.Noop)
	if err := c.Upgrade(ctx); err != nil {
		c.Close()
		return stores.Set{}, nil, err
	}
	dev, err := c.GetDevice(ctx, botJID)
	if err != nil {
		c.Close()
		return stores.Set{}, nil, err
	}
	if dev == nil {
		dev = c.NewDevice()
		jid := botJID
		dev.ID, dev.Account = &jid, &waAdv.ADVSignedDeviceIdentity{Details: []byte("userstores"),
			AccountSignature: make([]byte, 64), AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
		if err := c.PutDevice(ctx, dev); err != nil {
			c.Close()
			return stores.Set{}, nil, err
		}
	}
	return stores.SetOf(sqlstore.NewSQLStore(c, botJID)), c, nil
}
