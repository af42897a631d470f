package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/stores"
)

func TestClientBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"client", "-replies", "sometimes"},
		{"client", "-buffer", "maybe"},
		{"client", "-stores", "nosuch"},
		{"client", "-runs", "0"},
		{"client", "-reply-rate", "1.5"},
		{"client", "-reply-rate", "x"},
		{"client", "extra"},
		{"client", "-replies", "none"},                       // no device replies never: run -scenarios burst
		{"client", "-must-pass", "client-async/sqlite/x"},    // not a row of the run
		{"client", "-messages", "4", "-must-pass", "nosuch"}, // the workload's gate is read as run reads it
		{"client", "-messages", "4", "-buffer", "on", "-stores", "reference"},
		{"client", "-messages", "0"},
		{"client", "-messages", "4", "-messages", "5"},
		{"client", "-burst", "101"},
		{"client", "-drop", "1.5"},
		{"client", "-v"},
	} {
		code, out, errs := run(t, args...)
		require.Equal(t, 2, code, "%v: %s", args, out)
		require.Equal(t, 1, strings.Count(errs, "\n"), "%v: one line: %q", args, errs)
		require.True(t, strings.HasPrefix(errs, "badmac: "), "%v: %q", args, errs)
	}
}

// The workload flags are the scenario reply's parameters: `badmac client
// -messages 8 -burst 4` prints the run command it is a preset of on
// stderr, and that command prints the same table with the same exit code,
// in both directions: a store that drops the send path's session writes
// fails the must-pass row (two texts of a burst answered from one sending
// chain), and the replay line it prints replays the failure alone (its
// header names the parameters); the reference store passes.
func TestClientWorkloadIsRunPreset(t *testing.T) {
	registerDropPutMany()
	dir := t.TempDir()
	digits := regexp.MustCompile(`[0-9]+`)
	preset := regexp.MustCompile(`(?m)^badmac client: a preset of \S+ run (.*)$`)
	for _, tc := range []struct {
		store string
		code  int
	}{{"drop-put-many", 1}, {"reference", 0}} {
		code, out, errs := run(t, "client", "-runs", "1", "-messages", "8", "-burst", "4", "-reply-rate", "1", "-replies", "inline", "-buffer", "off",
			"-stores", tc.store, "-must-pass", "client-inline/"+tc.store, "-out", dir)
		require.Equal(t, tc.code, code, "%s\n%s", out, errs)
		require.Contains(t, out, "reply:messages=8:burst=4:reply=1", "the row names the parameters")
		m := preset.FindStringSubmatch(errs)
		require.NotNil(t, m, errs)
		require.Equal(t, "-device client-inline -stores "+tc.store+" -scenarios reply:messages=8:burst=4:reply=1 -mode free -schedules 1 -seed 1 -out "+dir+
			" -must-pass client-inline/"+tc.store, m[1])
		rcode, rout, rerrs := run(t, append([]string{"run"}, strings.Fields(m[1])...)...)
		require.Equal(t, code, rcode, rerrs)
		// Free mode: a count may differ from run to run; the table, its
		// rows, gate and verdict may not.
		require.Equal(t, digits.ReplaceAllString(rout, "#"), digits.ReplaceAllString(out, "#"), "badmac client prints its run command's table")
		if tc.code == 0 {
			require.Contains(t, out, "PASS")
			continue
		}
		require.Contains(t, out, "FAIL")
		r := regexp.MustCompile(`replay -mode free (\S+)`).FindStringSubmatch(out)
		require.NotNil(t, r, out)
		code, rep, errs := run(t, "replay", "-mode", "free", r[1])
		require.Equal(t, 1, code, "the replay line replays the failure: %s\n%s", rep, errs)
	}
}

// dropPutMany is the reference store with PutManySessions doing nothing
// (realclient's dropBatch): SendMessage's session cache writes back
// through it, so the bot's replies reuse their message keys and the
// contact fails them, whatever the interleaving.
type dropPutMany struct{ stores.All }

func (dropPutMany) PutManySessions(context.Context, map[string][]byte) error { return nil }

type dropPutManyStorage struct{ stores.Storage }

func (s dropPutManyStorage) Instance(ctx context.Context) (stores.Set, error) {
	set, err := s.Storage.Instance(ctx)
	if err != nil {
		return set, err
	}
	return stores.SetOf(dropPutMany{set.Sessions.(stores.All)}), nil
}

// registerDropPutMany adds the broken store as drop-put-many (tests only).
func registerDropPutMany() {
	stores.Register(stores.Variant{Name: "drop-put-many", Doc: "test only: the reference store with PutManySessions doing nothing",
		Open: func(ctx context.Context) (stores.Storage, error) {
			st, err := stores.MustLookup("reference").Open(ctx)
			return dropPutManyStorage{st}, err
		}})
}

// badmac client is a preset of run -device: it prints the table of the
// run command it equals, byte for byte, with the same exit code; the gate
// is run's, in both directions (a store that drops the send path's
// session writes fails a must-pass row, exit 1, and its replay line
// replays it; the reference store passes, exit 0).
func TestClientIsRunPreset(t *testing.T) {
	registerDropPutMany()
	dir := t.TempDir()
	runArgs := func(store, must string) []string {
		return []string{"run", "-device", "client-inline", "-stores", store, "-scenarios", "reply", "-mode", "free",
			"-schedules", "2", "-seed", "1", "-out", dir, "-must-pass", must}
	}
	clientArgs := func(store, must string) []string {
		return []string{"client", "-runs", "2", "-replies", "inline", "-buffer", "off", "-stores", store, "-out", dir, "-must-pass", must}
	}
	code, out, errs := run(t, clientArgs("reference", "client-inline/reference")...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "PASS")
	rcode, rout, _ := run(t, runArgs("reference", "client-inline/reference")...)
	require.Equal(t, code, rcode)
	// Free mode: the generator reacts to what the client did, so a count
	// may differ from run to run under load; the table, its rows, legend,
	// gate and verdict may not.
	digits := regexp.MustCompile(`[0-9]+`)
	require.Equal(t, digits.ReplaceAllString(rout, "#"), digits.ReplaceAllString(out, "#"), "badmac client prints run -device's table")
	require.Equal(t, "-device client-inline -stores reference -scenarios reply -mode free -schedules 2 -seed 1 -out "+dir+" -must-pass client-inline/reference",
		strings.Join(clientRunArgs([]string{"client-inline"}, []string{"reference"}, "reply", 2, 1, "client-inline/reference", false, dir), " "))
	// The default gate is run's too: client-inline on sqlite.
	code, out, errs = run(t, "client", "-runs", "1", "-replies", "inline", "-buffer", "off", "-out", dir)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "gate (the default: client-inline/sqlite)")

	code, out, errs = run(t, clientArgs("drop-put-many", "client-inline/drop-put-many")...)
	require.Equal(t, 1, code, "%s\n%s", out, errs)
	require.Contains(t, out, "FAIL")
	rcode, _, _ = run(t, runArgs("drop-put-many", "client-inline/drop-put-many")...)
	require.Equal(t, code, rcode)
	m := regexp.MustCompile(`replay -mode free (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	code, rep, errs := run(t, "replay", "-mode", "free", m[1])
	require.Equal(t, 1, code, "the replay line replays the failure: %s\n%s", rep, errs)
}

// -drop is the scenario's parameter drop=P too: the server drops the
// connection after a burst, whatsmeow reconnects and the stanzas it had
// not acknowledged come again. Judged against the serial run of the same
// schedule; gated only on the rows -must-pass names (a reply whose send
// the drop cuts is the client's loss: free mode's only). The replay file
// names the parameter and holds the drops, and replays the failure of a
// store that drops the send path's session writes.
func TestClientDrop(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := run(t, "client", "-runs", "2", "-messages", "8", "-burst", "3", "-drop", "1", "-replies", "inline", "-buffer", "off", "-out", dir)
	require.Equal(t, 0, code, "%s\n%s", out, errs)
	require.Contains(t, out, "reply:messages=8:burst=3:drop=1")
	require.Contains(t, out, "NOT GATED")
	require.Contains(t, errs, "-scenarios reply:messages=8:burst=3:drop=1 -mode free -schedules 2 -seed 1 -out "+dir+" -must-pass none")
	// The schedule carries its drops: the failing row's replay file.
	registerDropPutMany()
	code, out, errs = run(t, "client", "-runs", "1", "-messages", "8", "-burst", "3", "-drop", "1", "-replies", "inline", "-buffer", "off",
		"-stores", "drop-put-many", "-must-pass", "client-inline/drop-put-many", "-out", dir)
	require.Equal(t, 1, code, "%s\n%s", out, errs)
	r := regexp.MustCompile(`replay -mode free (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, r, out)
	require.Regexp(t, `^client-inline-drop-put-many-reply-messages=8-burst=3-drop=1-seed\d+\.txt$`, filepath.Base(r[1]),
		"a file name without ':' (not allowed on Windows)")
	text, err := os.ReadFile(r[1])
	require.NoError(t, err)
	require.Contains(t, string(text), "scenario reply:messages=8:burst=3:drop=1\n")
	require.Contains(t, string(text), "\ndrop\n", "the schedule holds its drops")
	code, rep, errs := run(t, "replay", "-mode", "free", r[1])
	require.Equal(t, 1, code, "the replay line replays the failure: %s\n%s", rep, errs)
}

// widestTableLine is the widest of the lines before the first line that
// starts with one of ends (the table, header included), in runes.
func widestTableLine(t *testing.T, out string, end string) int {
	t.Helper()
	table, _, ok := strings.Cut(out, "\n"+end)
	require.True(t, ok, "no %q after the table:\n%s", end, out)
	w := 0
	for _, l := range strings.Split(table, "\n") {
		w = max(w, utf8.RuneCountInString(l))
	}
	return w
}

// The default tables fit 120 columns (client's was 232); -wide may not.
func TestTablesFit120(t *testing.T) {
	code, out, errs := run(t, "client", "-runs", "1", "-messages", "4", "-replies", "inline", "-buffer", "off,on")
	require.Equal(t, 0, code, errs)
	w := widestTableLine(t, out, "seed 1, mode")
	t.Logf("client table: %d columns", w)
	require.LessOrEqual(t, w, 120, out)
	require.Contains(t, out, "client-inline+buffer")
	code, out, errs = run(t, "client", "-runs", "1", "-messages", "4", "-replies", "inline", "-buffer", "off", "-wide")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "OldCounter", "-wide prints every column")
	t.Logf("client -wide table: %d columns", widestTableLine(t, out, "seed 1, mode"))

	code, out, errs = run(t, "run", "-schedules", "1", "-scenarios", "reply", "-disciplines", "concurrent,locked",
		"-stores", "reference,files-atomic", "-must-pass", "none", "-out", t.TempDir())
	require.Equal(t, 0, code, errs)
	w = widestTableLine(t, out, "seed 1, mode")
	t.Logf("run table: %d columns", w)
	require.LessOrEqual(t, w, 120, out)
}
