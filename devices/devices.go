// Package devices opens a device under test by name: the in-process model
// (harness.Model), the Baileys adapter (devices/baileys), the device as a
// child process (procs) and the real whatsmeow Client (realclient). Each
// implements harness.Device, so a scenario runs on any of them unchanged and
// the harness's oracle judges them all (docs/design.md §4.1).
package devices

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/badmac/badmac/devices/baileys"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/realclient"
)

// Options are how devices that run another process start it.
type Options struct {
	// Exe is the badmac binary, for devices that run it as a child
	// process (empty: os.Executable).
	Exe string
	// Timeout bounds each answer from a device process (0: its default).
	Timeout time.Duration
}

// Opened is a device and what closing it takes (a process to end, files to
// remove).
type Opened struct {
	harness.Device
	Close func()
	// Stores are the store names (the rows' store column) the device runs
	// on by default, when the user names none.
	Stores []string
	// BaselineDoc names the device's protocol baseline for the reports
	// (reports.Row.Baseline); empty when it is the model's: the same
	// client, one task at a time, on the reference store.
	BaselineDoc string
}

type entry struct {
	// match reports whether name is this kind's.
	match func(name string) bool
	// usage is the name pattern and what it is, for help and errors.
	usage string
	open  func(ctx context.Context, name string, o Options) (*Opened, error)
}

// ClientBaseline is the real whatsmeow Client's protocol baseline
// (realclient.Device.Baseline): the client itself, no model.
const ClientBaseline = "the same real whatsmeow Client, serially (each goroutine to its end before the next op), on the reference store"

// SocketBaseline is Baileys' own socket's protocol baseline
// (baileys.SocketDevice.Baseline).
const SocketBaseline = "the same Baileys version's socket, each task to its end as it starts, on Baileys' own useMultiFileAuthState (no cache)"

// BaileysBaseline is the Baileys adapter's protocol baseline
// (baileys.Device.Baseline).
const BaileysBaseline = "the same Baileys version's locked key store, one task at a time"

// ModelStores are the model's default stores: the in-memory variants, no
// setup needed.
const ModelStores = "reference,uncached,mutexed,cached"

var kinds = []entry{
	{
		match: func(n string) bool { return n == "model" },
		usage: "model (the in-process model of the client: disciplines over any store; the default)",
		open: func(ctx context.Context, name string, o Options) (*Opened, error) {
			return &Opened{Device: nil, Close: func() {}, Stores: strings.Split(ModelStores, ",")}, nil
		},
	},
	{
		match: func(n string) bool { _, ok := realclient.ParseName(n); return ok },
		usage: "client-inline|client-async[+buffer] (the real whatsmeow Client on the loopback fake server, replying from its handler or a goroutine; every mode, controlled replays byte for byte; +buffer: EnableDecryptedEventBuffer, stores sqlite/postgres, mode free)",
		open: func(ctx context.Context, name string, o Options) (*Opened, error) {
			d, _ := realclient.ParseName(name)
			st := []string{"reference", "sqlite"}
			if d.Buffer {
				st = []string{"sqlite"}
			}
			return &Opened{Device: d, Close: func() {}, Stores: st, BaselineDoc: ClientBaseline}, nil
		},
	},
	{
		match: func(n string) bool { return strings.TrimSuffix(n, procs.GatesSuffix) == "procs-writebehind" },
		usage: "procs-writebehind[+gates] (a broken child for comparison: session writes wait in memory for 4 more, so a SIGKILL loses them)",
		open: func(ctx context.Context, name string, o Options) (*Opened, error) {
			d, err := procs.NewDevice(o.Exe)
			if err != nil {
				return nil, err
			}
			d.Timeout, d.WriteBehind, d.Gates = o.Timeout, 4, strings.HasSuffix(name, procs.GatesSuffix)
			return &Opened{Device: d, Close: func() {}, Stores: []string{"sqlite"}}, nil
		},
	},
	{
		match: func(n string) bool { return strings.TrimSuffix(n, procs.GatesSuffix) == "procs" },
		usage: "procs[+gates] (the device as a child process, badmac device, on a fresh sqlite or postgres database per schedule; crash is SIGKILL; +gates: every store call of a request waits for a step, so a crash lands inside requests and two processes overlap)",
		open: func(ctx context.Context, name string, o Options) (*Opened, error) {
			d, err := procs.NewDevice(o.Exe)
			if err != nil {
				return nil, err
			}
			d.Timeout, d.Gates = o.Timeout, strings.HasSuffix(name, procs.GatesSuffix)
			return &Opened{Device: d, Close: func() {}, Stores: []string{"sqlite"}}, nil
		},
	},
	{
		match: func(n string) bool { return strings.HasPrefix(n, baileys.SocketPrefix) },
		usage: baileys.SocketPrefix + "VERSION (Baileys itself: its makeWASocket on an auth state, against the loopback fake server; VERSION " + strings.Join(baileys.Versions, " or ") + ", or installed; stores: " + baileys.MultiFile + " (useMultiFileAuthState), MODULE#FUNCTION (yours, or -auth), each with " + baileys.CacheSuffix + " for makeCacheableSignalKeyStore)",
		open: func(ctx context.Context, name string, o Options) (*Opened, error) {
			v, err := baileys.ParseSocketDevice(name)
			if err != nil {
				return nil, err
			}
			d, err := baileys.OpenSocket(ctx, v, baileys.SocketOptions{Timeout: o.Timeout})
			if err != nil {
				return nil, err
			}
			return &Opened{Device: d, Close: d.Close, Stores: baileys.SocketStores, BaselineDoc: SocketBaseline}, nil
		},
	},
	{
		match: func(n string) bool { return strings.HasPrefix(n, "baileys@") },
		usage: "baileys@VERSION (the Baileys adapter, VERSION " + strings.Join(baileys.Versions, " or ") + "; stores: its key-store variants " + strings.Join(baileys.Variants, ", ") + ")",
		open: func(ctx context.Context, name string, o Options) (*Opened, error) {
			v, err := baileys.ParseDevice(name)
			if err != nil {
				return nil, err
			}
			d, err := baileys.Open(ctx, v, baileys.Options{Timeout: o.Timeout})
			if err != nil {
				return nil, err
			}
			return &Opened{Device: d, Close: d.Close, Stores: baileys.Variants, BaselineDoc: BaileysBaseline}, nil
		},
	},
}

// Usage lists the device names Open knows, one per line.
func Usage() string {
	var b strings.Builder
	for _, k := range kinds {
		b.WriteString("  " + k.usage + "\n")
	}
	return b.String()
}

// Known reports whether Open knows the name (a Baileys version included).
func Known(name string) bool {
	if strings.HasPrefix(name, "baileys@") {
		_, err := baileys.ParseDevice(name)
		return err == nil
	}
	for _, k := range kinds {
		if k.match(name) {
			return true
		}
	}
	return false
}

// Open opens the device named name. The model opens as a nil Device: a
// scenarios.Pair with no Device runs the model over the pair's store.
func Open(ctx context.Context, name string, o Options) (*Opened, error) {
	for _, k := range kinds {
		if k.match(name) {
			d, err := k.open(ctx, name, o)
			if err != nil {
				return nil, fmt.Errorf("device %s: %w", name, err)
			}
			return d, nil
		}
	}
	var names []string
	for _, k := range kinds {
		names = append(names, strings.SplitN(k.usage, " ", 2)[0])
	}
	return nil, fmt.Errorf("unknown device %q (known: %s)", name, strings.Join(names, ", "))
}
