package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/internal/testenv"
)

// How printed commands name badmac, each way: on PATH (the same file, or
// another badmac), in a go-build dir inside the checkout (at its root, in
// a subdirectory), a binary started by a path, a wrapper's $BADMAC_SELF.
func TestSelfCommand(t *testing.T) {
	files := map[string]string{"/usr/bin/badmac": "A", "/home/u/bin/badmac": "B", "/tmp/go-build123/b001/exe/badmac": "C",
		"/src/badmac/badmac": "B"}
	env := func(exe, args0, cwd, onPath string) selfEnv {
		return selfEnv{exe: exe, args0: args0, cwd: cwd,
			lookPath: func(string) (string, error) {
				if onPath == "" {
					return "", errors.New("not found")
				}
				return onPath, nil
			},
			same: func(a, b string) bool {
				return files[filepath.Clean(a)] != "" && files[filepath.Clean(a)] == files[filepath.Clean(b)]
			},
			modRoot: func(d string) (string, bool) { return "/src/badmac", len(d) >= 11 && d[:11] == "/src/badmac" },
		}
	}
	for _, c := range []struct {
		name string
		e    selfEnv
		want string
	}{
		{"on PATH", env("/home/u/bin/badmac", "badmac", "/x", "/home/u/bin/badmac"), "badmac"},
		{"go run at the root", env("/tmp/go-build123/b001/exe/badmac", "/tmp/go-build123/b001/exe/badmac", "/src/badmac", ""), "go run ./cmd/badmac"},
		{"go run in a subdirectory", env("/tmp/go-build123/b001/exe/badmac", "/tmp/go-build123/b001/exe/badmac", "/src/badmac/docs", ""), "go run ../cmd/badmac"},
		{"go run, another badmac on PATH", env("/tmp/go-build123/b001/exe/badmac", "/tmp/go-build123/b001/exe/badmac", "/src/badmac", "/usr/bin/badmac"), "go run ./cmd/badmac"},
		{"./badmac, another on PATH", env("/src/badmac/badmac", "./badmac", "/src/badmac", "/usr/bin/badmac"), "./badmac"},
		{"by absolute path", env("/home/u/bin/badmac", "/home/u/bin/badmac", "/x", ""), "/home/u/bin/badmac"},
		{"a wrapper names itself", func() selfEnv {
			e := env("/usr/bin/badmac", "badmac", "/x", "/usr/bin/badmac")
			e.override = "npx badmac-baileys"
			return e
		}(), "npx badmac-baileys"},
	} {
		require.Equal(t, c.want, selfCommand(c.e), c.name)
	}
}

// A replay line printed by badmac run runs verbatim from where it was
// printed: with badmac on PATH (this test binary doubles as badmac), and
// (BADMAC_LONG: it builds the binary) from the repository root under go run.
func TestPrintedReplayRuns(t *testing.T) {
	runLine := []string{"run", "-schedules", "2", "-scenarios", "reply", "-disciplines", "concurrent", "-stores", "reference", "-must-pass", "none", "-shrink", "0"}
	replay := regexp.MustCompile(`(?m)^    replay: (.*)$`)
	check := func(t *testing.T, dir, want string, env []string, argv ...string) {
		cmd := exec.Command("sh", append([]string{"-c", `"$@"`, "sh"}, append(argv, append(runLine, "-out", t.TempDir())...)...)...) // found on env's PATH
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.Output()
		require.NoError(t, err, "%s", out)
		m := replay.FindStringSubmatch(string(out))
		require.NotNil(t, m, "%s", out)
		require.Regexp(t, "^"+regexp.QuoteMeta(want)+" replay ", m[1])
		sh := exec.Command("sh", "-c", m[1])
		sh.Dir, sh.Env = dir, env
		rout, err := sh.CombinedOutput()
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee) && ee.ExitCode() == 1, "%s: %v\n%s", m[1], err, rout)
		require.Contains(t, string(rout), "FAIL: ")
	}
	t.Run("on PATH", func(t *testing.T) {
		bin := t.TempDir()
		exe, err := os.Executable()
		require.NoError(t, err)
		require.NoError(t, os.Symlink(exe, filepath.Join(bin, "badmac")))
		env := append(os.Environ(), "BADMAC_CMD_CHILD=1", "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		check(t, t.TempDir(), "badmac", env, "badmac")
	})
	t.Run("go run", func(t *testing.T) {
		testenv.NeedLong(t, "go run ./cmd/badmac from the repository root (builds the binary)")
		root, err := filepath.Abs(filepath.Join("..", ".."))
		require.NoError(t, err)
		check(t, root, "go run ./cmd/badmac", os.Environ(), "go", "run", "./cmd/badmac")
	})
}
