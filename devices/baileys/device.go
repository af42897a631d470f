// Package baileys drives the real Baileys key stores: a Node process
// (adapters/baileys) runs Baileys' own signal repository over its own
// key-store layers at a pinned version, and speaks the device protocol
// (package devproto, docs/device-protocol.md). The fake peers, the server
// and the oracle are the harness's; every store call the adapter makes is a
// gate the schedule steps, so a run is data and replays.
package baileys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/badmac/badmac/devproto"
)

// Versions are the pinned Baileys versions (adapters/baileys/package.json).
var Versions = []string{"6.17.16", "7.0.0-rc14"}

// Variants are the key-store disciplines the adapter runs.
var Variants = []string{
	"stock",   // makeCacheableSignalKeyStore + addTransactionCapability + useMultiFileAuthState, each version's own concurrency
	"seedfix", // the seed's fix: a mutex around each keys.get/keys.set, set followed by saveCreds, no cache
	"locked",  // no cache; every receive and send holds its contact's lock across load→decrypt/encrypt→store
}

func validVariant(v string) bool {
	for _, x := range Variants {
		if x == v {
			return true
		}
	}
	return false
}

// ParseDevice checks a device name, "baileys@VERSION", and returns the version.
func ParseDevice(name string) (string, error) {
	v, ok := strings.CutPrefix(name, "baileys@")
	if ok {
		for _, x := range Versions {
			if x == v {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("unknown device %q (known: baileys@%s)", name, strings.Join(Versions, ", baileys@"))
}

// ErrNotInstalled: the adapter's node_modules are missing.
var ErrNotInstalled = errors.New("Baileys adapter not installed (run: npm ci --ignore-scripts --prefix adapters/baileys)")

// AdapterDir finds adapters/baileys: $BADMAC_BAILEYS_ADAPTER, or the
// directory of that name in the working directory or one of its parents
// (tests run in their package's directory).
func AdapterDir() (string, error) {
	if d := os.Getenv("BADMAC_BAILEYS_ADAPTER"); d != "" {
		return checkAdapter(d)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "adapters", "baileys", "adapter.mjs")); err == nil {
			return checkAdapter(filepath.Join(d, "adapters", "baileys"))
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("adapters/baileys/adapter.mjs not found above %s (set BADMAC_BAILEYS_ADAPTER)", wd)
		}
	}
}

func checkAdapter(d string) (string, error) {
	if _, err := os.Stat(filepath.Join(d, "adapter.mjs")); err != nil {
		return "", fmt.Errorf("Baileys adapter: %w", err)
	}
	for _, m := range []string{"baileys6", "baileys7"} {
		if _, err := os.Stat(filepath.Join(d, "node_modules", m, "package.json")); err != nil {
			return "", fmt.Errorf("%w: %s", ErrNotInstalled, filepath.Join(d, "node_modules", m))
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "", fmt.Errorf("Baileys adapter: node: %w", err)
	}
	return d, nil
}

// Command is the adapter's command line for a Baileys version.
func Command(adapter, version, dir string) []string {
	return []string{"node", filepath.Join(adapter, "adapter.mjs"), "--baileys", version, "--variant", "locked",
		"--dir", dir, "--seed", "0"}
}

// Options are how a Runner starts its device.
type Options struct {
	// Argv overrides the device command (tests use fake adapters); empty:
	// the Baileys adapter for the version.
	Argv []string
	// Timeout bounds every request (0: devproto.DefaultTimeout).
	Timeout time.Duration
	// BaselineVariant is the variant the protocol baseline runs on
	// (empty: locked). Any variant is a valid baseline, since the baseline
	// runs one task at a time; locked is the one without a cache.
	BaselineVariant string
}

// starter starts a device process for version with its state in dir.
func starter(version string, opt Options) (func(ctx context.Context, dir string) (*devproto.Conn, error), error) {
	argv := opt.Argv
	if len(argv) == 0 {
		ad, err := AdapterDir()
		if err != nil {
			return nil, err
		}
		argv = Command(ad, version, "")
	}
	return func(ctx context.Context, dir string) (*devproto.Conn, error) {
		a := append([]string(nil), argv...)
		for i := range a {
			if a[i] == "--dir" && i+1 < len(a) {
				a[i+1] = dir
			}
		}
		return devproto.Start(ctx, a, "", opt.Timeout)
	}, nil
}
