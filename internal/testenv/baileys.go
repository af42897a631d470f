package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// CacheEnv overrides the directory the helpers cache downloads in (default
// os.UserCacheDir()/badmac).
const CacheEnv = "BADMAC_CACHE_DIR"

// baileysModules are the packages the Baileys devices load
// (devices/baileys.checkAdapter): present means installed.
var baileysModules = []string{"baileys6", "baileys7"}

// farmMark, in a node_modules this package made, names the cache entry its
// links point into.
const farmMark = ".badmac-cache"

var baileys struct {
	once sync.Once
	dir  string
	err  error
}

// Baileys returns the checkout's adapters/baileys with its pinned npm
// packages installed. When adapters/baileys/node_modules is missing and
// npm is on the PATH, it runs `npm ci --ignore-scripts --no-audit
// --no-fund` once into a cache directory keyed by the hash of
// package.json and package-lock.json ($BADMAC_CACHE_DIR, default
// os.UserCacheDir()/badmac), under a file lock so test binaries running
// at once install it once, and fills adapters/baileys/node_modules with
// links into it. Node resolves a linked package by its real path, so the
// packages find each other in the cache; `npm ci` in the adapter later
// removes the links, never the cache. The error wraps ErrMissing when
// npm is missing or the install fails (no network).
func Baileys() (string, error) {
	baileys.once.Do(func() {
		lock, err := repoFile("adapters", "baileys", "package-lock.json")
		if err != nil {
			baileys.err = err
			return
		}
		root, err := cacheDir()
		if err != nil {
			baileys.err = err
			return
		}
		baileys.dir = filepath.Dir(lock)
		baileys.err = installBaileys(baileys.dir, root, "npm")
	})
	return baileys.dir, baileys.err
}

// NeedBaileys is Baileys for a test: what cannot be installed is Missing
// (a skip, a failure under CI=true), any other error fails the test.
func NeedBaileys(t testing.TB) string {
	t.Helper()
	dir, err := Baileys()
	need(t, err)
	return dir
}

func cacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "badmac"), nil
	}
	return filepath.Join(os.TempDir(), "badmac-cache"), nil
}

// installed reports whether dir/node_modules holds every Baileys version.
func installed(modules string) bool {
	for _, m := range baileysModules {
		if _, err := os.Stat(filepath.Join(modules, m, "package.json")); err != nil {
			return false
		}
	}
	return true
}

// installBaileys makes adapter/node_modules complete, installing with npm
// (a name on the PATH or a path) into an entry of the cache root if needed.
func installBaileys(adapter, root, npm string) error {
	modules := filepath.Join(adapter, "node_modules")
	key, err := lockKey(adapter)
	if err != nil {
		return err
	}
	entry := filepath.Join(root, "npm-baileys-"+key)
	ours := farmOf(modules)
	if installed(modules) && (ours == "" || ours == entry) {
		return nil // npm's own install, or our links to the current lock
	}
	if _, err := os.Lstat(modules); err == nil && ours == "" {
		return fmt.Errorf("%w: %s is incomplete: run npm ci --ignore-scripts --no-audit --no-fund --prefix %s", ErrMissing, modules, adapter)
	}
	if _, err := exec.LookPath(npm); err != nil {
		return fmt.Errorf("%w: npm is not on the PATH (install Node 20 and npm) to install the Baileys adapter's packages", ErrMissing)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(entry + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	if installed(modules) && farmOf(modules) == entry {
		return nil // another test binary of this checkout linked it meanwhile
	}
	if !installed(filepath.Join(entry, "node_modules")) {
		if err := npmCI(adapter, entry, npm); err != nil {
			return err
		}
	}
	return linkFarm(modules, entry)
}

// lockKey hashes what `npm ci` installs from.
func lockKey(adapter string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(adapter, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// lockFile holds an exclusive flock on path until the returned func runs;
// the kernel drops it if the process dies.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// npmCI installs into entry: in a fresh directory beside it, then renamed,
// so an entry is complete or absent.
func npmCI(adapter, entry, npm string) error {
	tmp := entry + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(adapter, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			return err
		}
	}
	cmd := exec.Command(npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = tmp
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("%w: npm ci for the Baileys adapter failed (no network?): %v: %s", ErrMissing, err, strings.ReplaceAll(tail(out.Bytes(), 5), "\n", " | "))
	}
	if !installed(filepath.Join(tmp, "node_modules")) {
		return fmt.Errorf("testenv: npm ci in %s installed no %s", tmp, strings.Join(baileysModules, ", "))
	}
	if err := os.RemoveAll(entry); err != nil {
		return err
	}
	return os.Rename(tmp, entry)
}

// linkFarm makes modules a directory of links, one per entry of the cache
// entry's node_modules, built aside and renamed into place.
func linkFarm(modules, entry string) error {
	src := filepath.Join(entry, "node_modules")
	names, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", modules, os.Getpid())
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("%w: cannot write the Baileys adapter's node_modules: %v", ErrMissing, err)
	}
	for _, n := range names {
		if n.Name() == ".package-lock.json" { // npm's record of a real install; these are links
			continue
		}
		if err := os.Symlink(filepath.Join(src, n.Name()), filepath.Join(tmp, n.Name())); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, farmMark), []byte(entry+"\n"), 0o644); err != nil {
		return err
	}
	// Another binary may have put links in place meanwhile (under another
	// cache root), or they point at an old lock: ours to replace.
	if err := os.RemoveAll(modules); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(tmp, modules)
}

// farmOf is the cache entry a node_modules of links points into, or ""
// when it is not one this package made.
func farmOf(modules string) string {
	b, err := os.ReadFile(filepath.Join(modules, farmMark))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
