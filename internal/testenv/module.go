package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// UserModule lays out a module of a user's own outside this repository,
// as a user of storetest or devprototest has one: the files of src (a
// testdata directory of the calling test's package) copied into a
// temporary directory, named path, requiring badmac replaced by this
// checkout, with this checkout's go.sum (so the build needs no network
// beyond the module cache). It returns the module's directory, the go
// command and an environment for `go test` there (GOFLAGS=-mod=mod).
func UserModule(t testing.TB, src, path string) (dir, goBin string, env []string) {
	t.Helper()
	root, err := repoFile()
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	gomod := "module " + path + "\n\ngo 1.26\n\nrequire github.com/badmac/badmac v0.0.0\n\nreplace github.com/badmac/badmac => " + root + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	if goBin, err = exec.LookPath("go"); err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	return dir, goBin, append(os.Environ(), "GOFLAGS=-mod=mod")
}
