package main

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestClientBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"client", "-replies", "sometimes"},
		{"client", "-buffer", "maybe"},
		{"client", "-stores", "nosuch"},
		{"client", "-runs", "0"},
		{"client", "-reply-rate", "1.5"},
		{"client", "extra"},
	} {
		code, out, errs := run(t, args...)
		require.Equal(t, 2, code, "%v: %s", args, out)
		require.Equal(t, 1, strings.Count(errs, "\n"), "%v: one line: %q", args, errs)
		require.True(t, strings.HasPrefix(errs, "badmac: "), "%v: %q", args, errs)
	}
}

// One stanza in flight: the real client's rows are deterministic, and
// nothing fails.
func TestClientOneInFlight(t *testing.T) {
	args := []string{"client", "-runs", "1", "-messages", "4", "-burst", "1", "-buffer", "off"}
	code, out, errs := run(t, args...)
	require.Equal(t, 0, code, errs)
	_, again, _ := run(t, args...)
	require.Equal(t, out, again, "same seed, one stanza in flight: the same output byte for byte")
	for _, row := range []string{"client-inline", "client-async"} {
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, row+" ") {
				line = l
			}
		}
		require.NotEmpty(t, line, out)
		require.Contains(t, line, "0.0% [0.0,", out)
	}
	require.Contains(t, out, "deterministic")
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
	w := widestTableLine(t, out, "real whatsmeow client")
	t.Logf("client table: %d columns", w)
	require.LessOrEqual(t, w, 120, out)
	require.Contains(t, out, "client-inline+buffer")
	code, out, errs = run(t, "client", "-runs", "1", "-messages", "4", "-replies", "inline", "-buffer", "off", "-wide")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "handler overlaps", "-wide prints every column")
	t.Logf("client -wide table: %d columns", widestTableLine(t, out, "real whatsmeow client"))

	code, out, errs = run(t, "run", "-schedules", "1", "-scenarios", "reply", "-disciplines", "concurrent,locked",
		"-stores", "reference,files-atomic", "-must-pass", "none", "-out", t.TempDir())
	require.Equal(t, 0, code, errs)
	w = widestTableLine(t, out, "seed 1, mode")
	t.Logf("run table: %d columns", w)
	require.LessOrEqual(t, w, 120, out)
}
