package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// selfEnv is what decides how a printed command names this program.
type selfEnv struct {
	override string                          // $BADMAC_SELF: a wrapper's own name (npx badmac-baileys)
	exe      string                          // os.Executable, symlinks resolved
	args0    string                          // os.Args[0]
	cwd      string                          // where the command is printed
	lookPath func(string) (string, error)    // exec.LookPath
	same     func(a, b string) bool          // the same file
	modRoot  func(dir string) (string, bool) // the badmac module's root above dir
}

// selfCommand is how a command printed for the user to run (replay,
// shrink, rerun lines) names badmac, so that it runs from where it was
// printed: "badmac" when that resolves on PATH to this very executable;
// "go run ./cmd/badmac" (relative to the working directory) when this is a
// binary `go run` or `go test` built in a go-build temp dir inside the
// module's checkout; else the path it was started by. A wrapper that runs
// badmac for its user (the Baileys package's `npx badmac-baileys`) sets
// $BADMAC_SELF to its own name, which then comes first.
func selfCommand(e selfEnv) string {
	if e.override != "" {
		return e.override
	}
	if p, err := e.lookPath("badmac"); err == nil && e.same(p, e.exe) {
		return "badmac"
	}
	inGoBuild := false
	for _, el := range strings.Split(filepath.ToSlash(e.exe), "/") {
		inGoBuild = inGoBuild || strings.HasPrefix(el, "go-build")
	}
	if root, ok := e.modRoot(e.cwd); ok && inGoBuild {
		rel, err := filepath.Rel(e.cwd, filepath.Join(root, "cmd", "badmac"))
		if err == nil {
			if !strings.HasPrefix(rel, "..") {
				rel = "./" + filepath.ToSlash(rel)
			}
			return "go run " + strings.TrimSuffix(rel, "/.")
		}
	}
	if strings.ContainsRune(e.args0, filepath.Separator) && e.same(filepath.Join(e.cwd, e.args0), e.exe) || filepath.IsAbs(e.args0) && e.same(e.args0, e.exe) {
		return e.args0
	}
	return e.exe
}

// self is selfCommand for this process; a variable so in-process tests
// read printed lines as "badmac …" (TestMain), while TestSelfCommand and
// TestPrintedReplayRuns cover the detection.
var self = sync.OnceValue(func() string {
	exe, _ := os.Executable()
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	cwd, _ := os.Getwd()
	return selfCommand(selfEnv{override: strings.TrimSpace(os.Getenv("BADMAC_SELF")), exe: exe, args0: os.Args[0], cwd: cwd, lookPath: exec.LookPath, same: sameFile, modRoot: moduleRoot})
})

func sameFile(a, b string) bool {
	x, err1 := os.Stat(a)
	y, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(x, y)
}

// moduleRoot is the directory at or above dir whose go.mod is badmac's.
func moduleRoot(dir string) (string, bool) {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			return d, strings.HasPrefix(string(b), "module github.com/badmac/badmac\n")
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}
