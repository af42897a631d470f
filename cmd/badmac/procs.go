package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// procsCmd is `badmac procs`: the device under test as real child
// processes (this binary's hidden `device` subcommand) on real databases:
// kills at a random moment, and two replicas on one database at once.
// The gate is run's (reports.Report.Verdict over reports.Row.Failed):
// exit 1 when a must-pass row failed: by default the random-kill rows, a
// kill that lost something the database had made durable (store-blamed)
// or changed credentials; two replicas failing is the finding, gated only
// when asked (-must-pass replicas/sqlite).
func procsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlags("procs")
	storeList := fs.String("stores", "sqlite", "sqlite, postgres (comma-separated)")
	dsn := fs.String("dsn", "", "PostgreSQL server DSN (default $"+sqlstores.PostgresEnv+")")
	seeds := fs.Int("seeds", 10, "conversations per suite and store")
	msgs := fs.Int("messages", 12, "messages the contact sends per conversation")
	seed := fs.Uint64("seed", 1, "first seed")
	txn := fs.Bool("txn", false, "the device decrypts inside whatsmeow's decrypted-event buffer transaction")
	mustPass := fs.String("must-pass", "", "suite/store rows that must pass (suites: kill, replicas), or none; default: kill on every store")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	if *seeds < 1 || *seeds > 10000 || *msgs < 1 || *msgs > 1000 {
		return 2, badInput("-seeds must be 1..10000 and -messages 1..1000")
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
		c := procs.Child{Exe: exe, Args: []string{"device"}, Env: os.Environ(), Loc: loc, Seed: s, Txn: *txn}
		return c.Launch, func() { st.Close() }, nil
	}
	type row struct {
		suite, id, store string
		t                procs.Tally
		blamed           int // messages the verdict counts against the row
		failedRuns       int
		lostToCrash      int
	}
	var rows []row
	for _, v := range vs {
		// Kills at a random moment, judged against the in-process model (the
		// plain client on a durable store, as the procs tests do).
		r := row{suite: "random kill", id: "kill", store: v.Name}
		for i := 0; i < *seeds; i++ {
			s := *seed + uint64(i)
			c := cfg
			c.Seed = s
			l, done, err := launcher(v, s)
			if err != nil {
				return 2, err
			}
			base, err := procs.Converse(ctx, c, l, 0)
			done()
			if err != nil {
				return 2, fmt.Errorf("%s seed %d: %w", v.Name, s, err)
			}
			k := procs.NewRandomKill(s, base)
			if l, done, err = launcher(v, s); err != nil {
				return 2, err
			}
			real, err := procs.ConverseRandomKill(ctx, c, l, k)
			done()
			if err != nil {
				return 2, fmt.Errorf("%s seed %d %v: %w", v.Name, s, k, err)
			}
			r.t.Add(real)
			if len(real.KillPoints) == 0 {
				if real.RegeneratedCreds {
					r.failedRuns++
				}
				continue
			}
			kp := real.KillPoints[0]
			var models []*procs.Result
			for _, w := range []int{kp.InRequest(), kp.InRequest() + 1} {
				st, err := stores.MustLookup("reference").Open(ctx)
				if err != nil {
					return 2, err
				}
				m, err := procs.Converse(ctx, c, procs.LocalAt(st, false, kp.Request, w), 0)
				st.Close()
				if err != nil {
					return 2, fmt.Errorf("model of seed %d: %w", s, err)
				}
				models = append(models, m)
			}
			verdict := procs.JudgeAny(real, base, models...)
			r.lostToCrash += len(verdict.ClientBlamed)
			if n := len(verdict.StoreBlamed); n > 0 || real.RegeneratedCreds {
				r.blamed += n
				r.failedRuns++
				fmt.Fprintf(stderr, "store-blamed: %s seed %d, %v, %v: %s\n", v.Name, s, k, kp, verdict)
			}
		}
		rows = append(rows, r)
		// Two replicas on one database and device at once.
		r = row{suite: "two replicas", id: "replicas", store: v.Name}
		for i := 0; i < *seeds; i++ {
			s := *seed + uint64(i)
			c := cfg
			c.Seed = s
			l, done, err := launcher(v, s)
			if err != nil {
				return 2, err
			}
			res, err := procs.ConverseReplicas(ctx, c, 2, l)
			done()
			if err != nil {
				return 2, fmt.Errorf("%s seed %d two replicas: %w", v.Name, s, err)
			}
			r.t.Add(res)
		}
		// No baseline: one process on one database delivers every message
		// cleanly, so every message that was not is the two replicas'.
		r.blamed, r.failedRuns = r.t.Failed, r.t.FailedRuns
		rows = append(rows, r)
	}
	// The gate, judged as badmac run judges its rows (reports.Row.Failed,
	// reports.Report.Verdict).
	rep := &reports.Report{Seed: *seed, Mode: "procs", Schedules: *seeds, MustPass: *mustPass}
	for _, r := range rows {
		rep.Rows = append(rep.Rows, reports.Row{Discipline: r.suite, Store: r.store, Scenario: "procs",
			MustPass: must[r.id+"/"+r.store], Schedules: r.t.Runs, FailedSchedules: r.failedRuns, Messages: r.t.Messages,
			Blamed: r.blamed, LostToCrash: r.lostToCrash, RegeneratedCreds: r.t.Regenerated, StoreError: r.t.Classes[endpoint.StoreError]})
	}
	t := tablewriter.NewTable(stdout, tablewriter.WithHeaderAutoFormat(tw.Off), tablewriter.WithRowAlignment(tw.AlignRight))
	t.Header("suite", "store", "runs", "kills", "overlap", "msgs", "delivered", "recovered", "lost", "dup", "wrong",
		"BadMAC", "OldCounter", "NoSession", "StoreError", "other", "regen creds", "blamed", "failed (95% CI)")
	for i, r := range rows {
		name := r.suite
		if rep.Rows[i].MustPass {
			name += " *"
		}
		cl := r.t.Classes
		other := 0
		for k, n := range cl {
			if k != endpoint.BadMAC && k != endpoint.OldCounter && k != endpoint.NoSession && k != endpoint.StoreError {
				other += n
			}
		}
		p, lo, hi := r.t.Rate()
		o := r.t.Outcomes
		if err := t.Append(name, r.store, fmt.Sprint(r.t.Runs), fmt.Sprint(r.t.Kills), fmt.Sprintf("%d/%d", r.t.Overlapped, r.t.Requests),
			fmt.Sprint(r.t.Messages), fmt.Sprint(o[harness.Delivered]), fmt.Sprint(o[harness.Recovered]), fmt.Sprint(o[harness.Lost]),
			fmt.Sprint(o[harness.Duplicate]), fmt.Sprint(o[harness.Wrong]),
			fmt.Sprint(cl[endpoint.BadMAC]), fmt.Sprint(cl[endpoint.OldCounter]), fmt.Sprint(cl[endpoint.NoSession]),
			fmt.Sprint(cl[endpoint.StoreError]), fmt.Sprint(other), fmt.Sprint(r.t.Regenerated), fmt.Sprint(r.blamed),
			fmt.Sprintf("%.1f%% [%.1f, %.1f]", 100*p, 100*lo, 100*hi)); err != nil {
			return 2, err
		}
	}
	if err := t.Render(); err != nil {
		return 2, err
	}
	fmt.Fprintf(stdout, "seeds %d..%d, %d messages each, txn %v; real child processes (SIGKILL at a random moment; two replicas with requests in flight at once)\n",
		*seed, *seed+uint64(*seeds)-1, *msgs, *txn)
	fmt.Fprintf(stdout, "two-replica runs do not replay exactly (the seed fixes the conversation, not the interleaving); rerun: %s procs -stores %s -seeds %d -seed %d\n", self(),
		*storeList, *seeds, *seed)
	fmt.Fprintln(stdout, "blamed: random kill, messages lost beyond the in-process model of the same kill on the reference store (store-blamed);")
	fmt.Fprintln(stdout, "two replicas, messages not delivered cleanly (one process delivers all). * = must pass")
	fmt.Fprintln(stdout, rep.GateLine())
	for _, r := range rep.Rows {
		if r.Failed() {
			fmt.Fprintf(stdout, "%s: %d blamed of %d messages, %d/%d runs failed, regenerated credentials %d\n",
				r.Heading(), r.Blamed, r.Messages, r.FailedSchedules, r.Schedules, r.RegeneratedCreds)
		}
	}
	fmt.Fprintln(stdout, rep.VerdictLine())
	return exitCode(rep), nil
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
