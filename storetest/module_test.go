package storetest_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/internal/testenv"
)

// TestMain stops the PostgreSQL cluster testenv.Postgres started, if any.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestUserModule is storetest as a user meets it: a module of its own,
// outside this repository (testdata/usermodule, copied to a temporary
// directory, badmac replaced by this checkout), with file-backed stores,
// tested by `go test` there; each store's instances live in processes of
// that module's own test binary, killed for a crash. The correct one
// passes every scenario, crash, restart and replica included; each broken
// one fails with what it did wrong, in plain words; the replay command one
// of them prints, run verbatim from the module root, replays the failure.
func TestUserModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests a separate module (about a minute)")
	}
	testenv.Postgres() // for the module's TestPostgres: $BADMAC_POSTGRES_DSN, or a cluster of this binary's (subtest postgres reports what is missing)
	mod, goBin, env := testenv.UserModule(t, filepath.Join("testdata", "usermodule"), "example.com/userstores")
	for _, k := range []string{"BADMAC_REPLAY", "BADMAC_HTML", "BADMAC_SHRINK_BUDGET"} {
		env = append(env, k+"=")
	}

	cmd := exec.Command(goBin, "test", "-count=1", "-v", ".")
	cmd.Dir, cmd.Env = mod, env
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the broken stores must fail:\n%s", out)
	tests := splitTests(string(out))

	require.Contains(t, tests, "TestCorrect", "%s", out)
	require.Contains(t, tests["TestCorrect"], "--- PASS: TestCorrect", "the correct file store passes every scenario")
	for _, sc := range []string{"crash", "restart", "replica", "rollback", "overlap"} {
		require.Regexp(t, `storetest: `+sc+` \(controlled interleavings, locked client\): \d+ schedules, \d+ messages, no failures`, tests["TestCorrect"])
	}

	// The real whatsmeow Client over the user's store (Options.Client):
	// the correct store passes every scenario the client runs, its restart
	// reopening the store through the Opener.
	for _, sc := range []string{"burst", "reply", "reorder", "restart"} {
		require.Regexp(t, `storetest: `+sc+` \(real whatsmeow Client, inline replies\): 2 schedules, \d+ messages, no failures`, tests["TestCorrect"])
	}
	// A store whose PutManySessions does nothing (and GetManySessions
	// finds nothing) fails there too: SendMessage's session cache writes
	// back through it.
	require.Contains(t, tests["TestDropBatches"], "storetest: scenario reply (real whatsmeow Client, inline replies): 2 of 2 schedules failed")

	want := map[string][]string{
		// An unlocked whole-file read-modify-write loses sessions (or reads
		// a torn file) when 16 goroutines write at once.
		"TestUnlocked": {"16 goroutines at once: "},
		// A write-back buffer loses what it held when the process is killed,
		// and keeps its writes from a second process.
		"TestWriteBack": {"reopen after a crash: after reopen, PutSession", "from before the crash is missing",
			"scenario crash (controlled interleavings, locked client)",
			"two instances at once: GetSession alice:0 by instance @1 returned nothing, not what PutSession by instance @0 wrote before it",
			"only the writing instance saw its write afterwards"},
		// A timer-driven write-back: caught because the process is killed
		// (an abandoned one flushed from its timer later).
		"TestTimerWriteBack": {"reopen after a crash: after reopen, PutSession alice:0 from before the crash is missing"},
		"TestDropBatches":    {"PutManySessions dropped carol:0"},
		// Keyed by user only: the diagnosis names both addresses.
		"TestKeyByUser": {"GetSession alice:0 returned the record PutSession wrote for alice:1"},
		// whatsmeow's send path wants every address back (send.go).
		"TestOmitMissing": {"GetManySessions left out nobody:0, nobody:1, nobody:2 (no session)", "scenario firstcontact (controlled interleavings"},
		// The next-prekey counter kept in memory, saved in Close only.
		"TestPreKeyCounter": {"reopen after a crash: after the crash, prekey 1 has a different key than the one GetOrGenPreKeys handed out before it"},
		"TestMigrateNoop":   {"MigratePNToLID did not move the session of 15550001:0 to 900001_1:0", "did not move the identity", "did not move the sender key"},
		"TestMigrateCopy":   {"MigratePNToLID left the session of 15550001:0 under the phone number"},
		"TestMigrateSplit":  {"a crash inside MigratePNToLID 15550001 (after write", "(the call is not atomic across a crash)"},
	}
	require.NotContains(t, tests["TestMigrateSplit"], "MigratePNToLID: ", "one atomic step at a time is a correct migration apart from the crash")
	for name, subs := range want {
		body := tests[name]
		require.Contains(t, body, "--- FAIL: "+name, "%s must fail:\n%s", name, body)
		for _, s := range subs {
			require.Contains(t, body, s, "%s", body)
		}
	}

	// whatsmeow's own sqlstore on SQLite: no failures, MigratePNToLID's
	// checks included.
	require.Contains(t, tests["TestSQLite"], "--- PASS: TestSQLite", "%s", tests["TestSQLite"])
	require.Contains(t, tests["TestSQLite"], "conformance: every method answered as whatsmeow expects")
	// On PostgreSQL, no Snapshotter: rollback refused in one line, every
	// other scenario run.
	t.Run("postgres", func(t *testing.T) {
		testenv.PostgresDSN(t)
		pg := tests["TestPostgres"]
		require.Contains(t, pg, "--- PASS: TestPostgres", "%s", pg)
		require.Contains(t, pg, "storetest: scenario rollback not run: your store wrote nothing under dir")
		for _, sc := range []string{"burst", "reply", "multi", "group", "reorder", "longlived", "firstcontact", "combined", "crash", "restart", "replica", "overlap"} {
			require.Regexp(t, `storetest: `+sc+` \(controlled interleavings, locked client\): \d+ schedules, \d+ messages, no failures`, pg)
		}
	})

	// The first replay command TestKeyByUser printed, verbatim, from the
	// module root.
	m := regexp.MustCompile(`(?m)^\s+(BADMAC_REPLAY=\S+ go test .*example\.com/userstores)$`).FindStringSubmatch(tests["TestKeyByUser"])
	require.NotNil(t, m, "no replay command in:\n%s", tests["TestKeyByUser"])
	require.Contains(t, m[1], "-run '^TestKeyByUser$'")
	t.Logf("replaying: %s", m[1])
	html := filepath.Join(t.TempDir(), "timeline.html")
	rep := exec.Command("sh", "-c", "BADMAC_HTML="+html+" "+m[1])
	rep.Dir, rep.Env = mod, env
	rout, err := rep.CombinedOutput()
	require.Error(t, err, "the replay must fail as the run did:\n%s", rout)
	require.Contains(t, string(rout), "storetest: replay of ")
	require.Contains(t, string(rout), "returned the record PutSession wrote for", "%s", rout)
	page, err := os.ReadFile(html)
	require.NoError(t, err)
	require.True(t, bytes.Contains(page, []byte("<svg")) || bytes.Contains(page, []byte("<table")), "HTML report")
	for _, p := range regexp.MustCompile(`BADMAC_REPLAY=(\S+)`).FindAllStringSubmatch(string(out), -1) {
		os.Remove(p[1])
	}
}

// splitTests cuts verbose go test output into each top-level test's lines
// (parallel tests' lines are attributed by go test's === markers).
func splitTests(out string) map[string]string {
	tests := map[string]string{}
	cur := ""
	for _, line := range strings.SplitAfter(out, "\n") {
		for _, marker := range []string{"=== RUN   ", "=== CONT  ", "=== NAME  ", "--- FAIL: ", "--- PASS: "} {
			if name, ok := strings.CutPrefix(line, marker); ok {
				cur, _, _ = strings.Cut(strings.TrimSpace(name), " ")
			}
		}
		if cur != "" {
			tests[cur] += line
		}
	}
	return tests
}
