package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/badmac/badmac/devices"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// defaultStores are the in-memory variants: no setup needed.
const defaultStores = "reference,uncached,mutexed,cached"

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlags("run")
	disc := fs.String("disciplines", "concurrent,whatsmeow,locked", "client disciplines, comma-separated (also: txn, on stores with DoDecryptionTxn)")
	storeList := fs.String("stores", defaultStores, "stores, comma-separated (also: sqlite, postgres)")
	scens := fs.String("scenarios", strings.Join(scenarios.Default, ","), "scenarios, comma-separated")
	n := fs.Int("schedules", 10, "schedules per (discipline, store, scenario)")
	seed := fs.Uint64("seed", 1, "base seed; the same seed gives the same output")
	mode := fs.String("mode", "controlled", "controlled (deterministic, replayable) or free (real goroutines)")
	policy := fs.String("policy", "random", "scheduling policy in controlled mode: random or pct")
	mustPass := fs.String("must-pass", defaultMustPass, "discipline/store pairs that must pass (the gate; each must be in the run), or none (no gate; the default keeps only the pairs in the run); with -device also DEVICE/STORE[/SCENARIO] (default: each device's correct variant, e.g. baileys@V/locked)")
	wide := fs.Bool("wide", false, "print every column (the default table fits 120 columns)")
	out := fs.String("out", "badmac-failures", "directory for failing schedules (replay files)")
	shrink := fs.Int("shrink", 200, "runs to spend shrinking each failing row's counterexample (0: none; with a -device other than model the default is 20)")
	asJSON := fs.Bool("json", false, "print the report as JSON (reports/schema.json) on stdout instead of the table")
	mdFile := fs.String("markdown", "", "also write the report as Markdown to `FILE` (for $GITHUB_STEP_SUMMARY; capped at 512 KiB)")
	junitFile := fs.String("junit", "", "also write JUnit XML to `FILE`: one test case per discipline/store/scenario")
	htmlFile := fs.String("html", "", "also write a self-contained HTML report to `FILE`: table, chart, counterexample timelines")
	shrinkTime := fs.Duration("shrink-time", 0, "also stop each shrink after this long (0: no limit; a limit makes counterexamples depend on the machine's speed)")
	workers := fs.Int("workers", 0, "schedules run at once (0: GOMAXPROCS); the output is the same for any count")
	shardFlag := fs.String("shard", "", "run only slice `K/N` (1 ≤ K ≤ N) of every row's schedules; combine the -json reports with badmac merge")
	deviceList := fs.String("device", "", "devices under test, comma-separated (default: the model only); rows are device × store × scenario, the device's name in the discipline column; pairs a device cannot run are listed on stderr as skipped:\n"+strings.TrimRight(devices.Usage(), "\n"))
	timeout := fs.Duration("timeout", deviceTimeout, "per-request timeout of a device process: one silent this long is an error")
	adapter := fs.String("adapter", "", "command replacing the Baileys adapter's, space-separated (tests start fake devices)")
	auth := fs.String("auth", "", "a Baileys bot's auth state, `MODULE#FUNCTION` (FUNCTION(dir) returns { state: { creds, keys }, saveCreds }, as useMultiFileAuthState): its rows run Baileys' own socket on it, alone and behind makeCacheableSignalKeyStore; -device defaults to "+strings.Join(baileysSocketDefault, ",")+", -scenarios to "+strings.Join(baileysScenarios, ","))
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	cfg := scenarios.Config{Seed: *seed, Schedules: *n, ShrinkBudget: *shrink, ShrinkTime: *shrinkTime, Workers: *workers}
	if *workers < 0 || *shrinkTime < 0 {
		return 2, badInput("-workers and -shrink-time must not be negative")
	}
	shard, err := parseShard(*shardFlag)
	if err != nil {
		return 2, err
	}
	cfg.Shard, cfg.Shards = shard.K-1, shard.N
	switch harness.Mode(*mode) {
	case harness.Controlled, harness.Free:
		cfg.Mode = harness.Mode(*mode)
	default:
		return 2, badInput("unknown mode %q (known: controlled, free)", *mode)
	}
	if cfg.Policy, err = scenarios.ParsePolicy(*policy); err != nil {
		return 2, badInput("%v", err)
	}
	if *n < 1 || *n > 100000 {
		return 2, badInput("-schedules must be between 1 and 100000, got %d", *n)
	}
	if *timeout <= 0 {
		return 2, badInput("-timeout must be positive, got %s", *timeout)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *auth != "" {
		if err := authFlags(*auth, given, deviceList, storeList, scens); err != nil {
			return 2, err
		}
	}
	var ds []harness.Discipline
	for _, s := range split(*disc) {
		d, err := harness.ParseDiscipline(s)
		if err != nil {
			return 2, badInput("%v", err)
		}
		ds = append(ds, d)
	}
	var scs []scenarios.Scenario
	for _, s := range split(*scens) {
		sc, err := scenarios.Lookup(s)
		if err != nil {
			return 2, badInput("%v", err)
		}
		scs = append(scs, sc)
	}
	outputs := []*string{mdFile, junitFile, htmlFile}
	for _, p := range outputs {
		if *p != "" {
			if err := checkWritable(*p); err != nil {
				return 2, badInput("%v", err)
			}
		}
	}
	defer sqlstores.Shutdown()
	var rows []row
	if *deviceList == "" {
		vs, err := lookupStores(*storeList)
		if err != nil {
			return 2, err
		}
		if len(ds) == 0 || len(vs) == 0 || len(scs) == 0 {
			return 2, badInput("nothing to run: give at least one discipline, store and scenario")
		}
		must, err := parseMustPass(*mustPass, given["must-pass"], ds, vs)
		if err == errNoGate && !given["disciplines"] {
			// The real client's rows below may hold the default gate
			// (client-inline on sqlite): judged once they are planned.
			err = nil
		}
		if err != nil {
			return 2, err
		}
		if err := probeStores(ctx, vs); err != nil {
			return 2, err
		}
		for _, sc := range scs {
			for _, d := range ds {
				for _, v := range vs {
					rows = append(rows, row{pair: scenarios.Pair{Scenario: sc, Discipline: d, Variant: v}, column: string(d),
						must: must[string(d)+"/"+v.Name]})
				}
			}
		}
		if !given["disciplines"] {
			// The real whatsmeow Client's rows (defaultClients) follow the
			// model's, gated as -device gates them.
			dr := deviceRun{names: split(defaultClients), scenarios: scs, mode: cfg.Mode, mustPass: "none", timeout: *timeout}
			if given["stores"] {
				dr.stores = split(*storeList)
			}
			crows, closeClients, err := planDevices(ctx, dr, stderr)
			if err != nil {
				return 2, err
			}
			defer closeClients()
			for _, r := range crows {
				r.must = !given["must-pass"] && defaultDeviceGate(r.pair.Device.Name(), r.pair.Variant.Name, r.pair.Scenario.Name)
				rows = append(rows, r)
			}
			if !given["shrink"] {
				cfg.DeviceShrinkBudget = deviceShrink
			}
		}
		if !slices.ContainsFunc(rows, func(r row) bool { return r.must }) && strings.TrimSpace(*mustPass) != reports.NoGate {
			return 2, errNoGate
		}
	} else {
		dr := deviceRun{names: split(*deviceList), disciplines: ds, discGiven: given["disciplines"], scenarios: scs, scenGiven: given["scenarios"], mode: cfg.Mode,
			mustPass: *mustPass, mustGiven: given["must-pass"], timeout: *timeout, adapter: *adapter}
		if given["stores"] {
			dr.stores = split(*storeList)
		}
		if !given["shrink"] && !(len(dr.names) == 1 && dr.names[0] == "model") {
			cfg.ShrinkBudget = deviceShrink
		}
		for i, n := range dr.names {
			if slices.Contains(dr.names[:i], n) {
				return 2, badInput("-device %s is given twice", n)
			}
		}
		if len(dr.names) == 0 || len(ds) == 0 || len(scs) == 0 || (given["stores"] && len(dr.stores) == 0) {
			return 2, badInput("nothing to run: give at least one device, discipline, store and scenario")
		}
		var closeDevices func()
		var err error
		var skipped strings.Builder
		if rows, closeDevices, err = planDevices(ctx, dr, &skipped); err != nil {
			return 2, err
		}
		defer closeDevices()
		fmt.Fprint(stderr, skipped.String())
		var vs []stores.Variant
		for _, r := range rows {
			if r.pair.Device == nil && !slices.ContainsFunc(vs, func(v stores.Variant) bool { return v.Name == r.pair.Variant.Name }) {
				vs = append(vs, r.pair.Variant)
			}
		}
		if err := probeStores(ctx, vs); err != nil {
			return 2, err
		}
	}

	// A gated row that runs no schedule would pass on nothing.
	if len(cfg.Indices()) == 0 && slices.ContainsFunc(rows, func(r row) bool { return r.must }) {
		return 2, badInput("-shard %s of %d schedules per row runs none: the gate would pass on nothing (give at least %d schedules)", shard, *n, shard.N)
	}
	if !*asJSON && stderrIsTerminal(stderr) {
		bar := newProgress(stderr, len(rows)*len(cfg.Indices()))
		defer bar.Finish()
		cfg.Progress = func() { bar.Add(1) }
	}

	rep := &reports.Report{Seed: *seed, Mode: string(cfg.Mode), Schedules: *n, Shard: shard.String()}
	if given["must-pass"] {
		rep.MustPass = *mustPass
	}
	var pairs []scenarios.Pair
	for _, r := range rows {
		pairs = append(pairs, r.pair)
	}
	cfg.Pool = harness.NewPool(*workers)
	lastRunPool.Store(cfg.Pool)
	results, err := scenarios.RunPairs(ctx, pairs, cfg)
	if err != nil {
		return 2, err
	}
	for i, pr := range results {
		d, sc := pr.Discipline, pr.Scenario
		row := toRow(pr, rows[i].must)
		row.Discipline = rows[i].column
		if rows[i].baseline != "" {
			row.Baseline = rows[i].baseline
		}
		if pr.First != nil && cfg.Mode == harness.Controlled {
			path, err := saveSchedule(*out, pr.First, "")
			if err != nil {
				return 2, err
			}
			row.Replay = self() + " replay " + path
			row.Counterexample = pr.First.String()
			row.History = pr.FirstResult.History
		} else if pr.First != nil && pr.Device != "" {
			// A device that runs only free or serial (the real client):
			// its schedule reruns the same ops, and replay picks the mode.
			path, err := saveSchedule(*out, pr.First, "")
			if err != nil {
				return 2, err
			}
			row.Replay = fmt.Sprintf("%s replay -mode %s %s", self(), cfg.Mode, path)
			row.Counterexample = pr.First.String()
			row.History = pr.FirstResult.History
		} else if pr.First != nil {
			row.Replay = fmt.Sprintf("(free mode is not replayable) %s run -mode controlled -disciplines %s -stores %s -scenarios %s -seed %d", self(), d, pr.Store, sc, *seed)
		}
		if pr.Library != nil && cfg.Mode == harness.Controlled {
			path, err := saveSchedule(*out, pr.Library, "-baseline")
			if err != nil {
				return 2, err
			}
			row.Library = &reports.Finding{Schedule: pr.LibraryIndex, Replay: self() + " replay " + path, Counterexample: pr.Library.String(),
				Summary: pr.LibraryResult.LibrarySummary(), History: pr.LibraryResult.History}
		}
		rep.Rows = append(rep.Rows, row)
	}
	return writeReport(rep, stdout, *asJSON, *wide, *mdFile, *junitFile, *htmlFile)
}

// writeReport writes the report files, then the table (or JSON) on
// stdout, and returns the gate's exit code: run and merge end the same way.
func writeReport(rep *reports.Report, stdout io.Writer, asJSON, wide bool, mdFile, junitFile, htmlFile string) (int, error) {
	if err := writeOutputs(rep, mdFile, junitFile, htmlFile); err != nil {
		return 2, err
	}
	var err error
	if asJSON {
		err = reports.WriteJSON(stdout, rep)
	} else {
		err = reports.WriteTable(stdout, rep, reports.TableOptions{Wide: wide})
	}
	if err != nil {
		return 2, err
	}
	return exitCode(rep), nil
}

// exitCode is the gate's verdict as an exit code: 1 when a must-pass row
// failed, 2 when the gate earned no verdict (no must-pass row, or one that
// ran no schedule or judged no message), else 0 (a run not gated on
// purpose says so in every output).
func exitCode(rep *reports.Report) int {
	switch rep.Verdict() {
	case reports.GateFail:
		return 1
	case reports.GateUnearned:
		return 2
	}
	return 0
}

// defaultClients are the devices a plain badmac run adds to the model's
// rows (without -device and -disciplines): the real whatsmeow Client,
// replying from its handler and from a goroutine, in the run's mode.
const defaultClients = "client-inline,client-async"

// defaultMustPass is the gate when -must-pass is not given: the correct
// client on the stores that are correct per call, as far as they are in
// the run.
const defaultMustPass = "locked/reference,locked/mutexed"

// errNoGate is a run whose default gate holds none of its rows: a pass
// nothing earned, so bad input, with or without -device.
var errNoGate = badInput("no must-pass row in the run (the default gate is %s and client-inline on reference and sqlite but in reinstall and the lid- scenarios; with -device also every procs row and the baileys-socket rows in burst): name the gate with -must-pass, or measure without one with -must-pass none", defaultMustPass)

// parseMustPass reads -must-pass: "none" is no gate, on purpose; explicit
// pairs must all be in the run (a gate that did not run is no gate); the
// default keeps the pairs that are in the run. Either way a gate with no
// pair in the run is bad input.
func parseMustPass(list string, explicit bool, ds []harness.Discipline, vs []stores.Variant) (map[string]bool, error) {
	must := map[string]bool{}
	if strings.TrimSpace(list) == reports.NoGate {
		return must, nil
	}
	inRun := map[string]bool{}
	for _, d := range ds {
		for _, v := range vs {
			inRun[string(d)+"/"+v.Name] = true
		}
	}
	for _, p := range split(list) {
		d, s, ok := strings.Cut(p, "/")
		if !ok {
			return nil, badInput("-must-pass wants discipline/store pairs or none, got %q", p)
		}
		if _, err := harness.ParseDiscipline(d); err != nil {
			return nil, badInput("-must-pass: %v", err)
		}
		if _, err := stores.Lookup(s); err != nil {
			return nil, badInput("-must-pass: %v", err)
		}
		if !inRun[p] {
			if explicit {
				return nil, badInput("-must-pass %s is not in the run (give its discipline in -disciplines and its store in -stores)", p)
			}
			continue
		}
		must[p] = true
	}
	if len(must) == 0 {
		if explicit {
			return nil, badInput("-must-pass: no pair given (-must-pass none runs without a gate)")
		}
		return nil, errNoGate
	}
	return must, nil
}

func toRow(pr *scenarios.PairResult, must bool) reports.Row {
	r := reports.CountsRow(pr.Counts, pr.Schedules, pr.Failed)
	r.Discipline, r.Store, r.Scenario, r.MustPass = string(pr.Discipline), pr.Store, pr.Scenario, must
	if pr.Discipline == harness.Txn && pr.Device == "" {
		r.Baseline = "locked, one task at a time, on the reference store (it has no transactions)"
	}
	if pr.FirstResult != nil {
		r.Summary = pr.FirstResult.Summary()
		i := pr.FirstIndex
		r.FirstFailing = &i
	}
	return r
}

// fileSafe turns a name into part of a file name on any system: path
// separators, '@' and ':' (Windows' drive and stream separator) become '-'.
var fileSafe = strings.NewReplacer("@", "-", "/", "-", "\\", "-", ":", "-")

func saveSchedule(dir string, s *harness.Schedule, suffix string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("failure directory %s: %w", dir, err)
	}
	who := string(s.Discipline)
	if s.Device != "" {
		who = fileSafe.Replace(s.Device) // a device's schedules are named for it
	}
	// A store named by a path (a Baileys auth module, MODULE#FUNCTION)
	// becomes one file name; so does a scenario with parameters
	// (reply:messages=30:burst=4: ':' is not allowed in Windows file names).
	store := strings.TrimLeft(fileSafe.Replace(s.Store), "-.")
	path := filepath.Join(dir, fmt.Sprintf("%s-%s-%s-seed%d%s.txt", who, store, fileSafe.Replace(s.Scenario), s.Seed, suffix))
	if err := os.WriteFile(path, []byte(s.String()), 0o644); err != nil {
		return "", fmt.Errorf("saving schedule: %w", err)
	}
	return path, nil
}

// lookupStores resolves a comma-separated list of store names.
func lookupStores(list string) ([]stores.Variant, error) {
	var vs []stores.Variant
	for _, s := range split(list) {
		v, err := stores.Lookup(s)
		if err != nil {
			return nil, badInput("%v", err)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// probeStores opens and closes every store once, so an unreachable database
// is a one-line error before any time is spent on the others.
func probeStores(ctx context.Context, vs []stores.Variant) error {
	for _, v := range vs {
		st, err := v.Open(ctx)
		if err != nil {
			return fmt.Errorf("store %s: %w", v.Name, err)
		}
		st.Close()
	}
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
