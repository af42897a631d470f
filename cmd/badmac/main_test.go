package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/internal/testenv"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// Same seed, same output, byte for byte. The run is a plain `badmac run`
// (every row it has by default), so it also shows that a plain run adds
// the real whatsmeow Client's rows in controlled mode: client-inline on
// the reference store and sqlite is in the default gate and passes;
// client-async is judged and not gated (its gated failure:
// TestDefaultRunHasRealClientRows). One schedule of reply a row by
// default, two of reply and group under BADMAC_LONG (CI's long step).
func TestSameSeedSameOutput(t *testing.T) {
	dir := t.TempDir()
	n, scenarios := "1", "reply"
	if testenv.Long() {
		n, scenarios = "2", "reply,group"
	}
	args := []string{"run", "-schedules", n, "-scenarios", scenarios, "-out", dir, "-seed", "9"}
	c1, o1, e1 := run(t, args...)
	c2, o2, _ := run(t, args...)
	require.Equal(t, o1, o2)
	require.Equal(t, c1, c2)
	require.Equal(t, 0, c1, o1+e1)
	for _, want := range []string{"client-inline *  reference  reply", "client-inline *  sqlite     reply", "client-async     reference  reply",
		"client-async     sqlite     reply", "locked *         reference  reply"} {
		require.Contains(t, o1, want)
	}
}

// A failing pair's replay command reproduces its failure.
func TestReplayCommandReproduces(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := run(t, "run", "-schedules", "6", "-scenarios", "reply", "-disciplines", "concurrent",
		"-stores", "mutexed", "-must-pass", "concurrent/mutexed", "-out", dir)
	require.Equal(t, 1, code, out)
	m := regexp.MustCompile(`replay: badmac replay (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	rc, rout, rerr := run(t, "replay", m[1])
	require.Equal(t, 1, rc, rerr)
	require.Contains(t, rout, "FAIL: ")
	// The summary the run printed for the row is the replay's too.
	sum := regexp.MustCompile(`FAIL concurrent/mutexed/reply: (.*)`).FindStringSubmatch(out)
	require.Contains(t, rout, "FAIL: "+sum[1])
}

// Must-pass pairs pass: exit 0.
func TestMustPassPairsPass(t *testing.T) {
	code, out, _ := run(t, "run", "-schedules", "5", "-disciplines", "locked", "-stores", "reference,mutexed", "-out", t.TempDir())
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "PASS")
}

// The embedded SQLite store through whatsmeow's sqlstore.
func TestSQLiteRow(t *testing.T) {
	code, out, errs := run(t, "run", "-schedules", "3", "-disciplines", "locked", "-stores", "sqlite", "-scenarios", "reply",
		"-must-pass", "locked/sqlite", "-out", t.TempDir())
	require.Equal(t, 0, code, out+errs)
	require.Contains(t, out, "sqlite")
}

// Bad input: one line on stderr, exit 2, never a panic.
func TestBadInput(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.txt")
	require.NoError(t, os.WriteFile(bad, []byte("badmac schedule v1\nseed 1\nstore reference\ncontacts alice:1\nops\nfly alice.0\n"), 0o644))
	old := filepath.Join(t.TempDir(), "old.txt")
	require.NoError(t, os.WriteFile(old, []byte("badmac schedule v0\n"), 0o644))
	good := filepath.Join(t.TempDir(), "good.txt")
	require.NoError(t, os.WriteFile(good, []byte("badmac schedule v1\nseed 1\nscenario reply\ndiscipline locked\nstore reference\ncontacts alice:1\nops\nsend alice.0 m1\n"), 0o644))
	devStore := filepath.Join(t.TempDir(), "dev.txt")
	require.NoError(t, os.WriteFile(devStore, []byte("badmac schedule v1\ndevice client-inline\nseed 1\nscenario reply\ndiscipline locked\nstore nosuch\ncontacts alice:1\nops\nsend alice.0 m1\n"), 0o644))
	cases := map[string][]string{
		"replay bad mode":    {"replay", "-mode", "bogus", good},
		"replay model free":  {"replay", "-mode", "free", good},
		"unknown device":     {"run", "-device", "nosuch"},
		"device all skip":    {"run", "-device", "client-inline", "-scenarios", "multi"},
		"unknown flag":       {"run", "-bogus"},
		"unknown store":      {"run", "-stores", "nosuch"},
		"unknown scenario":   {"run", "-scenarios", "nosuch"},
		"unknown command":    {"frobnicate"},
		"malformed replay":   {"replay", bad},
		"version mismatch":   {"replay", old},
		"missing file":       {"replay", filepath.Join(t.TempDir(), "none.txt")},
		"bad must-pass":      {"run", "-must-pass", "locked"},
		"bad schedules":      {"run", "-schedules", "0"},
		"postgres down dsn":  {"run", "-stores", "postgres", "-must-pass", "none"},
		"must-pass not run":  {"run", "-stores", "reference", "-must-pass", "locked/sqlite"},
		"no must-pass":       {"run", "-stores", "files", "-disciplines", "locked"},
		"empty must-pass":    {"run", "-must-pass", ""},
		"procs must-pass":    {"procs", "-stores", "sqlite", "-must-pass", "replicas/postgres"},
		"procs bad store":    {"procs", "-stores", "reference"},
		"procs dsn down":     {"procs", "-stores", "postgres"},
		"procs bad seeds":    {"procs", "-seeds", "0"},
		"procs write-behind": {"procs", "-write-behind", "2000"},
		"html dir missing":   {"run", "-html", filepath.Join(t.TempDir(), "no", "r.html")},
		"shrink no file":     {"shrink"},
		"shrink two files":   {"shrink", bad, old},
		"shrink budget":      {"shrink", bad, "-budget", "0"},
		"shrink malformed":   {"shrink", bad},
		"shrink dev store":   {"shrink", devStore}, // a device's store is the device's to judge (was a panic)
		"bench bad pair":     {"bench", "-broken", "locked/reference"},
		"bench bad store":    {"bench", "-stores", "nosuch"},
	}
	t.Setenv("BADMAC_POSTGRES_DSN", "postgres://u:secret@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			code, _, errs := run(t, args...)
			require.Equal(t, 2, code)
			require.Equal(t, 1, strings.Count(errs, "\n"), "want one line, got %q", errs)
			require.True(t, strings.HasPrefix(errs, "badmac: "), errs)
			require.NotContains(t, errs, "secret")
		})
	}
	_, _, errs := run(t, "replay", bad)
	require.Contains(t, errs, "line 6")
}
