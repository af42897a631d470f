package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/stores/sqlstores"
)

// procsCmd is `badmac procs`, a preset of `badmac run -device procs+gates`:
// the device as real child processes (this binary's hidden `device`
// subcommand, with gates: every store call of a request waits for the
// harness's step) on real databases, in two scenarios: crash, a SIGKILL
// inside a request (tasks parked between their loads and their writes;
// restarted on the same database), and overlap, two processes on one
// database with requests in flight at once. procsRunArgs says which run
// command it is; it is printed on stderr after the run. The table, the
// gate, the replay files and the exit code are run's. Its gate: by default
// the crash rows on every store (a kill that loses what the database made
// durable, or changes the credentials); two processes failing is the
// finding, gated only when asked (-must-pass replicas/sqlite).
func procsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlags("procs")
	storeList := fs.String("stores", "sqlite", "sqlite, postgres (comma-separated; run's -stores)")
	dsn := fs.String("dsn", "", "PostgreSQL server DSN (default $"+sqlstores.PostgresEnv+", which this sets for the run)")
	seeds := fs.Int("seeds", 10, "schedules per suite and store (run's -schedules)")
	seed := fs.Uint64("seed", 1, "first seed (run's -seed)")
	writeBehind := fs.Int("write-behind", 0, "4: a broken child for comparison (run's procs-writebehind+gates): session writes wait in memory for 4 more, so a SIGKILL loses them (0: off)")
	mustPass := fs.String("must-pass", "", "suite/store rows that must pass (suites: kill, replicas), or none; default: kill on every store")
	wide := fs.Bool("wide", false, "print every column (the default table fits 120 columns)")
	asJSON := fs.Bool("json", false, "print the report as JSON (reports/schema.json) on stdout instead of the table")
	out := fs.String("out", "badmac-failures", "directory for failing schedules (replay files; run's -out)")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *seeds < 1 || *seeds > 10000:
		return 2, badInput("-seeds must be 1..10000")
	case *writeBehind != 0 && *writeBehind != 4:
		return 2, badInput("-write-behind takes 0 or 4 (run's procs-writebehind waits for 4 writes), not %d", *writeBehind)
	}
	device := "procs" + procs.GatesSuffix
	if *writeBehind > 0 {
		device = "procs-writebehind" + procs.GatesSuffix
	}
	var storeNames []string
	for _, s := range split(*storeList) {
		if s != "sqlite" && s != "postgres" {
			return 2, badInput("procs runs on sqlite and postgres only, not %q", s)
		}
		storeNames = append(storeNames, s)
	}
	if len(storeNames) == 0 {
		return 2, badInput("nothing to run: give -stores")
	}
	suites := procsSuites()
	must, err := procsMustPass(*mustPass, device, storeNames, suites)
	if err != nil {
		return 2, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["dsn"] {
		// The run's stores and children read the server from the
		// environment.
		if err := os.Setenv(sqlstores.PostgresEnv, *dsn); err != nil {
			return 2, err
		}
	}
	ra := procsRunArgs(device, storeNames, suites, *seeds, *seed, must, *wide, *asJSON, *out)
	code, err := runCmd(ctx, ra, stdout, stderr)
	if code != 2 {
		// After the run: bad input stays a one-line error.
		fmt.Fprintf(stderr, "badmac procs: a preset of %s run %s\n", self(), strings.Join(ra, " "))
	}
	return code, err
}

// procsSuite is one of badmac procs' suites: its name in -must-pass and
// the run scenario that is it.
type procsSuite struct{ name, scenario string }

// procsSuites are kill (the scenario crash: a SIGKILL at a random point,
// inside a request when tasks are in flight) and replicas (the scenario
// overlap: two processes on one database, requests in flight at once).
// Their sizes are the scenarios' (10 and 8 messages a schedule): the old
// -messages is gone with the old driver.
func procsSuites() []procsSuite {
	return []procsSuite{{"kill", "crash"}, {"replicas", "overlap"}}
}

// procsRunArgs is the run command `badmac procs` equals: the child with
// gates on the stores, its two scenarios, controlled (the only mode the
// child runs: a schedule replays byte for byte).
func procsRunArgs(device string, storeNames []string, suites []procsSuite, seeds int, seed uint64, mustPass string, wide, asJSON bool, out string) []string {
	var scs []string
	for _, s := range suites {
		scs = append(scs, s.scenario)
	}
	args := []string{"-device", device, "-stores", strings.Join(storeNames, ","), "-scenarios", strings.Join(scs, ","),
		"-schedules", fmt.Sprint(seeds), "-seed", fmt.Sprint(seed), "-must-pass", mustPass, "-out", out}
	if wide {
		args = append(args, "-wide")
	}
	if asJSON {
		args = append(args, "-json")
	}
	return args
}

// procsMustPass reads procs' -must-pass, suite/store with suite kill or
// replicas, or none, as run's: DEVICE/STORE/SCENARIO. By default the kill
// row of every store (two processes on one database are known to lose
// messages). Explicit rows must be in the run.
func procsMustPass(list, device string, storeNames []string, suites []procsSuite) (string, error) {
	if strings.TrimSpace(list) == reports.NoGate {
		return reports.NoGate, nil
	}
	scenario := map[string]string{}
	for _, s := range suites {
		scenario[s.name] = s.scenario
	}
	row := func(suite, store string) string { return device + "/" + store + "/" + scenario[suite] }
	var must []string
	if list == "" {
		for _, s := range storeNames {
			must = append(must, row("kill", s))
		}
		return strings.Join(must, ","), nil
	}
	for _, p := range split(list) {
		suite, store, _ := strings.Cut(p, "/")
		if scenario[suite] == "" || !strings.Contains(","+strings.Join(storeNames, ",")+",", ","+store+",") {
			return "", badInput("-must-pass %s is not a row of this run (suite/store: kill or replicas on a store in -stores)", p)
		}
		must = append(must, row(suite, store))
	}
	if len(must) == 0 {
		return "", badInput("-must-pass: no row given (-must-pass none runs without a gate)")
	}
	return strings.Join(must, ","), nil
}
