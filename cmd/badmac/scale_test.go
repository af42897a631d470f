package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// smallRun is a run with failing and passing rows, must-pass rows among
// the failing ones, small enough for a test.
var smallRun = []string{"run", "-schedules", "6", "-scenarios", "reply,reorder", "-disciplines", "concurrent,locked",
	"-stores", "reference,mutexed", "-must-pass", "locked/reference,concurrent/mutexed", "-seed", "3", "-shrink", "30"}

// The output is the same byte for byte for any worker count.
func TestWorkersSameOutput(t *testing.T) {
	dir := t.TempDir()
	var outs []string
	for _, w := range []string{"1", "2"} {
		code, out, errs := run(t, append(smallRun, "-out", dir, "-workers", w)...)
		require.Equal(t, 1, code, errs)
		outs = append(outs, out)
	}
	require.Equal(t, outs[0], outs[1])
	require.Contains(t, outs[0], "FAIL concurrent/mutexed/reply")
}

// Four shards merged give the unsharded run's table, JSON and exit code.
func TestShardsMergeToTheWholeRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "failures")
	wantCode, wantTable, errs := run(t, append(smallRun, "-out", out)...)
	require.Equal(t, 1, wantCode, errs)
	_, wantJSON, _ := run(t, append(smallRun, "-out", out, "-json")...)
	var files []string
	for k := 1; k <= 4; k++ {
		code, js, errs := run(t, append(smallRun, "-out", out, "-json", "-shard", itoa(k)+"/4")...)
		require.Contains(t, []int{0, 1}, code, errs)
		require.Contains(t, js, `"shard": "`+itoa(k)+`/4"`)
		f := filepath.Join(dir, "shard"+itoa(k)+".json")
		require.NoError(t, os.WriteFile(f, []byte(js), 0o644))
		files = append(files, f)
	}
	// Shards in any order.
	files[0], files[3] = files[3], files[0]
	code, table, errs := run(t, append([]string{"merge"}, files...)...)
	require.Equal(t, wantCode, code, errs)
	require.Equal(t, wantTable, table)
	code, js, errs := run(t, append([]string{"merge", "-json"}, files...)...)
	require.Equal(t, wantCode, code, errs)
	require.Equal(t, wantJSON, js)

	// A shard missing or given twice is bad input.
	for name, args := range map[string][]string{
		"missing": {"merge", files[0], files[1], files[2]},
		"twice":   {"merge", files[0], files[0], files[1], files[2]},
		"whole":   {"merge", writeFile(t, dir, "whole.json", wantJSON)},
		"garbage": {"merge", writeFile(t, dir, "g.json", "{")},
		"none":    {"merge"},
	} {
		code, _, errs := run(t, args...)
		require.Equal(t, 2, code, name)
		require.Equal(t, 1, strings.Count(errs, "\n"), "%s: %q", name, errs)
		require.True(t, strings.HasPrefix(errs, "badmac: "), errs)
	}
}

// Bad -shard and -workers values are one-line errors.
func TestBadScaleFlags(t *testing.T) {
	for _, args := range [][]string{
		{"run", "-shard", "0/4"}, {"run", "-shard", "5/4"}, {"run", "-shard", "1/0"}, {"run", "-shard", "x"},
		{"run", "-workers", "-1"}, {"shrink", "-workers", "-1", "x.txt"}, {"shrink", "-time", "-1s", "x.txt"},
	} {
		code, _, errs := run(t, args...)
		require.Equal(t, 2, code, args)
		require.Equal(t, 1, strings.Count(errs, "\n"), "%v: %q", args, errs)
		require.True(t, strings.HasPrefix(errs, "badmac: "), errs)
	}
}

func itoa(k int) string { return string(rune('0' + k)) }

func writeFile(t *testing.T, dir, name, text string) string {
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// badmac shrink shows its progress on a terminal (runs, length, the
// reduction under way) and prints the same shrunk schedule either way.
func TestShrinkProgress(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := run(t, "run", "-schedules", "4", "-scenarios", "reply", "-disciplines", "concurrent", "-stores", "mutexed",
		"-must-pass", "concurrent/mutexed", "-shrink", "0", "-out", dir)
	require.Equal(t, 1, code)
	saved := regexp.MustCompile(`replay: badmac replay (\S+)`).FindStringSubmatch(out)[1]
	code, plain, errs := run(t, "shrink", saved, "-budget", "40")
	require.Equal(t, 1, code, errs)
	require.Empty(t, errs)

	old := stderrIsTerminal
	t.Cleanup(func() { stderrIsTerminal = old })
	stderrIsTerminal = func(io.Writer) bool { return true }
	code, tty, errs := run(t, "shrink", saved, "-budget", "40")
	require.Equal(t, 1, code)
	require.Equal(t, plain, tty)
	require.Regexp(t, `shrink \d+→\d+ ops, \d+ contact devices \((contacts|messages|steps|ops)\)`, errs)
}
