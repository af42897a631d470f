package baileys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/badmac/badmac/internal/testenv"
)

// A bot author's project, as a user has it: a separate Node project in a
// temporary directory with the npm package (packed from adapters/baileys
// as npm would publish it) and Baileys installed, its own auth state in
// src/, and node:test files calling checkAuthState. The correct store's
// test passes; the stale cache's fails with the diagnosis and a replay
// line, and that line, run verbatim from the project, fails again.
func TestCheckAuthStateFromNodeProject(t *testing.T) {
	testenv.NeedLong(t, "checkAuthState from a separate Node project: npm pack, node --test, two badmac runs and a replay")
	openSocket(t, "7.0.0-rc14") // skips when the adapter is not installed
	for _, tool := range []string{"node", "npm", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" on the PATH")
		}
	}
	root := repoRoot(t)
	proj := t.TempDir()
	run := func(dir string, env []string, name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	bin := filepath.Join(proj, ".bin", "badmac")
	if out, err := run(root, nil, "go", "build", "-o", bin, "./cmd/badmac"); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := run(filepath.Join(root, "adapters", "baileys"), nil, "npm", "pack", "--pack-destination", proj, "--silent"); err != nil {
		t.Fatalf("npm pack: %v\n%s", err, out)
	}
	pkg := filepath.Join(proj, "node_modules", "badmac-baileys")
	for _, d := range []string{pkg, filepath.Join(proj, "node_modules", ".bin"), filepath.Join(proj, "src"), filepath.Join(proj, "test")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := run(proj, nil, "tar", "xzf", "badmac-baileys-0.1.0.tgz", "-C", pkg, "--strip-components=1"); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	// Baileys as the bot has it installed (the package's peer), and the
	// package's bin where npm puts it.
	must(t, os.Symlink(filepath.Join(root, "adapters", "baileys", "node_modules", "baileys7"), filepath.Join(proj, "node_modules", "baileys")))
	must(t, os.Symlink("../badmac-baileys/bin/badmac-baileys.mjs", filepath.Join(proj, "node_modules", ".bin", "badmac-baileys")))
	src, err := os.ReadFile(filepath.Join(root, "adapters", "baileys", "examples", "files.mjs"))
	must(t, err)
	files := map[string]string{
		"package.json": `{ "name": "mybot", "private": true, "type": "module", "scripts": { "test": "node --test test/" } }`,
		"src/auth.mjs": string(src),
		"test/good.test.mjs": `import test from 'node:test'
import { checkAuthState } from 'badmac-baileys'
import { useCorrectAuthState } from '../src/auth.mjs'
test('my auth state', { timeout: 900000 }, async () => {
	await checkAuthState(useCorrectAuthState, { dir: 'out-good', scenarios: ['idle'], schedules: 1 })
})
`,
		"test/bad.test.mjs": `import test from 'node:test'
import { checkAuthState } from 'badmac-baileys'
import { useStaleCacheAuthState } from '../src/auth.mjs'
test('my cached auth state', { timeout: 900000 }, async () => {
	await checkAuthState(useStaleCacheAuthState, { dir: 'out-bad', scenarios: ['idle'], schedules: 1 })
})
`,
	}
	for name, body := range files {
		must(t, os.WriteFile(filepath.Join(proj, name), []byte(body), 0o644))
	}
	env := []string{"BADMAC_BIN=" + bin, "BADMAC_BAILEYS_ADAPTER="}
	out, err := run(proj, env, "node", "--test", "test/good.test.mjs")
	if err != nil {
		t.Fatalf("the correct store's test failed: %v\n%s", err, out)
	}
	out, err = run(proj, env, "node", "--test", "test/bad.test.mjs")
	if err == nil {
		t.Fatalf("the stale cache's test passed:\n%s", out)
	}
	for _, want := range []string{"did worse than Baileys' own useMultiFileAuthState", "useStaleCacheAuthState+cache/idle", "messages worse than on Baileys' own store"} {
		if !strings.Contains(out, want) {
			t.Errorf("the failure does not say %q:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`replay: (npx badmac-baileys replay \S+\.txt)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no replay line in the failure:\n%s", out)
	}
	out, err = run(proj, env, "sh", "-c", m[1])
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("%s from the project: %v (want exit 1: the failure again)\n%s", m[1], err, out)
	}
	if !regexp.MustCompile(`store-blamed \(worse than the reference store, same client and schedule\): [mr]\d`).MatchString(out) {
		t.Errorf("the replay does not blame the store:\n%s", out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkAuthState's verdict is badmac's gate (its exit code) plus the
// store's rows, and it fails closed: `npx badmac-baileys check` against a
// fake badmac that prints a given report, stderr and exit code. A gated
// row that failed, a pair badmac skipped or ran no schedule of, a run
// with no verdict: each fails the check; a clean report and torn skipped
// on a store that writes no files pass.
func TestCheckAuthStateVerdict(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Missing(t, "node on the PATH")
	}
	cli := filepath.Join(repoRoot(t), "adapters", "baileys", "bin", "badmac-baileys.mjs")
	fake := filepath.Join(t.TempDir(), "badmac")
	must(t, os.WriteFile(fake, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$FAKE/args\"\ncat \"$FAKE/out\"\ncat \"$FAKE/err\" >&2\nexit $(cat \"$FAKE/code\")\n"), 0o755))
	const store = "/x/auth.mjs:useX"
	scen := []string{"burst", "reply", "reorder", "crash", "restart", "torn", "idle"}
	type row map[string]any
	rows := func(edit func(st, sc string, r row) bool) []row {
		var out []row
		for _, st := range []string{store, store + CacheSuffix} {
			for _, sc := range scen {
				r := row{"discipline": "baileys-socket@7.0.0-rc14", "store": st, "scenario": sc, "must_pass": sc == "burst",
					"schedules": 8, "failed_schedules": 0, "messages": 40, "blamed": 0, "store_blamed": 0,
					"regenerated_creds": 0, "lost_prekeys": 0, "store_error": 0}
				if edit == nil || edit(st, sc, r) {
					out = append(out, r)
				}
			}
		}
		return out
	}
	report := func(gate string, rs []row) string {
		b, err := json.Marshal(map[string]any{"format": "badmac report v3", "gate": gate, "pass": gate == "pass", "rows": rs})
		must(t, err)
		return string(b)
	}
	cases := []struct {
		name, out, stderr string
		code, want        int
	}{
		{"clean", report("pass", rows(nil)), "", 0, 0},
		{"torn skipped on a store that writes no files", report("pass", rows(func(_, sc string, _ row) bool { return sc != "torn" })),
			"skipped: baileys-socket@7.0.0-rc14/" + store + "/torn: device baileys-socket@7.0.0-rc14 cannot run scenario torn on store " + store + " (it writes no files: nothing to tear)\n" +
				"skipped: baileys-socket@7.0.0-rc14/" + store + "+cache/torn: device baileys-socket@7.0.0-rc14 cannot run scenario torn on store " + store + "+cache (it writes no files: nothing to tear)\n", 0, 0},
		{"a gated row failed, store-blamed 0", report("fail", rows(func(_, sc string, r row) bool {
			if sc == "burst" {
				r["blamed"], r["failed_schedules"] = 2, 1
			}
			return true
		})), "", 1, 1},
		{"store blamed in an ungated row", report("pass", rows(func(_, sc string, r row) bool {
			if sc == "crash" {
				r["store_blamed"] = 1
			}
			return true
		})), "", 0, 1},
		{"a pair skipped", report("pass", rows(func(st, sc string, _ row) bool { return st != store || sc != "reorder" })),
			"skipped: baileys-socket@7.0.0-rc14/" + store + "/reorder: device baileys-socket@7.0.0-rc14 cannot run something\n", 0, 2},
		{"a row ran no schedule", report("pass", rows(func(_, sc string, r row) bool {
			if sc == "idle" {
				r["schedules"] = 0
			}
			return true
		})), "", 0, 2},
		{"no rows", report("not gated", nil), "", 0, 2},
		{"badmac exit 2", "", "badmac: device baileys-socket@installed: cannot load Baileys\n", 2, 2},
		{"not a report", "FAIL\n", "", 0, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			must(t, os.WriteFile(filepath.Join(dir, "out"), []byte(c.out), 0o644))
			must(t, os.WriteFile(filepath.Join(dir, "err"), []byte(c.stderr), 0o644))
			must(t, os.WriteFile(filepath.Join(dir, "code"), []byte(fmt.Sprint(c.code)), 0o644))
			cmd := exec.Command("node", cli, "check", "/x/auth.mjs#useX", "-dir", filepath.Join(dir, "o"))
			cmd.Env = append(os.Environ(), "BADMAC_BIN="+fake, "FAKE="+dir)
			out, err := cmd.CombinedOutput()
			got := 0
			if ee, ok := err.(*exec.ExitError); ok {
				got = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("exit %d, want %d:\n%s", got, c.want, out)
			}
			args, err := os.ReadFile(filepath.Join(dir, "args"))
			must(t, err)
			if strings.Contains(string(args), "-must-pass\nnone") {
				t.Errorf("burst asked, but badmac ran without its gate:\n%s", args)
			}
		})
	}
}
