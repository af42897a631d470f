package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
)

var rewrite = flag.Bool("rewrite", false, "TestRegressions: rewrite each regression file's expected part (from its \"history\" line) with what the replay printed")

// regressionsDir is where a new regression goes: a failure file copied
// from a run's -out directory, its expected part written by -rewrite.
const regressionsDir = "cmd/badmac/testdata/regressions"

// Regressions as data (docs/regressions.md): every schedule file in a
// testdata directory of the repository that carries an expected replay (a
// "history" line after its ops, then what `badmac replay` printed from
// there on) is replayed from the repository root, as a user would, and
// must print the same, byte for byte; files in regressionsDir must carry
// one. The exit code is the printed verdict's: 1 exactly when the output
// ends in a FAIL line. -rewrite writes what the replay printed instead
// (go test ./cmd/badmac -run TestRegressions -rewrite).
func TestRegressions(t *testing.T) {
	root, ok := moduleRoot(mustGetwd(t))
	require.True(t, ok, "not inside the badmac module")
	files := regressionFiles(t, root)
	require.NotEmpty(t, files)
	t.Chdir(root)
	for _, rel := range files {
		t.Run(rel, func(t *testing.T) {
			text, err := os.ReadFile(rel)
			require.NoError(t, err)
			s, err := harness.Parse(strings.NewReader(string(text)))
			require.NoError(t, err)
			if strings.HasPrefix(s.Device, "baileys") {
				// Node replays take seconds each (the socket's, 5-15 s):
				// by default devices/baileys replays these files itself
				// (TestKnownDefects, the socket tests) and checks what
				// they show; byte for byte here under BADMAC_LONG, which
				// CI runs.
				testenv.NeedLong(t, "a Baileys device's replay, byte for byte")
				testenv.NeedBaileys(t)
			}
			if strings.Contains(s.Store, "postgres") || strings.Contains(s.Device, "postgres") {
				testenv.PostgresDSN(t)
			}
			sched, got, err := replayRegression(t, rel, *rewrite)
			require.NoError(t, err)
			if *rewrite {
				require.NoError(t, os.WriteFile(rel, []byte(sched+got), 0o644))
			}
		})
	}
}

// replayRegression replays the regression file at path and returns its
// schedule part and what the replay printed from "history" on; the error
// says how that differs from the file's expected part (unless rewriting),
// or why the file is no regression.
func replayRegression(t *testing.T, path string, rewriting bool) (sched, got string, err error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	sched, want, ok := splitExpected(string(text))
	if !ok && !rewriting {
		return "", "", fmt.Errorf("%s carries no expected replay (a \"history\" line after its ops); write it with: go test ./cmd/badmac -run TestRegressions -rewrite", path)
	}
	code, out, errs := run(t, "replay", path)
	if code == 2 {
		return "", "", fmt.Errorf("badmac replay %s: exit 2: %s", path, errs)
	}
	if strings.HasPrefix(out, "# device") {
		return "", "", fmt.Errorf("%s: a regression must replay controlled, byte for byte:\n%s", path, out)
	}
	_, got, ok = splitExpected(out)
	if !ok {
		return "", "", fmt.Errorf("%s: the replay printed no history:\n%s", path, out)
	}
	if failed := regexp.MustCompile(`(?m)^FAIL: `).MatchString(got); failed != (code == 1) {
		return "", "", fmt.Errorf("%s: exit %d against the printed verdict:\n%s", path, code, got)
	}
	if !rewriting && got != want {
		return "", "", fmt.Errorf("%s replays differently; if the change is meant, rewrite it: go test ./cmd/badmac -run TestRegressions -rewrite\n%s", path, "first difference in the expected part, "+testenv.FirstDiff(strings.Split(want, "\n"), strings.Split(got, "\n")))
	}
	return sched, got, nil
}

// Both ways: a regression file replays clean as saved, and fails when its
// expected part says one thing the replay does not (an outcome changed, a
// line dropped), or when it carries no expected part at all.
func TestRegressionCatchesChange(t *testing.T) {
	text, err := os.ReadFile("testdata/regressions/concurrent-mutexed-reply.txt")
	require.NoError(t, err)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	_, _, err = replayRegression(t, write("same.txt", string(text)), false)
	require.NoError(t, err)

	changed := regexp.MustCompile(`(?m)^outcome (\S+) (in|out) delivered$`).ReplaceAllString(string(text), "outcome $1 $2 lost")
	require.NotEqual(t, string(text), changed)
	_, _, err = replayRegression(t, write("changed.txt", changed), false)
	require.ErrorContains(t, err, "replays differently")

	sched, _, ok := splitExpected(string(text))
	require.True(t, ok)
	_, _, err = replayRegression(t, write("bare.txt", sched), false)
	require.ErrorContains(t, err, "carries no expected replay")
	_, got, err := replayRegression(t, write("bare.txt", sched), true)
	require.NoError(t, err)
	require.Equal(t, string(text), sched+got)
}

// splitExpected cuts a schedule file at its "history" line: the schedule
// (with its comments, as written) and the expected part, that line on.
func splitExpected(text string) (sched, expected string, ok bool) {
	inOps := false
	off := 0
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		bare := strings.TrimSpace(line)
		if i := strings.IndexByte(bare, '#'); i >= 0 {
			bare = strings.TrimSpace(bare[:i])
		}
		if inOps && bare == "history" {
			return text[:off], text[off:], true
		}
		inOps = inOps || bare == "ops"
		off += len(line) + 1
	}
	return text, "", false
}

// regressionFiles are the repository's schedule files with an expected
// replay, and every file in regressionsDir, relative to root.
func regressionFiles(t *testing.T, root string) []string {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".txt") || !strings.Contains(filepath.ToSlash(path), "/testdata/") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(b, []byte(harness.Version+"\n")) {
			return nil
		}
		if _, _, ok := splitExpected(string(b)); ok || strings.HasPrefix(filepath.ToSlash(rel), regressionsDir+"/") {
			files = append(files, rel)
		}
		return nil
	})
	require.NoError(t, err)
	return files
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	require.NoError(t, err)
	return wd
}
