package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/badmac/badmac/devices"
	"github.com/badmac/badmac/devices/baileys"
	"github.com/badmac/badmac/devices/godevice"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// deviceDispatch takes the hidden device-protocol command. handled is false
// for anything else: `badmac run -device` and `badmac replay` of a device
// schedule go through run and replay (runDevices, replayDevice).
func deviceDispatch(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) (handled bool, code int, err error) {
	if cmd == "device-v1" { // hidden: the Go device speaking the device protocol on stdin/stdout
		if err := godevice.Serve(ctx, os.Stdin, stdout); err != nil {
			return true, 2, err
		}
		return true, 0, nil
	}
	return false, 0, nil
}

// deviceTimeout bounds each request to a device process; a variable so
// tests of a silent device need not wait a minute.
var deviceTimeout = 60 * time.Second

// deviceShrink is -shrink's default on a run with devices other than the
// model: every candidate is a schedule on a device process, then its
// baseline there.
const deviceShrink = 20

// openDevice opens a device by name (devices.Open); adapter, if set,
// replaces the Baileys adapter's command (tests start fake devices).
func openDevice(ctx context.Context, name string, timeout time.Duration, adapter string) (*devices.Opened, error) {
	if adapter != "" && strings.HasPrefix(name, "baileys@") {
		v, err := baileys.ParseDevice(name)
		if err != nil {
			return nil, badInput("-device: %v", err)
		}
		d, err := baileys.Open(ctx, v, baileys.Options{Argv: strings.Fields(adapter), Timeout: timeout, Variants: baileys.Variants})
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", name, err)
		}
		return &devices.Opened{Device: d, Close: d.Close, Stores: baileys.Variants, BaselineDoc: devices.BaileysBaseline}, nil
	}
	return devices.Open(ctx, name, devices.Options{Timeout: timeout})
}

// row is one planned row of a run: its pair, the table's discipline
// column (the discipline for the model, the device's name otherwise),
// whether it must pass, and the device's protocol baseline when it is not
// the model's.
type row struct {
	pair     scenarios.Pair
	column   string
	must     bool
	baseline string
}

// refusal is a pair a device's Check refused: not a row. named: the user
// asked for it by name (its store, scenario or discipline in a flag), so a
// gate that would hold it cannot pass without it.
type refusal struct {
	column, store, scenario string
	named                   bool
	device                  string
	err                     error
}

func (r refusal) String() string {
	return fmt.Sprintf("%s/%s/%s: %v", r.column, r.store, r.scenario, r.err)
}

// deviceRun is what `badmac run -device` plans from its flags.
type deviceRun struct {
	names       []string
	disciplines []harness.Discipline // given with -disciplines, or the defaults
	discGiven   bool
	stores      []string // given with -stores, else each device's own
	scenarios   []scenarios.Scenario
	scenGiven   bool // -scenarios given
	mode        harness.Mode
	mustPass    string
	mustGiven   bool
	timeout     time.Duration
	adapter     string
}

// planDevices opens the devices and plans the rows: device × discipline ×
// store × scenario for the model, device × store × scenario for the others
// (their discipline is the first the device takes, unless -disciplines
// names them). A pair the device's Check refuses is not a row: it is
// listed on stderr as "skipped: …", and it is bad input when the gate
// would hold it (gateRows). The returned func closes the devices.
func planDevices(ctx context.Context, dr deviceRun, stderr io.Writer) ([]row, func(), error) {
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	var rows []row
	var refused []refusal
	for _, name := range dr.names {
		if name == "model" {
			mrows, mrefused := planModel(dr)
			rows, refused = append(rows, mrows...), append(refused, mrefused...)
			continue
		}
		od, err := openDevice(ctx, name, dr.timeout, dr.adapter)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, od.Close)
		dev := od.Device
		sts := dr.stores
		if sts == nil {
			sts = od.Stores
		}
		discs := []harness.Discipline{harness.Locked, harness.Whatsmeow, harness.Txn, harness.Concurrent}
		if dr.discGiven {
			discs = dr.disciplines
		}
		for _, sc := range dr.scenarios {
			for _, st := range sts {
				st := deviceStoreName(name, st)
				v, err := stores.Lookup(st)
				if err != nil {
					v = stores.Variant{Name: st} // the device's own store name (a Baileys key-store variant)
				}
				var first error
				taken := 0
				for _, d := range discs {
					p := scenarios.Pair{Scenario: sc, Discipline: d, Variant: v, Device: dev}
					setup := sc.Setup(0, d, st)
					setup.Device = dev.Name()
					col := dev.Name()
					if dr.discGiven && len(discs) > 1 {
						col += ":" + string(d)
					}
					if err := dev.Check(setup, dr.mode); err != nil {
						if first == nil {
							first = err
						}
						if dr.discGiven {
							refused = append(refused, refusal{column: col, store: st, scenario: sc.Name, device: dev.Name(), err: err,
								named: dr.stores != nil || dr.scenGiven || dr.discGiven})
						}
						continue
					}
					rows = append(rows, row{pair: p, column: col, baseline: od.BaselineDoc})
					taken++
					if !dr.discGiven {
						break // the first discipline the device takes
					}
				}
				if taken == 0 && !dr.discGiven {
					refused = append(refused, refusal{column: dev.Name(), store: st, scenario: sc.Name, device: dev.Name(), err: first,
						named: dr.stores != nil || dr.scenGiven})
				}
			}
		}
	}
	for _, r := range refused {
		fmt.Fprintf(stderr, "skipped: %s\n", r)
	}
	if len(rows) == 0 {
		// Bad input is one line: the first refusal stands for all.
		closeAll()
		if len(refused) == 0 {
			return nil, nil, badInput("nothing to run")
		}
		return nil, nil, badInput("nothing to run: every pair was skipped (%d), first %s", len(refused), refused[0])
	}
	if err := gateRows(rows, refused, dr); err != nil {
		closeAll()
		return nil, nil, err
	}
	return rows, closeAll, nil
}

// deviceStoreName is a -stores entry as the device's rows and schedule
// files name it: a socket device's MODULE#FUNCTION is MODULE:FUNCTION, as
// -auth writes it (a schedule file reads # as a comment, so a replay line
// printed for MODULE#FUNCTION would not replay).
func deviceStoreName(device, st string) string {
	if a, err := baileys.ParseStore(st); err == nil && strings.HasPrefix(device, baileys.SocketPrefix) {
		return a.StoreName()
	}
	return st
}

// planModel is the model's rows in a device run: -stores the model knows
// (its defaults when none are given), the others refused.
func planModel(dr deviceRun) ([]row, []refusal) {
	sts := dr.stores
	if sts == nil {
		sts = strings.Split(devices.ModelStores, ",")
	}
	var rows []row
	var refused []refusal
	for _, sc := range dr.scenarios {
		for _, d := range dr.disciplines {
			for _, st := range sts {
				v, err := stores.Lookup(st)
				if err != nil {
					refused = append(refused, refusal{column: string(d), store: st, scenario: sc.Name, device: "model", named: true,
						err: fmt.Errorf("the model cannot run store %q: %w", st, err)})
					continue
				}
				rows = append(rows, row{pair: scenarios.Pair{Scenario: sc, Discipline: d, Variant: v}, column: string(d)})
			}
		}
	}
	return rows, refused
}

// gateRows marks the must-pass rows. -must-pass takes COLUMN/STORE (every
// scenario of that row) or COLUMN/STORE/SCENARIO, where COLUMN is a
// discipline (model rows) or a device name; each must match a row in the
// run (a gate that did not run is no gate), or none. Without -must-pass
// the gate is the model's default pairs and each device's correct variant
// (defaultDeviceGate), as far as they are in the run. Every gate is
// earned: a gate that holds no row is bad input, and so is a pair the
// device refused that the gate would hold (named in -must-pass, or gated
// by default and named in -stores, -scenarios or -disciplines): the gate
// would pass without it.
func gateRows(rows []row, refused []refusal, dr deviceRun) error {
	if strings.TrimSpace(dr.mustPass) == reports.NoGate {
		return nil
	}
	if !dr.mustGiven {
		model := split(defaultMustPass)
		for i := range rows {
			r := &rows[i]
			if r.pair.Device == nil {
				r.must = slices.Contains(model, r.column+"/"+r.pair.Variant.Name)
			} else {
				r.must = defaultDeviceGate(r.pair.Device.Name(), r.pair.Variant.Name, r.pair.Scenario.Name)
			}
		}
		for _, f := range refused {
			if f.named && defaultDeviceGate(f.device, f.store, f.scenario) {
				return badInput("%s/%s/%s must pass by default, but the device refuses it: %v (leave it out of the flags, or name the gate with -must-pass)",
					f.column, f.store, f.scenario, f.err)
			}
		}
		if !slices.ContainsFunc(rows, func(r row) bool { return r.must }) {
			return errNoGate
		}
		return nil
	}
	for _, p := range split(dr.mustPass) {
		f := strings.Split(p, "/")
		if len(f) < 2 || len(f) > 3 {
			return badInput("-must-pass wants DISCIPLINE/STORE, DEVICE/STORE or DEVICE/STORE/SCENARIO, or none; got %q", p)
		}
		match := func(column, store, scenario string) bool {
			return column == f[0] && store == f[1] && (len(f) == 2 || scenario == f[2])
		}
		for _, r := range refused {
			if match(r.column, r.store, r.scenario) {
				return badInput("-must-pass %s: the device refuses %s", p, r)
			}
		}
		hit := false
		for i := range rows {
			r := &rows[i]
			if match(r.column, r.pair.Variant.Name, r.pair.Scenario.Name) {
				r.must, hit = true, true
			}
		}
		if !hit {
			return badInput("-must-pass %s is not in the run (give its device or discipline, its store and scenario)", p)
		}
	}
	if !slices.ContainsFunc(rows, func(r row) bool { return r.must }) {
		return badInput("-must-pass: no pair given (-must-pass none runs without a gate)")
	}
	return nil
}

// defaultDeviceGate is the default gate of a device row.
//
// Baileys: what users run, Baileys' own socket (baileys-socket@V) on a
// bot's auth state or on Baileys' own useMultiFileAuthState, alone or
// behind makeCacheableSignalKeyStore, in the scenarios where Baileys' own
// store under Baileys' own code measured clean on both pinned versions
// (socketGateScenarios, docs/baileys.md "The gate"); elsewhere Baileys
// itself loses messages whatever the store, and a row's store-blamed
// column (and checkAuthState) says whether the store adds to that. The
// adapter's locked variant is a named, measured proposed fix, gated only
// when named (-must-pass baileys@V/locked).
//
// The child process (procs) runs the correct client on a real database, one
// request at a time: every row must pass. With gates (procs+gates) its
// requests are in flight at once: every row must pass but overlap, two
// processes on one database, which lose messages as two replicas of any
// bot do (gated when named). The real whatsmeow Client
// replying from its handler (client-inline) cannot race its own receive
// (the handler queue runs one stanza at a time): its rows on the reference
// store and on whatsmeow's sqlstore must pass, but not reinstall, where
// whatsmeow answers two retry receipts of one contact in two goroutines
// with no lock (retry.go handleRetryReceipt; realclient's
// testdata/reinstall-concurrent-resends-sqlite.txt), and not the LID
// scenarios, where whatsmeow's own retry goroutines reorder a contact's
// session rebuilds under two addresses (docs/lid.md §6.5). client-async races
// its receive by design (docs/design.md §3.10): judged, not gated.
func defaultDeviceGate(device, store, scenario string) bool {
	if device == "procs" {
		return true
	}
	if device == "procs"+procs.GatesSuffix {
		return !strings.HasPrefix(scenario, "overlap")
	}
	if device == "client-inline" {
		return (store == "reference" || store == "sqlite") && scenario != "reinstall" && !strings.HasPrefix(scenario, "lid-")
	}
	if strings.HasPrefix(device, baileys.SocketPrefix) {
		return slices.Contains(socketGateScenarios, scenario)
	}
	return false
}

// socketGateScenarios are the scenarios the socket device's rows are gated
// in by default: Baileys 6.17.16 and 7.0.0-rc14 on useMultiFileAuthState,
// alone and behind makeCacheableSignalKeyStore, lost nothing there
// (docs/baileys.md).
var socketGateScenarios = []string{"burst"}

// replayDevice replays a schedule whose header names a device other than
// the model on that device, and prints what replay prints for the model.
func replayDevice(ctx context.Context, path string, s *harness.Schedule, mode harness.Mode, stdout io.Writer) (int, error) {
	od, err := openDevice(ctx, s.Device, deviceTimeout, "")
	if err != nil {
		return 2, err
	}
	defer od.Close()
	if od.Device == nil {
		return 2, badInput("%s: device %s", path, s.Device)
	}
	// The first mode the device runs: controlled replays byte for byte;
	// a device whose own goroutines run freely (the real client) reruns
	// the same ops in serial or free mode.
	if mode == "" {
		mode = harness.Controlled
		err = od.Device.Check(s, mode)
		for _, m := range []harness.Mode{harness.Serial, harness.Free} {
			if err == nil {
				break
			}
			if od.Device.Check(s, m) == nil {
				mode, err = m, nil
			}
		}
	} else {
		err = od.Device.Check(s, mode)
	}
	if err != nil {
		return 2, badInput("%s: %v", path, err)
	}
	if mode != harness.Controlled {
		fmt.Fprintf(stdout, "# device %s runs in mode %s: the same ops again; its own goroutines decide the interleaving, so a failure recurs at a rate\n", s.Device, mode)
	}
	sched, res, err := harness.RunOn(ctx, od.Device, s, mode, harness.Ops(s.Ops))
	if err != nil {
		return 2, fmt.Errorf("%s: %w", path, err)
	}
	why := fmt.Sprintf("device %s is judged against its protocol baseline only", s.Device)
	if _, ok := od.Device.(harness.Referencer); ok {
		why = "the reference store is not judged against itself; a free run is not replayed on it"
	}
	return printReplay(stdout, sched, res, why), nil
}

// baileysSocketDefault are the devices -auth runs without -device: Baileys
// itself at each pinned version.
var baileysSocketDefault = []string{baileys.SocketPrefix + "7.0.0-rc14", baileys.SocketPrefix + "6.17.16"}

// baileysScenarios are the scenarios -auth runs without -scenarios: those
// the socket device runs on one contact's device (docs/baileys.md).
var baileysScenarios = []string{"burst", "reply", "reorder", "crash", "restart", "torn", "idle"}

// authFlags turns -auth MODULE#FUNCTION into the socket device's rows: the
// store alone and behind makeCacheableSignalKeyStore, on the pinned
// Baileys versions unless -device names others, on the Baileys scenarios
// unless -scenarios names others. Flags given explicitly win.
func authFlags(auth string, given map[string]bool, deviceList, storeList, scens *string) error {
	st, err := baileys.ParseStore(auth)
	if err != nil || st.Module == "" || st.Cache {
		return badInput("-auth %q: want MODULE#FUNCTION (a path without spaces, then the exported function), e.g. ./auth.mjs#useMyAuthState", auth)
	}
	file := st.Module[:strings.LastIndex(st.Module, "#")]
	if _, err := os.Stat(file); err != nil {
		return badInput("-auth %s: %v", auth, err)
	}
	name := st.StoreName()
	if !given["device"] {
		*deviceList = strings.Join(baileysSocketDefault, ",")
	}
	if !given["stores"] {
		*storeList = name + "," + name + baileys.CacheSuffix
		given["stores"] = true
	}
	if !given["scenarios"] {
		*scens = strings.Join(baileysScenarios, ",")
	}
	return nil
}
