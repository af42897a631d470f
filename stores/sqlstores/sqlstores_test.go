package sqlstores_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// TestMain drops the databases the tests made, then stops the cluster
// testenv.Postgres started, if any.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m, sqlstores.Shutdown)) }

// postgresDSN is $BADMAC_POSTGRES_DSN or a cluster this binary starts;
// without PostgreSQL it skips, except in CI, which must run it.
func postgresDSN(t testing.TB) string { return testenv.PostgresDSN(t) }

func openVariant(t testing.TB, name string) stores.Storage {
	t.Helper()
	if name == "postgres" {
		postgresDSN(t)
	}
	v, err := stores.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func instance(t testing.TB, st stores.Storage) stores.Set {
	t.Helper()
	s, err := st.Instance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSQLite(t *testing.T)   { testVariant(t, "sqlite") }
func TestPostgres(t *testing.T) { testVariant(t, "postgres") }

// testVariant checks that two instances see one database: what one writes
// the other reads, with no cache between.
func testVariant(t *testing.T, name string) {
	ctx := context.Background()
	st := openVariant(t, name)
	defer st.Close()
	a, b := instance(t, st), instance(t, st)

	t.Run("sessions", func(t *testing.T) {
		if got, err := b.Sessions.GetSession(ctx, "123:0"); err != nil || got != nil {
			t.Fatalf("fresh GetSession = %q, %v; want nil, nil", got, err)
		}
		for _, rec := range [][]byte{[]byte("record-1"), []byte("record-2")} {
			// The second put overwrites: PutSession is an upsert.
			if err := a.Sessions.PutSession(ctx, "123:0", rec); err != nil {
				t.Fatal(err)
			}
			got, err := b.Sessions.GetSession(ctx, "123:0")
			if err != nil || !bytes.Equal(got, rec) {
				t.Fatalf("GetSession on other instance = %q, %v; want %q", got, err, rec)
			}
		}
		if has, err := b.Sessions.HasSession(ctx, "123:0"); err != nil || !has {
			t.Fatalf("HasSession = %v, %v", has, err)
		}
	})

	t.Run("prekeys", func(t *testing.T) {
		keys, err := a.PreKeys.GetOrGenPreKeys(ctx, 5)
		if err != nil || len(keys) != 5 {
			t.Fatalf("GetOrGenPreKeys = %d keys, %v", len(keys), err)
		}
		id := keys[2].KeyID
		got, err := b.PreKeys.GetPreKey(ctx, id)
		if err != nil || got == nil || *got.Priv != *keys[2].Priv {
			t.Fatalf("GetPreKey(%d) on other instance = %v, %v", id, got, err)
		}
		if err := b.PreKeys.RemovePreKey(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got, err := a.PreKeys.GetPreKey(ctx, id); err != nil || got != nil {
			t.Fatalf("GetPreKey(%d) after RemovePreKey = %v, %v; want nil, nil", id, got, err)
		}
		// Not uploaded yet, so the four left come back, and one more is made.
		again, err := b.PreKeys.GetOrGenPreKeys(ctx, 5)
		if err != nil || len(again) != 5 {
			t.Fatalf("second GetOrGenPreKeys = %d keys, %v", len(again), err)
		}
		for _, k := range again {
			if k.KeyID == id {
				t.Fatalf("removed prekey %d came back", id)
			}
		}
	})

	t.Run("identities", func(t *testing.T) {
		key := [32]byte{1, 2, 3}
		if err := a.Identities.PutIdentity(ctx, "123:0", key); err != nil {
			t.Fatal(err)
		}
		if ok, err := b.Identities.IsTrustedIdentity(ctx, "123:0", key); err != nil || !ok {
			t.Fatalf("IsTrustedIdentity(same key) = %v, %v", ok, err)
		}
		if ok, err := b.Identities.IsTrustedIdentity(ctx, "123:0", [32]byte{9}); err != nil || ok {
			t.Fatalf("IsTrustedIdentity(other key) = %v, %v", ok, err)
		}
	})

	t.Run("senderkeys", func(t *testing.T) {
		if err := a.SenderKeys.PutSenderKey(ctx, "g@g.us", "123:0", []byte("sk")); err != nil {
			t.Fatal(err)
		}
		if got, err := b.SenderKeys.GetSenderKey(ctx, "g@g.us", "123:0"); err != nil || string(got) != "sk" {
			t.Fatalf("GetSenderKey = %q, %v", got, err)
		}
	})
}

func TestSQLiteIsolation(t *testing.T)   { testIsolation(t, "sqlite") }
func TestPostgresIsolation(t *testing.T) { testIsolation(t, "postgres") }

// testIsolation checks that runs opened at once see nothing of each other.
func testIsolation(t *testing.T, name string) {
	ctx := context.Background()
	openVariant(t, name).Close() // skips without a server
	v, err := stores.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	run := func(i int) error {
		st, err := v.Open(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		const addr = "555:0"
		want := fmt.Appendf(nil, "run %d", i)
		a, err := st.Instance(ctx)
		if err != nil {
			return err
		}
		if got, err := a.Sessions.GetSession(ctx, addr); err != nil || got != nil {
			return fmt.Errorf("run %d: fresh storage has session %q, %v", i, got, err)
		}
		if err := a.Sessions.PutSession(ctx, addr, want); err != nil {
			return err
		}
		b, err := st.Instance(ctx)
		if err != nil {
			return err
		}
		if got, err := b.Sessions.GetSession(ctx, addr); err != nil || !bytes.Equal(got, want) {
			return fmt.Errorf("run %d: read back %q, %v", i, got, err)
		}
		return nil
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = run(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestSQLiteClose(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "run.db")
	st, err := sqlstores.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := instance(t, st)
	if err := s.Sessions.PutSession(ctx, "1:0", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlstores.OpenSQLite(ctx, path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("second OpenSQLite on one path: err = %v; want one naming %s", err, path)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(path + "*")
	if len(left) > 0 {
		t.Fatalf("files left after Close: %v", left)
	}
	if _, err := st.Instance(ctx); err == nil {
		t.Fatal("Instance after Close succeeded")
	}
}

// TestPostgresCleanup checks that Close deletes the run's rows and Shutdown
// drops the database, and only it.
func TestPostgresCleanup(t *testing.T) {
	dsn := postgresDSN(t)
	ctx := context.Background()
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// Only this process's databases and its own "not ours": another test
	// process (a second go test at once) has its own on the same server.
	notOurs := fmt.Sprintf("badmac_not_ours_%d", os.Getpid())
	databases := func() []string {
		q := fmt.Sprintf(`SELECT datname FROM pg_database WHERE datname LIKE 'badmac\_%d\_%%' OR datname = '%s' ORDER BY 1`, os.Getpid(), notOurs)
		rows, err := admin.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	// A database we did not create must survive.
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+notOurs); err != nil {
		t.Fatal(err)
	}
	defer admin.ExecContext(ctx, `DROP DATABASE `+notOurs)

	st, err := sqlstores.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	s := instance(t, st)
	if err := s.Sessions.PutSession(ctx, "1:0", []byte("x")); err != nil {
		t.Fatal(err)
	}
	before := databases()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sqlstores.Shutdown(); err != nil {
		t.Fatal(err)
	}
	after := databases()
	if len(after) != len(before)-1 || !contains(after, notOurs) {
		t.Fatalf("databases before Shutdown %v, after %v; want ours dropped, %s kept", before, after, notOurs)
	}
}

// TestPostgresLinger checks that the database goes once its last run has
// been closed for PostgresLinger, without Shutdown.
func TestPostgresLinger(t *testing.T) {
	dsn := postgresDSN(t)
	ctx := context.Background()
	if err := sqlstores.Shutdown(); err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { sqlstores.PostgresLinger = d }(sqlstores.PostgresLinger)
	sqlstores.PostgresLinger = 50 * time.Millisecond
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	count := func() (n int) {
		q := fmt.Sprintf(`SELECT count(*) FROM pg_database WHERE datname LIKE 'badmac\_%d\_%%'`, os.Getpid())
		if err := admin.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	start := time.Now()
	st, err := sqlstores.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first Open (CREATE DATABASE, schema): %v", time.Since(start))
	if n := count(); n != 1 {
		t.Fatalf("%d databases of ours while a run is open; want 1", n)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("database still there 5s after the last run closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestPostgresUnset(t *testing.T) {
	t.Setenv(sqlstores.PostgresEnv, "")
	v, err := stores.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), sqlstores.PostgresEnv) || !strings.Contains(err.Error(), "scripts/postgres.sh") {
		t.Fatalf("Open without %s: err = %v; want one naming the variable and scripts/postgres.sh", sqlstores.PostgresEnv, err)
	}
}

func TestPostgresWrongDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://badmac:s3cret-pw@127.0.0.1:1/postgres?sslmode=disable",
		"host=127.0.0.1 port=1 user=badmac password=s3cret-pw dbname=postgres sslmode=disable",
		"postgres://badmac@127.0.0.1:1/postgres?sslmode=disable&password=s3cret-pw",
		"postgres://badmac:s3cret-pw@127.0.0.1:1/postgres?sslmode=bogus", // parse error
	} {
		start := time.Now()
		st, err := sqlstores.OpenPostgres(context.Background(), dsn)
		took := time.Since(start)
		if err == nil {
			st.Close()
			t.Fatalf("OpenPostgres(%s) succeeded", sqlstores.Redact(dsn))
		}
		msg := err.Error()
		t.Logf("%s (%v)", msg, took.Round(time.Millisecond))
		if strings.Contains(msg, "\n") || strings.Contains(msg, "s3cret") || !strings.Contains(msg, sqlstores.Redact(dsn)) {
			t.Errorf("error %q: want one line naming %q, without the password", msg, sqlstores.Redact(dsn))
		}
		if errors.Unwrap(err) == nil {
			t.Errorf("error %q wraps nothing", msg)
		}
		if took > 5*time.Second {
			t.Errorf("took %v to fail", took)
		}
	}
}

// TestPostgresHungServer checks that a server that accepts and never
// answers fails the open within connect_timeout.
func TestPostgresHungServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dsn := fmt.Sprintf("postgres://badmac:s3cret-pw@%s/postgres?sslmode=disable&connect_timeout=1", l.Addr())
	start := time.Now()
	_, err = sqlstores.OpenPostgres(context.Background(), dsn)
	took := time.Since(start)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), sqlstores.Redact(dsn)) {
		t.Fatalf("err = %v; want one naming %s", err, sqlstores.Redact(dsn))
	}
	if took > 3*time.Second {
		t.Fatalf("took %v to fail with connect_timeout=1", took)
	}
	t.Logf("%v (%v)", err, took.Round(time.Millisecond))
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://badmac@127.0.0.1:54329/postgres?sslmode=disable":      "postgres://badmac@127.0.0.1:54329/postgres?sslmode=disable",
		"postgres://u:pw@h:5432/db?sslmode=disable":                       "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgresql://u:p@ss@h/db":                                        "postgresql://u:xxxxx@h/db",
		"postgres://u:a/b#c@h/db":                                         "postgres://u:xxxxx@h/db",
		"postgres://u@h/db?password=pw&sslmode=disable":                   "postgres://u@h/db?password=xxxxx&sslmode=disable",
		"host=h user=u password=pw dbname=d":                              "host=h user=u password=xxxxx dbname=d",
		"host=h password = 'p w\\'x' dbname=d":                            "host=h password = xxxxx dbname=d",
		"host=/tmp/badmac-pg user=badmac dbname=postgres sslmode=disable": "host=/tmp/badmac-pg user=badmac dbname=postgres sslmode=disable",
	} {
		if got := sqlstores.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q; want %q", in, got, want)
		}
	}
}

// BenchmarkOpen measures what a run pays for storage: Open, two instances
// (two processes), one write read back, Close.
func BenchmarkOpen(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			st := openVariant(b, name) // warm: template, database
			st.Close()
			var open, inst time.Duration
			for b.Loop() {
				t0 := time.Now()
				st := openVariant(b, name)
				t1 := time.Now()
				x, y := instance(b, st), instance(b, st)
				t2 := time.Now()
				if err := x.Sessions.PutSession(ctx, "1:0", []byte("x")); err != nil {
					b.Fatal(err)
				}
				if got, err := y.Sessions.GetSession(ctx, "1:0"); err != nil || string(got) != "x" {
					b.Fatalf("GetSession = %q, %v", got, err)
				}
				if err := st.Close(); err != nil {
					b.Fatal(err)
				}
				open += t1.Sub(t0)
				inst += t2.Sub(t1)
			}
			b.ReportMetric(float64(open.Microseconds())/float64(b.N), "open-µs/run")
			b.ReportMetric(float64(inst.Microseconds())/float64(b.N)/2, "instance-µs")
		})
	}
}

// BenchmarkPutGetSession measures one store round trip on each backend.
func BenchmarkPutGetSession(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			st := openVariant(b, name)
			defer st.Close()
			s := instance(b, st)
			rec := bytes.Repeat([]byte("r"), 1024)
			for b.Loop() {
				if err := s.Sessions.PutSession(ctx, "1:0", rec); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Sessions.GetSession(ctx, "1:0"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
