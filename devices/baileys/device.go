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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
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
	// Variants are the store names Check accepts when Argv names another
	// device (nil: any, the device refuses what it lacks at reset).
	Variants []string
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

// Device is a Baileys version's adapter as a harness.Device: the harness's
// scenarios run on it unchanged and the harness's oracle judges it. A
// schedule's store is the adapter's key-store variant (Variants); its
// discipline is not used (the variant is the client's discipline). A step
// or run op names a task (its delivery id or reply id, as the model names
// tasks); the device steps the gate that task is parked at. Its schedules
// are deterministic: one replays byte for byte (docs/design.md §4.1).
//
// One device process runs one schedule at a time: Exec and Baseline take
// turns on a mutex.
type Device struct {
	mu       sync.Mutex
	rn       *Runner
	name     string
	variants []string
}

// Open starts the adapter for a Baileys version ("6.17.16"); with
// opt.Argv, the device that command starts (its hello names it).
func Open(ctx context.Context, version string, opt Options) (*Device, error) {
	rn, err := NewRunner(ctx, version, opt)
	if err != nil {
		return nil, err
	}
	d := &Device{rn: rn, name: rn.Device(), variants: opt.Variants}
	if version != "" {
		d.name = "baileys@" + version
	}
	if len(opt.Argv) == 0 {
		d.variants = Variants
	}
	return d, nil
}

// Close ends the device process.
func (d *Device) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rn.Close()
}

// Name is "baileys@VERSION".
func (d *Device) Name() string { return d.name }

// Check refuses what the adapter lacks: free mode (its tasks wait at gates
// for the harness), group messages (skmsg), a second instance, the crash
// kinds other than a crash (kill or torn creds save) and a clean stop,
// and a contact's reinstall or rekey.
func (d *Device) Check(setup *harness.Schedule, mode harness.Mode) error {
	no := func(what string) error { return fmt.Errorf("device %s cannot run %s", d.name, what) }
	switch {
	case setup.Device != "" && setup.Device != d.name:
		return fmt.Errorf("device %s cannot run a schedule for device %s", d.name, setup.Device)
	case mode != harness.Controlled:
		return no(fmt.Sprintf("mode %s (its store calls wait at gates for the harness: controlled only)", mode))
	case d.variants != nil && !slices.Contains(d.variants, setup.Store):
		return no(fmt.Sprintf("store %q (its key-store variants: %s)", setup.Store, strings.Join(d.variants, ", ")))
	case setup.Group != "":
		return no("group messages (no sender keys in the adapter)")
	case setup.Instances > 1:
		return no(fmt.Sprintf("%d instances (one device process per schedule)", setup.Instances))
	}
	if sc, err := scenarios.Lookup(setup.Scenario); err == nil {
		switch {
		case sc.Group:
			return no(fmt.Sprintf("scenario %s (group messages: no sender keys in the adapter)", sc.Name))
		case sc.Instances > 1:
			return no(fmt.Sprintf("scenario %s (%d instances: one device process per schedule)", sc.Name, sc.Instances))
		case sc.Crash == scenarios.CrashRollback:
			return no(fmt.Sprintf("scenario %s (op snapshot/rollback: no backup of the adapter's folder)", sc.Name))
		case sc.Crash == scenarios.CrashReinstall || sc.Crash == scenarios.CrashRekey:
			return no(fmt.Sprintf("scenario %s (op %s: the contact's reinstall is not wired to the adapter)", sc.Name, sc.Crash))
		case sc.Crash == scenarios.CrashIdle:
			return no(fmt.Sprintf("scenario %s (op wait: the adapter's clock moves one millisecond a call; %s%s has the virtual clock)", sc.Name, SocketPrefix, strings.TrimPrefix(d.name, "baileys@")))
		}
	}
	if err := adapterOps.Refuse(d.name, setup.Ops, nil); err != nil {
		return err
	}
	for _, op := range setup.Ops {
		if inst := harness.Inst(op); inst != 0 {
			return no(fmt.Sprintf("op %q (instance %d: one device process per schedule)", op, inst))
		}
	}
	return nil
}

// Exec runs setup on the adapter with ops from src, then the drain.
func (d *Device) Exec(ctx context.Context, setup *harness.Schedule, mode harness.Mode, src harness.Source) (*harness.Schedule, *harness.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := setup.Clone()
	s.Device = d.name
	return d.rn.exec(ctx, s, false, src)
}

// Baseline is the explicit schedule with every task run to its end as it
// starts, on the same version's locked variant: one lock per contact
// around each whole receive and send, no cache (any variant would do, one
// task at a time; locked is the one without a cache).
func (d *Device) Baseline(ctx context.Context, s *harness.Schedule) (*harness.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, res, err := d.rn.exec(ctx, s, true, nil)
	return res, err
}
