package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeNPM is an npm that counts its runs in $FAKE_NPM_COUNT and installs
// both Baileys versions, a scoped package and a .bin; with FAKE_NPM_FAIL=1
// it fails as npm does offline.
const fakeNPM = `#!/bin/sh
echo "$*" >> "$FAKE_NPM_COUNT"
if [ "$FAKE_NPM_FAIL" = 1 ]; then echo "npm error network request failed" >&2; exit 1; fi
sleep 1
for p in baileys6 baileys7 @scope/pkg; do mkdir -p node_modules/$p && echo '{}' > node_modules/$p/package.json; done
mkdir -p node_modules/.bin && ln -s ../baileys7/package.json node_modules/.bin/tool
echo '{}' > node_modules/.package-lock.json
`

// npmEnv is an adapter directory with a lock, an empty cache root and the
// fake npm; runs reports how many times npm ran.
type npmEnv struct {
	adapter, root, npm, count string
}

func newNPMEnv(t *testing.T) *npmEnv {
	t.Helper()
	d := t.TempDir()
	e := &npmEnv{adapter: filepath.Join(d, "adapter"), root: filepath.Join(d, "cache"), npm: filepath.Join(d, "npm"), count: filepath.Join(d, "count")}
	must(t, os.MkdirAll(e.adapter, 0o755))
	must(t, os.WriteFile(filepath.Join(e.adapter, "package.json"), []byte(`{"name":"a"}`), 0o644))
	must(t, os.WriteFile(filepath.Join(e.adapter, "package-lock.json"), []byte(`{"lockfileVersion":3}`), 0o644))
	must(t, os.WriteFile(e.npm, []byte(fakeNPM), 0o755))
	t.Setenv("FAKE_NPM_COUNT", e.count)
	t.Setenv("FAKE_NPM_FAIL", "")
	return e
}

func (e *npmEnv) runs(t *testing.T) int {
	b, err := os.ReadFile(e.count)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	must(t, err)
	return strings.Count(string(b), "\n")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBaileysInstallsOnceIntoTheCache(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		Missing(t, "sh on the PATH")
	}
	e := newNPMEnv(t)
	must(t, installBaileys(e.adapter, e.root, e.npm))
	if n := e.runs(t); n != 1 {
		t.Fatalf("npm ran %d times, want 1", n)
	}
	if b, _ := os.ReadFile(e.count); string(b) != "ci --ignore-scripts --no-audit --no-fund\n" {
		t.Errorf("npm ran with %q", b)
	}
	modules := filepath.Join(e.adapter, "node_modules")
	if !installed(modules) {
		t.Fatal("node_modules incomplete after the install")
	}
	entry := farmOf(modules)
	if !strings.HasPrefix(entry, filepath.Join(e.root, "npm-baileys-")) {
		t.Fatalf("node_modules points at %q, want an entry of %s", entry, e.root)
	}
	for _, n := range []string{"baileys6", "@scope", ".bin"} {
		got, err := filepath.EvalSymlinks(filepath.Join(modules, n))
		must(t, err)
		if got != filepath.Join(entry, "node_modules", n) {
			t.Errorf("%s resolves to %s, want the cache's", n, got)
		}
	}
	if _, err := os.Stat(filepath.Join(modules, ".bin", "tool")); err != nil {
		t.Errorf(".bin's relative links do not resolve: %v", err)
	}

	// Installed: nothing runs again.
	must(t, installBaileys(e.adapter, e.root, e.npm))
	// Another checkout with the same lock links the same entry, no npm.
	other := filepath.Join(t.TempDir(), "adapter")
	must(t, os.CopyFS(other, os.DirFS(e.adapter)))
	must(t, os.RemoveAll(filepath.Join(other, "node_modules")))
	must(t, installBaileys(other, e.root, e.npm))
	if n := e.runs(t); n != 1 {
		t.Fatalf("npm ran %d times for a cached lock, want 1", n)
	}
	if farmOf(filepath.Join(other, "node_modules")) != entry {
		t.Fatalf("the other checkout links %q, want %q", farmOf(filepath.Join(other, "node_modules")), entry)
	}
	// Removing a checkout's links (as npm ci does) leaves the cache whole.
	must(t, os.RemoveAll(filepath.Join(other, "node_modules")))
	if !installed(filepath.Join(entry, "node_modules")) {
		t.Fatal("removing the links emptied the cache")
	}

	// A new lock is a new entry, installed and linked in place of the old.
	must(t, os.WriteFile(filepath.Join(e.adapter, "package-lock.json"), []byte(`{"lockfileVersion":3,"x":1}`), 0o644))
	must(t, installBaileys(e.adapter, e.root, e.npm))
	if n := e.runs(t); n != 2 {
		t.Fatalf("npm ran %d times after the lock changed, want 2", n)
	}
	if got := farmOf(modules); got == entry || !installed(modules) {
		t.Fatalf("after the lock changed node_modules points at %q (old %q)", got, entry)
	}
}

// npm's own install (no links) is left alone, complete or not; npm missing
// or failing is Missing, and a failed install leaves no cache entry.
func TestBaileysLeavesAndMisses(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		Missing(t, "sh on the PATH")
	}
	e := newNPMEnv(t)
	modules := filepath.Join(e.adapter, "node_modules")
	must(t, os.MkdirAll(filepath.Join(modules, "baileys6"), 0o755))
	must(t, os.WriteFile(filepath.Join(modules, "baileys6", "package.json"), []byte("{}"), 0o644))
	if err := installBaileys(e.adapter, e.root, e.npm); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("an incomplete npm install: err = %v, want Missing naming it incomplete", err)
	}
	must(t, os.MkdirAll(filepath.Join(modules, "baileys7"), 0o755))
	must(t, os.WriteFile(filepath.Join(modules, "baileys7", "package.json"), []byte("{}"), 0o644))
	must(t, installBaileys(e.adapter, e.root, e.npm))
	if n := e.runs(t); n != 0 || farmOf(modules) != "" {
		t.Fatalf("a complete npm install was replaced (npm ran %d times)", n)
	}

	must(t, os.RemoveAll(modules))
	if err := installBaileys(e.adapter, e.root, filepath.Join(t.TempDir(), "no-npm")); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "npm is not on the PATH") {
		t.Fatalf("no npm: err = %v", err)
	}
	t.Setenv("FAKE_NPM_FAIL", "1")
	err := installBaileys(e.adapter, e.root, e.npm)
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "network request failed") {
		t.Fatalf("npm offline: err = %v, want Missing with npm's words", err)
	}
	if left, _ := filepath.Glob(filepath.Join(e.root, "npm-baileys-*[^k]")); len(left) != 0 {
		t.Fatalf("a failed install left %v", left)
	}
	if _, err := os.Lstat(modules); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed install left node_modules (%v)", err)
	}
}

// Two test binaries at once on one checkout and an empty cache: npm runs
// once (the file lock), both find the packages installed.
func TestBaileysTwoBinariesAtOnce(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "npm" {
		must(t, installBaileys(os.Getenv("NPM_ADAPTER"), os.Getenv("NPM_ROOT"), os.Getenv("NPM_BIN")))
		if !installed(filepath.Join(os.Getenv("NPM_ADAPTER"), "node_modules")) {
			t.Fatal("not installed after installBaileys")
		}
		return
	}
	if _, err := exec.LookPath("sh"); err != nil {
		Missing(t, "sh on the PATH")
	}
	e := newNPMEnv(t)
	var cmds []*exec.Cmd
	outs := make([]*strings.Builder, 2)
	for i := range outs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBaileysTwoBinariesAtOnce$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=npm", "NPM_ADAPTER="+e.adapter, "NPM_ROOT="+e.root, "NPM_BIN="+e.npm)
		outs[i] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		must(t, cmd.Start())
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("binary %d: %v\n%s", i, err, outs[i])
		}
	}
	if n := e.runs(t); n != 1 {
		t.Fatalf("npm ran %d times for two binaries at once, want 1", n)
	}
}
