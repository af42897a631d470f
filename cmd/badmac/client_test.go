package main

import (
	"strings"
	"testing"

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
