package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/badmac/badmac/bench"
	"github.com/badmac/badmac/harness"
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
	shrinkBudget := fs.Int("shrink", 100, "runs to spend shrinking each first failure")
	brokenList := fs.String("broken", pairNames(bench.BrokenPairs), "discipline/store/scenario triples to time to a first failure ('' for none)")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	for name, v := range map[string]int{"-messages": *msgs, "-rounds": *rounds, "-schedules": *nsched, "-trials": *trials, "-limit": *limit} {
		if v < 1 {
			return 2, badInput("%s must be at least 1, got %d", name, v)
		}
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

	var raws []time.Duration
	rate := func(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
	rawRate := func() float64 { return rate(*msgs, bench.Median(raws)) }
	measureRaw := func() error {
		d, err := bench.Raw(ctx, *msgs)
		raws = append(raws, d)
		return err
	}
	fmt.Fprintf(stdout, "%s %s/%s, GOMAXPROCS %d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "throughput: %d one-way messages per conversation, median of %d rounds; harness = controlled run, locked discipline, setup included\n", *msgs, *rounds)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "store\tharness msg/s\tratio\t+baseline msg/s\tratio\tsched/s (reply)\t")
	for _, v := range vs {
		var runs, withBase []time.Duration
		for range *rounds {
			// Raw rounds interleave with the store's so both see the same
			// machine state.
			if err := measureRaw(); err != nil {
				return 2, err
			}
			t, err := bench.Harness(ctx, v, *msgs, true)
			if err != nil {
				return 2, err
			}
			runs = append(runs, t.Run)
			withBase = append(withBase, t.Run+t.Baseline)
		}
		sc, _ := scenarios.Lookup("reply")
		d, err := bench.Schedules(ctx, sc, harness.Locked, v, *nsched, 1)
		if err != nil {
			return 2, err
		}
		h, hb := rate(*msgs, bench.Median(runs)), rate(*msgs, bench.Median(withBase))
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.0f\t%.2f\t%.1f\t\n", v.Name, h, h/rawRate(), hb, hb/rawRate(), rate(*nsched, d))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "raw libsignal loop (two endpoints on the reference store, no harness): %.0f msg/s; ratio = harness / raw\n", rawRate())
	fmt.Fprintln(stdout, "+baseline: the run plus its protocol baseline; badmac run skips the baseline of schedules that delivered every message cleanly")

	if len(broken) > 0 {
		fmt.Fprintf(stdout, "\ntime to first failure: median of %d trials (seeds 1..%d), at most %d schedules each, shrink budget %d\n", *trials, *trials, *limit, *shrinkBudget)
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "pair\tfound\tschedules\ttime\tshrunk ops\t")
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
				fmt.Fprintf(tw, "%s\t0/%d\t-\t-\t-\t\n", b, *trials)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d/%d\t%d\t%s\t%d\t\n", b, found, *trials, bench.Median(ns), bench.Median(ts).Round(time.Millisecond), bench.Median(ops))
		}
		tw.Flush()
	}
	return 0, nil
}

func pairNames(bs []bench.Broken) string {
	var out []string
	for _, b := range bs {
		out = append(out, b.String())
	}
	return strings.Join(out, ",")
}
