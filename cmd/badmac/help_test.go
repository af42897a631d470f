package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/devices"
	"github.com/badmac/badmac/devices/baileys"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// badmac -h lists every subcommand and exits 0; so does every
// subcommand's -h, with its own usage line.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, out, errs := run(t, args...)
		require.Equal(t, 0, code, errs)
		require.Contains(t, out, "  badmac [run]", "%v", args)
		require.Contains(t, out, "  badmac help", "%v", args)
		for c := range synopsis {
			require.Contains(t, out, "  badmac "+c, "%v: the usage must list every subcommand", args)
		}
	}
	require.Len(t, synopsis, 8, "a subcommand without a synopsis has no -h")
	for c := range synopsis {
		code, out, errs := run(t, c, "-h")
		require.Equal(t, 0, code, "%s -h: %s", c, errs)
		require.Contains(t, out, "usage: badmac ", c)
		require.Empty(t, errs, c)
		code, out2, _ := run(t, "help", c)
		require.Equal(t, 0, code)
		require.Equal(t, out, out2, "badmac help %s is %s -h", c, c)
	}
}

// badmac list and run -h name every store, scenario and discipline.
func TestListNamesEverything(t *testing.T) {
	for _, args := range [][]string{{"list"}, {"run", "-h"}} {
		code, out, _ := run(t, args...)
		require.Equal(t, 0, code)
		for _, v := range stores.Variants() {
			require.Regexp(t, `(?m)^  `+v.Name+` +\S`, out, "%v: store %s", args, v.Name)
		}
		for _, sc := range scenarios.All() {
			require.Regexp(t, `(?m)^  `+sc.Name+` +\S`, out, "%v: scenario %s", args, sc.Name)
		}
		for _, d := range harness.Disciplines {
			require.Regexp(t, `(?m)^  `+string(d)+` +\S`, out, "%v: discipline %s", args, d)
		}
	}
}

// Negative counts are refused with one line and exit 2.
func TestNegativeNumbersRefused(t *testing.T) {
	for _, args := range [][]string{
		{"run", "-shrink", "-5"}, {"run", "-schedules", "-1"}, {"shrink", "-budget", "-3", "x.txt"},
		{"bench", "-rounds", "-1"}, {"procs", "-seeds", "-2"},
	} {
		code, out, errs := run(t, args...)
		require.Equal(t, 2, code, "%v", args)
		require.Empty(t, out)
		require.Regexp(t, `^badmac: -\w+ must not be negative, got -\d+\n$`, errs, "%v", args)
	}
}

// A schedule storetest recorded against a user's store replays here on the
// reference store; shrink explains where it can be shrunk.
func TestStoretestScheduleAccepted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.txt")
	text := "badmac schedule v1\n# replay: BADMAC_REPLAY=" + "s.txt go test -run '^TestX$' example.com/m\nseed 3\nscenario reply\ndiscipline locked\nstore yours\ncontacts alice:1\nops\nsend alice.0 m1\ndeliver m1\nrun m1\n"
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	code, out, errs := run(t, "replay", path)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "replaying it on the reference store")
	require.Contains(t, out, "example.com/m")
	require.Contains(t, out, "PASS")
	code, _, errs = run(t, "shrink", path)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "BADMAC_SHRINK_BUDGET=1000 BADMAC_REPLAY=s.txt go test")
	require.Equal(t, 1, strings.Count(errs, "\n"))
}

// Every command docs/troubleshooting.md prints runs as printed: not bad
// input (exit 2), and not gated, so exit 0 (they reproduce failures on
// purpose). The page once printed commands the gate refused.
func TestTroubleshootingCommandsRun(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "troubleshooting.md"))
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		cmd, ok := strings.CutPrefix(line, "badmac ")
		if !ok {
			continue
		}
		n++
		args := append(strings.Fields(cmd), "-out", t.TempDir())
		code, _, errs := run(t, args...)
		require.Equal(t, 0, code, "%s: %s", line, errs)
	}
	require.Positive(t, n, "no command found")
}

// An unknown help topic is bad input: one line, exit 2 (it printed the
// general help and exited 0); known topics still print their help.
func TestHelpUnknownTopic(t *testing.T) {
	for _, args := range [][]string{{"help", "nosuch"}, {"help", "run", "extra"}} {
		code, out, errs := run(t, args...)
		require.Equal(t, 2, code, "%v", args)
		require.Empty(t, out, "%v", args)
		require.Regexp(t, `^badmac: unknown help topic "[^"]+" \(topics: run, .*\)\n$`, errs, "%v", args)
	}
	for _, args := range [][]string{{"help"}, {"help", "help"}, {"help", "client"}} {
		code, out, errs := run(t, args...)
		require.Equal(t, 0, code, "%v: %s", args, errs)
		require.Contains(t, out, "badmac ", "%v", args)
	}
}

// Every flag a command's help lists is one its parser takes: the flag
// lines (from the FlagSet), the "(-NAME)" list headings and the flags in
// its usage lines. Each is parsed as -NAME=0 (valid for every flag type)
// before -h, so nothing runs: an undefined flag is exit 2, "flag provided
// but not defined" (client -h once listed -scenarios).
func TestHelpFlagsParse(t *testing.T) {
	lineFlag := regexp.MustCompile(`(?m)^  -([\w-]+)`)
	heading := regexp.MustCompile(`\(-([\w-]+)\)`)
	usageFlag := regexp.MustCompile(`\[?-([a-z][\w-]*)`)
	_, general, _ := run(t, "-h")
	for c := range synopsis {
		_, out, _ := run(t, c, "-h")
		flags := map[string]bool{}
		for _, re := range []*regexp.Regexp{lineFlag, heading} {
			for _, m := range re.FindAllStringSubmatch(out, -1) {
				flags[m[1]] = true
			}
		}
		first, _, _ := strings.Cut(out, "\n")
		for _, m := range usageFlag.FindAllStringSubmatch(first, -1) {
			flags[m[1]] = true
		}
		// The general usage's lines for this command (before the
		// description column).
		for _, line := range strings.Split(general, "\n") {
			if cmd, ok := strings.CutPrefix(strings.TrimSpace(line), "badmac "+c+" "); ok {
				cmd, _, _ = strings.Cut(cmd, "   ")
				for _, m := range usageFlag.FindAllStringSubmatch(cmd, -1) {
					flags[m[1]] = true
				}
			}
		}
		for f := range flags {
			code, _, errs := run(t, c, "-"+f+"=0", "-h")
			require.Equal(t, 0, code, "badmac %s -h lists -%s: %s", c, f, errs)
		}
	}
}

// badmac list names every device devices.Usage knows (each VERSION, each
// client mode with and without +buffer, procs with and without +gates)
// with its default stores, and the
// Baileys adapter's key-store variants.
func TestListNamesDevices(t *testing.T) {
	code, out, _ := run(t, "list")
	require.Equal(t, 0, code)
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(devices.Usage()), "\n") {
		pattern := strings.Fields(line)[0]
		for _, alt := range strings.Split(pattern, "|") {
			names := []string{alt}
			for _, opt := range []string{"buffer", "gates"} {
				if base, ok := strings.CutSuffix(alt, "[+"+opt+"]"); ok {
					names = []string{base, base + "+" + opt}
				}
			}
			for _, name := range names {
				for _, v := range baileys.Versions {
					name := strings.ReplaceAll(name, "VERSION", v)
					require.True(t, devices.Known(name), name)
					require.Regexp(t, `(?m)^  `+regexp.QuoteMeta(name)+` +\S`, out, "device %s", name)
					n++
				}
			}
		}
	}
	require.GreaterOrEqual(t, n, 9)
	require.Regexp(t, `(?m)^  client-inline +reference, sqlite$`, out)
	require.Regexp(t, `(?m)^  baileys@6\.17\.16 +`+strings.Join(baileys.Variants, ", "), out)
	require.Regexp(t, `(?m)^  baileys-socket@7\.0\.0-rc14 +`+regexp.QuoteMeta(strings.Join(baileys.SocketStores, ", "))+`$`, out)
}
