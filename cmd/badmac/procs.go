package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// procsCmd is `badmac procs`: the device under test as real child
// processes (this binary's hidden `device` subcommand) on real databases:
// kills at a random moment inside a request, and two replicas on one
// database with requests in flight at once. Neither is a row `badmac run
// -device procs` has (its crash lands between requests; its two
// instances take turns, scenario replica), so this is not a preset of
// run: it keeps its drivers (procs.ConverseRandomKill, ConverseReplicas),
// whose runs are harness.Results judged by harness.Judge (procs.JudgeKill,
// JudgeAlone), and prints run's table with run's gate
// (reports.Report.Verdict over reports.Row.Failed): exit 1 when a
// must-pass row failed: by default the random-kill rows, a kill that lost
// something the database had made durable (store-blamed) or changed
// credentials; two replicas failing is the finding, gated only when asked
// (-must-pass replicas/sqlite).
func procsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlags("procs")
	storeList := fs.String("stores", "sqlite", "sqlite, postgres (comma-separated)")
	dsn := fs.String("dsn", "", "PostgreSQL server DSN (default $"+sqlstores.PostgresEnv+")")
	seeds := fs.Int("seeds", 10, "conversations per suite and store")
	msgs := fs.Int("messages", 12, "messages the contact sends per conversation")
	seed := fs.Uint64("seed", 1, "first seed")
	txn := fs.Bool("txn", false, "the device decrypts inside whatsmeow's decrypted-event buffer transaction")
	writeBehind := fs.Int("write-behind", 0, "a broken child for comparison (run's procs-writebehind): session writes wait in memory for N more, so a SIGKILL loses them (0: off)")
	mustPass := fs.String("must-pass", "", "suite/store rows that must pass (suites: kill, replicas), or none; default: kill on every store")
	wide := fs.Bool("wide", false, "print every column (the default table fits 120 columns)")
	asJSON := fs.Bool("json", false, "print the report as JSON (reports/schema.json) on stdout instead of the table")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	if *seeds < 1 || *seeds > 10000 || *msgs < 1 || *msgs > 1000 || *writeBehind > 1000 {
		return 2, badInput("-seeds must be 1..10000, -messages 1..1000 and -write-behind 0..1000")
	}
	exe, err := os.Executable()
	if err != nil {
		return 2, fmt.Errorf("procs: own executable: %w", err)
	}
	defer sqlstores.Shutdown()
	var vs []stores.Variant
	for _, s := range split(*storeList) {
		v, err := stores.Lookup(s)
		if err != nil {
			return 2, badInput("%v", err)
		}
		if s != "sqlite" && s != "postgres" {
			return 2, badInput("procs runs on sqlite and postgres only, not %q", s)
		}
		if s == "postgres" && *dsn != "" {
			d := *dsn
			v.Open = func(ctx context.Context) (stores.Storage, error) { return sqlstores.OpenPostgres(ctx, d) }
		}
		st, err := v.Open(ctx)
		if err != nil {
			return 2, fmt.Errorf("store %s: %w", v.Name, err)
		}
		st.Close()
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return 2, badInput("nothing to run: give -stores")
	}
	must, err := procsMustPass(*mustPass, vs)
	if err != nil {
		return 2, err
	}
	cfg := procs.Config{Messages: *msgs, Reply: 0.7}
	launcher := func(v stores.Variant, s uint64) (procs.Launcher, func(), error) {
		st, err := v.Open(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("store %s: %w", v.Name, err)
		}
		loc, ok := sqlstores.Locate(st)
		if !ok {
			st.Close()
			return nil, nil, fmt.Errorf("store %s cannot be located", v.Name)
		}
		c := procs.Child{Exe: exe, Args: []string{"device"}, Env: os.Environ(), Loc: loc, Seed: s, Txn: *txn, WriteBehind: *writeBehind}
		return c.Launch, func() { st.Close() }, nil
	}
	// The rows as reports.Row, judged by harness.Judge (procs.JudgeKill,
	// procs.JudgeAlone) and gated by reports.Report.Verdict, as run's.
	rep := &reports.Report{Seed: *seed, Mode: "procs", Schedules: *seeds, MustPass: *mustPass}
	var extra []string
	for _, v := range vs {
		// Kills at a random moment, judged against the unkilled run and
		// the in-process model of the same kill on the reference store.
		var c harness.Counts
		failed, kills, first := 0, 0, ""
		for i := 0; i < *seeds; i++ {
			s := *seed + uint64(i)
			c1 := cfg
			c1.Seed = s
			l, done, err := launcher(v, s)
			if err != nil {
				return 2, err
			}
			base, err := procs.Converse(ctx, c1, l, 0)
			done()
			if err != nil {
				return 2, fmt.Errorf("%s seed %d: %w", v.Name, s, err)
			}
			k := procs.NewRandomKill(s, base)
			if l, done, err = launcher(v, s); err != nil {
				return 2, err
			}
			real, err := procs.ConverseRandomKill(ctx, c1, l, k)
			done()
			if err != nil {
				return 2, fmt.Errorf("%s seed %d %v: %w", v.Name, s, k, err)
			}
			var models []*procs.Run
			for _, kp := range real.KillPoints[:min(1, len(real.KillPoints))] {
				for _, w := range []int{kp.InRequest(), kp.InRequest() + 1} {
					st, err := stores.MustLookup("reference").Open(ctx)
					if err != nil {
						return 2, err
					}
					m, err := procs.Converse(ctx, c1, procs.LocalAt(st, false, kp.Request, w), 0)
					st.Close()
					if err != nil {
						return 2, fmt.Errorf("model of seed %d: %w", s, err)
					}
					models = append(models, m)
				}
			}
			procs.JudgeKill(real, base, models...)
			c.Add(real.Counts())
			kills += real.Crashes
			if real.Failed() {
				failed++
				why := fmt.Sprintf("seed %d, %v: %s", s, k, real.Summary())
				first = cmp.Or(first, why)
				fmt.Fprintf(stderr, "failed: kill/%s %s\n", v.Name, why)
			}
		}
		rep.Rows = append(rep.Rows, procsRow(c, *seeds, failed, first, "kill", v.Name, must,
			"the same conversation unkilled; the store's, and what the kill explains: the same kill in process on the reference store"))
		extra = append(extra, fmt.Sprintf("  kill/%s: %d SIGKILLs at a random moment", v.Name, kills))
		// Two replicas on one database and device at once.
		c, failed, first = harness.Counts{}, 0, ""
		overlapped, requests := 0, 0
		for i := 0; i < *seeds; i++ {
			s := *seed + uint64(i)
			c1 := cfg
			c1.Seed = s
			l, done, err := launcher(v, s)
			if err != nil {
				return 2, err
			}
			res, err := procs.ConverseReplicas(ctx, c1, 2, l)
			done()
			if err != nil {
				return 2, fmt.Errorf("%s seed %d two replicas: %w", v.Name, s, err)
			}
			procs.JudgeAlone(res)
			c.Add(res.Counts())
			overlapped, requests = overlapped+res.Overlapped, requests+res.Requests
			if res.Failed() {
				failed++
				first = cmp.Or(first, fmt.Sprintf("seed %d: %s", s, res.Summary()))
			}
		}
		rep.Rows = append(rep.Rows, procsRow(c, *seeds, failed, first, "replicas", v.Name, must,
			"none: one process on one database delivers every message cleanly (procs.TestReplicas*), so every message two do not is blamed"))
		extra = append(extra, fmt.Sprintf("  replicas/%s: %d of %d requests sent while the other process had one in flight", v.Name, overlapped, requests))
	}
	code, err := writeReport(rep, stdout, *asJSON, *wide, "", "", "")
	if err != nil || *asJSON {
		return code, err
	}
	fmt.Fprintf(stdout, "procs: seeds %d..%d, %d messages each, txn %v, write-behind %d; real child processes (kill: SIGKILL at a random moment, restart on the same database; replicas: two processes on one database with requests in flight at once)\n",
		*seed, *seed+uint64(*seeds)-1, *msgs, *txn, *writeBehind)
	for _, l := range extra {
		fmt.Fprintln(stdout, l)
	}
	fmt.Fprintf(stdout, "a kill replays from its seed (the same step of the same request); two-replica runs do not replay exactly (the seed fixes the conversation, not the interleaving); rerun: %s procs -stores %s -seeds %d -seed %d -messages %d\n",
		self(), *storeList, *seeds, *seed, *msgs)
	return code, nil
}

// procsRow is one row of badmac procs' report.
func procsRow(c harness.Counts, runs, failed int, first, suite, store string, must map[string]bool, baseline string) reports.Row {
	r := reports.CountsRow(c, runs, failed)
	r.Discipline, r.Store, r.Scenario, r.MustPass, r.Baseline, r.Summary = suite, store, "procs", must[suite+"/"+store], baseline, first
	return r
}

// procsMustPass reads procs' -must-pass: suite/store with suite kill or
// replicas, or none; by default the random-kill row of every store (two
// replicas on one database are known to lose messages). Explicit rows must
// be in the run.
func procsMustPass(list string, vs []stores.Variant) (map[string]bool, error) {
	must := map[string]bool{}
	if strings.TrimSpace(list) == reports.NoGate {
		return must, nil
	}
	if list == "" {
		for _, v := range vs {
			must["kill/"+v.Name] = true
		}
		return must, nil
	}
	inRun := map[string]bool{}
	for _, v := range vs {
		inRun["kill/"+v.Name], inRun["replicas/"+v.Name] = true, true
	}
	for _, p := range split(list) {
		if !inRun[p] {
			return nil, badInput("-must-pass %s is not a row of this run (suite/store: kill or replicas on a store in -stores)", p)
		}
		must[p] = true
	}
	if len(must) == 0 {
		return nil, badInput("-must-pass: no row given (-must-pass none runs without a gate)")
	}
	return must, nil
}
