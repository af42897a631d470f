package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/badmac/badmac/bench"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// benchCmd prints throughput per store against the raw libsignal loop,
// schedules per second, and time to the first failure of broken pairs.
func benchCmd(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlags("bench")
	def := defaultStores + ",sqlite"
	if os.Getenv("BADMAC_POSTGRES_DSN") != "" {
		def += ",postgres"
	}
	storeList := fs.String("stores", def, "stores to time (postgres is in the default when BADMAC_POSTGRES_DSN is set)")
	msgs := fs.Int("messages", 300, "messages per conversation")
	rounds := fs.Int("rounds", 3, "rounds of each throughput measurement (the median is printed)")
	nsched := fs.Int("schedules", 20, "schedules per store for schedules/second (scenario reply, locked)")
	trials := fs.Int("trials", 5, "trials per broken pair (different seeds)")
	limit := fs.Int("limit", 200, "schedules per trial before giving up on a broken pair")
	shrinkBudget := fs.Int("shrink", 200, "runs to spend shrinking each first failure")
	defaultRun := fs.Bool("default-run", true, "also time the default badmac run with -workers 1 and 2 and as 4 merged shards, and measure its counterexamples")
	defaultRounds := fs.Int("default-rounds", 2, "timings of the default run with each worker count, alternating (the fastest of each is printed)")
	profileFor := fs.Duration("profile", 5*time.Second, "CPU-profile each loop (raw, harness, +baseline) on the first store until it used this much CPU, and print where its CPU goes (0: skip)")
	brokenList := fs.String("broken", pairNames(bench.BrokenPairs), "discipline/store/scenario triples to time to a first failure ('' for none)")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	for name, v := range map[string]int{"-messages": *msgs, "-rounds": *rounds, "-schedules": *nsched, "-trials": *trials, "-limit": *limit, "-default-rounds": *defaultRounds} {
		if v < 1 {
			return 2, badInput("%s must be at least 1, got %d", name, v)
		}
	}
	if *profileFor < 0 {
		return 2, badInput("-profile must not be negative, got %s", *profileFor)
	}
	vs, err := lookupStores(*storeList)
	if err != nil {
		return 2, err
	}
	var broken []bench.Broken
	for _, s := range split(*brokenList) {
		p := strings.Split(s, "/")
		if len(p) != 3 {
			return 2, badInput("-broken wants discipline/store/scenario, got %q", s)
		}
		d, err := harness.ParseDiscipline(p[0])
		if err != nil {
			return 2, badInput("-broken: %v", err)
		}
		if _, err := stores.Lookup(p[1]); err != nil {
			return 2, badInput("-broken: %v", err)
		}
		if _, err := scenarios.Lookup(p[2]); err != nil {
			return 2, badInput("-broken: %v", err)
		}
		broken = append(broken, bench.Broken{Discipline: d, Store: p[1], Scenario: p[2]})
	}
	defer sqlstores.Shutdown()
	if err := probeStores(ctx, vs); err != nil {
		return 2, err
	}

	var raws, rawCPUs []time.Duration
	rate := func(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
	rawRate := func() float64 { return rate(*msgs, bench.Median(raws)) }
	measureRaw := func() (bench.Times, error) {
		t, err := bench.RawTimed(ctx, *msgs)
		raws, rawCPUs = append(raws, t.Wall), append(rawCPUs, t.CPU)
		return t, err
	}
	// cpuRatio is raw CPU / harness CPU per round, the median over rounds:
	// each round's two loops run back to back.
	cpuRatio := func(raw, h []time.Duration) string {
		var rs []int
		for i := range h {
			if h[i] <= 0 || raw[i] <= 0 {
				return "-"
			}
			rs = append(rs, int(1000*raw[i].Seconds()/h[i].Seconds()))
		}
		return fmt.Sprintf("%.2f", float64(bench.Median(rs))/1000)
	}
	fmt.Fprintf(stdout, "%s %s/%s, GOMAXPROCS %d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "throughput: %d one-way messages per conversation, median of %d rounds; harness = controlled run, locked discipline, setup included\n", *msgs, *rounds)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "store\tharness msg/s\tratio\tcpu ratio\t+baseline msg/s\tratio\tcpu ratio\tsched/s (reply, 1 worker)\treal client msg/s\tvs harness\tcpu\t")
	for _, v := range vs {
		var runs, withBase, rawCPU, runCPU, baseCPU, reals, realCPU []time.Duration
		for range *rounds {
			// The real whatsmeow Client on the same conversation, in
			// controlled mode, in the same round.
			rc, err := bench.RealClient(ctx, v, *msgs)
			if err != nil {
				return 2, err
			}
			reals, realCPU = append(reals, rc.Wall), append(realCPU, rc.CPU)
			// Raw rounds interleave with the store's so both see the same
			// machine state.
			rt, err := measureRaw()
			if err != nil {
				return 2, err
			}
			t, err := bench.Harness(ctx, v, *msgs, true)
			if err != nil {
				return 2, err
			}
			runs = append(runs, t.Run)
			withBase = append(withBase, t.Run+t.Baseline)
			rawCPU, runCPU, baseCPU = append(rawCPU, rt.CPU), append(runCPU, t.RunCPU), append(baseCPU, t.RunCPU+t.BaselineCPU)
		}
		sc, _ := scenarios.Lookup("reply")
		d, err := bench.Schedules(ctx, sc, harness.Locked, v, *nsched, 1)
		if err != nil {
			return 2, err
		}
		h, hb := rate(*msgs, bench.Median(runs)), rate(*msgs, bench.Median(withBase))
		rc := rate(*msgs, bench.Median(reals))
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%s\t%.0f\t%.2f\t%s\t%.1f\t%.0f\t%.3f\t%s\t\n", v.Name, h, h/rawRate(), cpuRatio(rawCPU, runCPU),
			hb, hb/rawRate(), cpuRatio(rawCPU, baseCPU), rate(*nsched, d), rc, rc/h, cpuRatio(runCPU, realCPU))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "raw libsignal loop (two endpoints on the reference store, no harness): %.0f msg/s, %.0f msg/CPU-s; ratio = harness / raw in wall time, cpu ratio in process CPU time\n",
		rawRate(), rate(*msgs, bench.Median(rawCPUs)))
	fmt.Fprintln(stdout, "+baseline: the run plus its protocol baseline; badmac run skips the baseline of schedules that delivered every message cleanly")
	fmt.Fprintln(stdout, "real client: the same conversation on the unmodified whatsmeow Client against the loopback server, controlled mode (every store call parked and stepped), setup and login included; vs harness = real client msg/s / harness msg/s, cpu = harness CPU / real client CPU")
	fmt.Fprintln(stdout, "both loops run the device's side as whatsmeow does (JSON records); the raw loop's sender is a whatsmeow endpoint too, the harness's peers keep their sessions as structures (no JSON: not under test)")

	if len(broken) > 0 {
		fmt.Fprintf(stdout, "\ntime to first failure: median of %d trials (seeds 1..%d), at most %d schedules each, shrink budget %d\n", *trials, *trials, *limit, *shrinkBudget)
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "pair\tfound\tschedules\ttime\tshrunk ops median\tmax\t")
		for _, b := range broken {
			var ns, ops []int
			var ts []time.Duration
			found := 0
			for t := range *trials {
				f, err := bench.HuntFirstFailure(ctx, b, uint64(t+1), *limit, *shrinkBudget)
				if err != nil {
					return 2, fmt.Errorf("%s: %w", b, err)
				}
				if f.Found {
					found++
					ns, ts, ops = append(ns, f.Schedules), append(ts, f.Time), append(ops, f.ShrunkOps)
				}
			}
			if found == 0 {
				fmt.Fprintf(tw, "%s\t0/%d\t-\t-\t-\t-\t\n", b, *trials)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d/%d\t%d\t%s\t%d\t%d\t\n", b, found, *trials, bench.Median(ns), bench.Median(ts).Round(time.Millisecond), bench.Median(ops), slices.Max(ops))
		}
		tw.Flush()
		fmt.Fprintf(stdout, "hand-written minimal Bad MAC (harness/testdata/badmac-minimal.txt): %d ops\n", harness.MinimalBadMACOps())
	}
	if *profileFor > 0 {
		if err := benchProfile(ctx, stdout, vs[0], *msgs, *profileFor); err != nil {
			return 2, err
		}
	}
	if *defaultRun {
		if err := benchDefaultRun(ctx, stdout, *defaultRounds); err != nil {
			return 2, err
		}
	}
	return 0, nil
}

// benchProfile prints where the CPU of the raw loop, the harness run and
// the run with its baseline goes, per message and category, from a CPU
// profile of each taken here, and what the harness spends beyond the raw
// loop by category.
func benchProfile(ctx context.Context, stdout io.Writer, v stores.Variant, msgs int, d time.Duration) error {
	p, err := bench.ProfileLoops(ctx, v, msgs, d)
	if err != nil {
		return fmt.Errorf("profile on %s: %w", v.Name, err)
	}
	us := func(t time.Duration) string { return fmt.Sprintf("%.1f", float64(t)/float64(time.Microsecond)) }
	fmt.Fprintf(stdout, "\nwhere the CPU goes, µs per message (store %s; a CPU profile of each loop over at least %s of CPU: %d, %d and %d messages, %d, %d and %d samples):\n",
		v.Name, d, p.Raw.Messages, p.Run.Messages, p.WithBaseline.Messages, p.Raw.Samples, p.Run.Samples, p.WithBaseline.Samples)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "category\traw loop\tharness\t+baseline\tharness - raw\t")
	type diff struct {
		cat string
		d   time.Duration
	}
	var diffs []diff
	for _, c := range bench.Categories {
		r, h, b := p.Raw.PerMessage(c), p.Run.PerMessage(c), p.WithBaseline.PerMessage(c)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%+.1f\t\n", c, us(r), us(h), us(b), float64(h-r)/float64(time.Microsecond))
		diffs = append(diffs, diff{c, h - r})
	}
	rt, ht, bt := p.Raw.Total/time.Duration(max(p.Raw.Messages, 1)), p.Run.Total/time.Duration(max(p.Run.Messages, 1)), p.WithBaseline.Total/time.Duration(max(p.WithBaseline.Messages, 1))
	fmt.Fprintf(tw, "total\t%s\t%s\t%s\t%+.1f\t\n", us(rt), us(ht), us(bt), float64(ht-rt)/float64(time.Microsecond))
	tw.Flush()
	slices.SortStableFunc(diffs, func(a, b diff) int { return cmp.Compare(b.d, a.d) })
	var parts []string
	for _, x := range diffs {
		if x.d != 0 {
			parts = append(parts, fmt.Sprintf("%s %+.1f", x.cat, float64(x.d)/float64(time.Microsecond)))
		}
	}
	fmt.Fprintf(stdout, "where the rest goes (harness - raw loop, µs/msg, largest first): %s\n", strings.Join(parts, ", "))
	if ht > 0 && bt > 0 {
		fmt.Fprintf(stdout, "profiled CPU ratios: harness %.2f, +baseline %.2f of the raw loop\n", float64(rt)/float64(ht), float64(rt)/float64(bt))
	}
	return nil
}

func medianFloat(xs []float64) float64 {
	ms := make([]int, len(xs))
	for i, x := range xs {
		ms[i] = int(x * 1e6)
	}
	return float64(bench.Median(ms)) / 1e6
}

// loadAverage is the 1-minute load average (Linux), or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func pairNames(bs []bench.Broken) string {
	var out []string
	for _, b := range bs {
		out = append(out, b.String())
	}
	return strings.Join(out, ",")
}

// lastRunPool is the worker pool of the last runCmd, for bench to read
// how busy it was kept.
var lastRunPool atomic.Pointer[harness.Pool]

// benchDefaultRun times the default `badmac run` (every flag at its
// default, so its counterexamples are the ones a user gets) with one worker
// and with two, checks that their stdout is the same byte for byte, runs it
// again as 4 shards merged and checks the table and exit code are the
// unsharded run's, and measures the saved counterexamples.
func benchDefaultRun(ctx context.Context, stdout io.Writer, rounds int) error {
	dir, err := os.MkdirTemp("", "badmac-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "badmac-failures")
	var util float64
	type timing struct {
		code      int
		out       string
		wall, cpu time.Duration
	}
	runOnce := func(extra ...string) (timing, error) {
		var b bytes.Buffer
		stores.ResetKeyMemo() // every timed run starts cold
		runtime.GC()          // and without the last run's garbage
		start, cpu := time.Now(), bench.ProcessCPU()
		code, err := runCmd(ctx, append([]string{"-out", out}, extra...), &b, io.Discard)
		if err != nil {
			return timing{}, fmt.Errorf("default run %v: %w", extra, err)
		}
		t := timing{code: code, out: b.String(), wall: time.Since(start), cpu: bench.ProcessCPU() - cpu}
		if p := lastRunPool.Load(); p != nil {
			util = p.Utilisation()
		}
		return t, nil
	}
	// Rounds alternate one worker and two, so both see the same spells of
	// load from other jobs; the fastest of each is the least disturbed.
	var best [2]timing
	var cpus [2][]time.Duration
	var utils []float64
	same := true
	for r := range rounds {
		for i, w := range []string{"1", "2"} {
			t, err := runOnce("-workers", w)
			if err != nil {
				return err
			}
			if i == 1 {
				utils = append(utils, util)
			}
			cpus[i] = append(cpus[i], t.cpu)
			if r == 0 || t.wall < best[i].wall {
				best[i] = t
			}
			if t.out != best[0].out {
				same = false
			}
		}
	}
	t1, t2 := best[0], best[1]
	fmt.Fprintf(stdout, "\ndefault badmac run (fastest of %d each, alternating): -workers 1 %s, -workers 2 %s: %.2fx; stdout identical: %v, exit %d and %d\n",
		rounds, t1.wall.Round(10*time.Millisecond), t2.wall.Round(10*time.Millisecond), t1.wall.Seconds()/t2.wall.Seconds(), same, t1.code, t2.code)
	c1, c2 := bench.Median(cpus[0]), bench.Median(cpus[1])
	fmt.Fprintf(stdout, "process CPU (median): -workers 1 %s, -workers 2 %s (%+.0f%%); -workers 2 held both pool tokens %.0f%% of its wall time (median); load average now %s\n",
		c1.Round(10*time.Millisecond), c2.Round(10*time.Millisecond), 100*(c2.Seconds()/c1.Seconds()-1), 100*medianFloat(utils), loadAverage())
	out2 := t2.out

	files, err := filepath.Glob(filepath.Join(out, "*.txt"))
	if err != nil {
		return err
	}
	var lens []int
	for _, f := range files {
		s, err := readSchedule(f)
		if err != nil {
			return err
		}
		lens = append(lens, len(s.Ops))
	}
	if len(lens) > 0 {
		fmt.Fprintf(stdout, "its %d saved counterexamples: shrunk ops median %d, max %d (hand-written minimal Bad MAC: %d)\n",
			len(lens), bench.Median(lens), slices.Max(lens), harness.MinimalBadMACOps())
	}

	var shards []*reports.Report
	var names []string
	start := time.Now()
	for k := 1; k <= 4; k++ {
		t, err := runOnce("-workers", "2", "-json", "-shard", fmt.Sprintf("%d/4", k))
		if err != nil {
			return err
		}
		js := t.out
		var rep reports.Report
		if err := json.Unmarshal([]byte(js), &rep); err != nil {
			return fmt.Errorf("shard %d/4 report: %w", k, err)
		}
		shards, names = append(shards, &rep), append(names, fmt.Sprintf("shard %d/4", k))
	}
	merged, err := mergeReports(names, shards)
	if err != nil {
		return err
	}
	var table bytes.Buffer
	if err := reports.WriteTable(&table, merged, reports.TableOptions{}); err != nil {
		return err
	}
	mergedCode := exitCode(merged)
	fmt.Fprintf(stdout, "4 shards (-workers 2 each, one after another) merged: %s; table identical: %v, exit %d\n",
		time.Since(start).Round(10*time.Millisecond), table.String() == out2, mergedCode)

	return nil
}
