package main

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores/sqlstores"
)

// needPostgres skips without a server, except in CI, which must run it.
// ($BADMAC_POSTGRES_DSN, or a cluster this binary starts: testenv.Postgres).
func needPostgres(t *testing.T) {
	t.Helper()
	testenv.PostgresDSN(t)
}

// The whole default suite on whatsmeow's sqlstore over real databases: every
// scenario has a row per (discipline, store), locked rows are never blamed.
func TestRealDatabasesSuite(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			if store == "postgres" {
				needPostgres(t)
			}
			code, out, errs := run(t, "run", "-stores", store, "-disciplines", "locked,concurrent",
				"-schedules", "2", "-shrink", "0", "-must-pass", "locked/"+store, "-out", t.TempDir(), "-wide")
			require.Equal(t, 0, code, out+errs)
			for _, sc := range scenarios.Default {
				for _, d := range []string{`locked \*`, "concurrent"} {
					re := regexp.MustCompile(`│\s+` + d + `\s+│\s+` + store + `\s+│\s+` + sc + `\s+│([^\n]*)`)
					m := re.FindStringSubmatch(out)
					require.NotNil(t, m, "no %s/%s/%s row in\n%s", d, store, sc, out)
					if d != "concurrent" {
						cells := strings.Split(m[1], "│")
						blamed := strings.TrimSpace(cells[len(cells)-7]) // pair-blamed
						require.Equal(t, "0", blamed, "locked/%s/%s blamed: %s", store, sc, m[0])
					}
				}
			}
			// concurrent over a real database still breaks sessions (docs/design.md §4).
			require.Regexp(t, `(?m)^  concurrent/`+store+`/\w+: \d/2 schedules failed, `, out)
		})
	}
}

// The test binary doubles as `badmac device` for TestDeviceSubcommand.
func TestMain(m *testing.M) {
	if os.Getenv("BADMAC_CMD_CHILD") == "1" {
		os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	// In-process tests read printed commands as "badmac …"; the detection
	// is TestSelfCommand's and TestPrintedReplayRuns' (a child process).
	self = func() string { return "badmac" }
	os.Exit(testenv.Main(m))
}

// `badmac device` is the child procs drives: with gates, killed inside a
// request (its decrypt parked after its first store calls), restarted on
// the same SQLite file, the message redelivered, with the oracle's
// verdict.
func TestDeviceSubcommand(t *testing.T) {
	ctx := context.Background()
	defer sqlstores.Shutdown()
	s, err := harness.Parse(strings.NewReader(`badmac schedule v1
seed 3
scenario crash
discipline locked
store sqlite
contacts alice:1
ops
send alice.0 m1
deliver m1
step m1
step m1
crash
restart
reply alice.0 r1
run r1
read r1
`))
	require.NoError(t, err)
	dev := procs.Device{Exe: os.Args[0], Args: []string{"device"}, Env: append(os.Environ(), "BADMAC_CMD_CHILD=1"), Gates: true}
	_, res, err := harness.RunOn(ctx, dev, s, harness.Controlled, harness.Ops(s.Ops))
	require.NoError(t, err)
	require.Equal(t, 1, res.Crashes, "%v", res.History)
	require.Contains(t, res.CrashPoints[0], "inside requests (m1 in flight)")
	require.False(t, res.RegeneratedCreds)
	require.False(t, res.Failed(), res.Summary())
	for _, m := range res.Messages {
		require.Equal(t, harness.Delivered, m.Outcome(), "%s\n%s", m.ID, res.HistoryText())
	}
	// A bad flag is exit 2 with one line.
	code, _, errs := run(t, "device", "-jid", "not a jid")
	require.Equal(t, 2, code)
	require.Equal(t, 1, strings.Count(errs, "\n"), errs)
}

// Two device processes on one PostgreSQL database, the same account: taking
// turns (replica) nothing breaks; at once (overlap) even the locked client
// loses messages and its sessions Bad MAC, because its locks are per process.
// The row has a replay command that reproduces the failure.
func TestTwoReplicasPostgres(t *testing.T) {
	needPostgres(t)
	dir := t.TempDir()
	code, out, errs := run(t, "run", "-stores", "postgres", "-disciplines", "locked", "-scenarios", "replica,overlap",
		"-schedules", "6", "-shrink", "0", "-must-pass", "locked/postgres", "-out", dir, "-wide")
	require.Equal(t, 1, code, out+errs)
	require.Regexp(t, `│\s+locked \*\s+│\s+postgres\s+│\s+replica\s+│\s+6\s+│\s+0\s+│`, out)
	require.Regexp(t, `│\s+locked \*\s+│\s+postgres\s+│\s+overlap\s+│\s+6\s+│\s+[1-6]\s+│`, out)
	m := regexp.MustCompile(`FAIL locked/postgres/overlap: (.*)\n\s+replay: badmac replay (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	rc, rout, rerr := run(t, "replay", m[2])
	require.Equal(t, 1, rc, rerr)
	require.Contains(t, rout, "FAIL: "+m[1])
}

// The txn discipline needs a store with DoDecryptionTxn: on any other it is
// bad input (exit 2, one line), never silently another discipline.
func TestTxnNeedsTransactions(t *testing.T) {
	code, _, errs := run(t, "run", "-disciplines", "txn", "-stores", "mutexed", "-scenarios", "reply", "-schedules", "1",
		"-must-pass", "txn/mutexed", "-out", t.TempDir())
	require.Equal(t, 2, code, errs)
	require.Equal(t, 1, strings.Count(errs, "\n"), errs)
	require.Contains(t, errs, "store mutexed has no DoDecryptionTxn")
	// txn runs on sqlite, and fails its gate there: txn is whatsmeow's
	// client plus the transaction, so a send that commits while a
	// receive's transaction is open makes that transaction's write fail
	// with SQLITE_BUSY_SNAPSHOT, a StoreError (the retry receipt recovers
	// the message; a store error fails a row). Seed 1 hits it in both
	// rows. (Before, this test accepted any exit code but 2.)
	code, out, errs := run(t, "run", "-disciplines", "txn", "-stores", "sqlite", "-scenarios", "reply,crash", "-schedules", "3",
		"-shrink", "0", "-must-pass", "txn/sqlite", "-out", t.TempDir(), "-wide")
	require.Equal(t, 1, code, out+errs)
	require.Regexp(t, `│\s+txn \*\s+│\s+sqlite\s+│\s+crash\s+│`, out)
	require.Regexp(t, `(?m)^FAIL txn/sqlite/reply: \d+ STORE ERRORS; `, out)
	require.Regexp(t, `(?m)^FAIL txn/sqlite/crash: crash after .*: \d+ STORE ERRORS; `, out)
	require.Regexp(t, `(?m)^FAIL: must-pass rows failed: txn/sqlite/reply, txn/sqlite/crash$`, out)
	// Not gated, the same rows are measurements and the run exits 0.
	code, out, errs = run(t, "run", "-disciplines", "txn", "-stores", "sqlite", "-scenarios", "reply", "-schedules", "3",
		"-shrink", "0", "-must-pass", "none", "-out", t.TempDir())
	require.Equal(t, 0, code, out+errs)
	require.NotContains(t, out, "FAIL")
	require.Regexp(t, `(?m)^  txn/sqlite/reply: 2/3 schedules failed, `, out)
}

// txn on PostgreSQL loses replies to whatsmeow's own send/receive race
// (DoDecryptionTxn does not serialise sends): pair-blamed, and not charged
// to the store, whose reference run is the same client on the reference
// store with transactions (stores.ReferenceTxn).
func TestTxnRaceIsNotTheStores(t *testing.T) {
	needPostgres(t)
	// Seed 1 shows the race in 6 schedules (1 message); 20 under
	// BADMAC_LONG (CI's long step).
	n := testenv.Size(6, 20)
	code, rep, errs := runReport(t, "run", "-disciplines", "txn", "-stores", "postgres", "-scenarios", "reply",
		"-schedules", strconv.Itoa(n), "-shrink", "0", "-must-pass", "none", "-out", t.TempDir())
	require.Equal(t, 0, code, errs)
	require.Len(t, rep.Rows, 1)
	r := rep.Rows[0]
	require.Positive(t, r.Blamed, "the race did not show in %d schedules", n)
	require.Positive(t, r.OldCounter)
	require.NotNil(t, r.StoreBlamed)
	require.Zero(t, *r.StoreBlamed, "whatsmeow's race charged to a correct store")
}
