package scenarios

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// PairResult is a (discipline, store, scenario) over many schedules.
type PairResult struct {
	// Device is the device under test's name; empty for the in-process
	// model (harness.Model).
	Device     string
	Scenario   string
	Discipline harness.Discipline
	Store      string
	Schedules  int
	Failed     int
	Counts     harness.Counts
	// First is the lowest-numbered failing schedule, shrunk, and its
	// result; FirstIndex is its number (-1: none failed). The choice does
	// not depend on workers or shards, so shards merge to the same row.
	First       *harness.Schedule
	FirstResult *harness.Result
	FirstIndex  int
	// Library is the lowest-numbered schedule whose protocol baseline
	// failed a message too (a failure of the protocol or libsignal),
	// shrunk keeping that, and its result.
	Library       *harness.Schedule
	LibraryResult *harness.Result
	LibraryIndex  int
}

// Config says how to run a pair.
type Config struct {
	Mode      harness.Mode
	Policy    Policy
	Seed      uint64
	Schedules int
	// ShrinkBudget bounds the runs spent shrinking the first failure (0: no shrink).
	ShrinkBudget int
	// DeviceShrinkBudget, if > 0, is ShrinkBudget for the rows of a
	// device other than the model (each candidate a run on the device).
	DeviceShrinkBudget int
	// ShrinkTime, if > 0, also bounds each shrink by time; the output then
	// depends on the machine's speed.
	ShrinkTime time.Duration
	// Workers is how many schedules run at once (0: GOMAXPROCS); Pool, if
	// set, is shared with other pairs and wins over Workers. Results are
	// merged in schedule order: the output is the same for any count.
	Workers int
	Pool    *harness.Pool
	// Shard K of Shards (0 ≤ K < Shards) runs only the schedules i with
	// i mod Shards = K; Shards 0 or 1 runs them all.
	Shard, Shards int
	// Progress, if set, is called after each schedule (a progress bar),
	// from one goroutine at a time.
	Progress func()
}

// SeedFor is the seed of schedule i of a run with base seed: the same for
// every pair, so pairs are compared on the same workloads.
func SeedFor(base uint64, i int) uint64 { return base*1_000_003 + uint64(i) }

// Indices are the schedule numbers cfg runs for one pair, in order.
func (cfg Config) Indices() []int {
	var out []int
	for i := range cfg.Schedules {
		if cfg.Shards <= 1 || i%cfg.Shards == cfg.Shard {
			out = append(out, i)
		}
	}
	return out
}

// outcome is what a schedule leaves for the merge: its counts always, the
// schedule and result only while it may still be the first failure.
type outcome struct {
	counts  harness.Counts
	failed  bool
	library bool // the baseline failed a message too
	sched   *harness.Schedule
	res     *harness.Result
	err     error
	done    bool
}

// RunPair runs cfg's schedules of sc on (d, v), cfg.Workers at a time.
func RunPair(ctx context.Context, sc Scenario, d harness.Discipline, v stores.Variant, cfg Config) (*PairResult, error) {
	prs, err := RunPairs(ctx, []Pair{{Scenario: sc, Discipline: d, Variant: v}}, cfg)
	if err != nil {
		return nil, err
	}
	return prs[0], nil
}

// Pair names a row: scenario, discipline and store, and the device under
// test (nil: the in-process model over Variant). A device row runs the same
// scenario's schedules; Discipline is then what its protocol baseline runs.
type Pair struct {
	Scenario   Scenario
	Discipline harness.Discipline
	Variant    stores.Variant
	Device     harness.Device
}

// Name is the row's name: discipline/store/scenario, the device's name in
// place of the discipline for a device row.
func (p Pair) Name() string {
	who := string(p.Discipline)
	if p.Device != nil {
		who = p.Device.Name()
	}
	return who + "/" + p.Variant.Name + "/" + p.Scenario.Name
}

func (p Pair) device() harness.Device {
	if p.Device == nil {
		return harness.Model{Variant: p.Variant}
	}
	return p.Device
}

// setup is schedule seed's header for the pair.
func (p Pair) setup(seed uint64) *harness.Schedule {
	s := p.Scenario.Setup(seed, p.Discipline, p.Variant.Name)
	if p.Device != nil {
		s.Device = p.Device.Name()
	}
	return s
}

// RunPairs runs every pair, several at once on one pool of cfg.Workers
// (or cfg.Pool), and returns the results in the order given: the output is
// the same as running them one after another. On an error the other pairs
// are cancelled, and the error returned is the first that happened, not
// the first row's (which may only say it was cancelled).
func RunPairs(ctx context.Context, pairs []Pair, cfg Config) ([]*PairResult, error) {
	if cfg.Pool == nil {
		cfg.Pool = harness.NewPool(cfg.Workers)
	}
	if cfg.Progress != nil {
		var mu sync.Mutex
		p := cfg.Progress
		cfg.Progress = func() { mu.Lock(); p(); mu.Unlock() }
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]*PairResult, len(pairs))
	var (
		errMu sync.Mutex
		first error
	)
	// Pairs start in order, a few more than there are tokens, so that a
	// pair's shrink (one run at a time) leaves room for the next pair's
	// schedules without every pair's memory being live at once.
	gate := make(chan struct{}, 2*cfg.Pool.Size())
	var wg sync.WaitGroup
	for i, p := range pairs {
		select {
		case gate <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-gate }()
			var err error
			if out[i], err = runPair(ctx, p, cfg); err != nil {
				errMu.Lock()
				if first == nil {
					first = fmt.Errorf("%s: %w", p.Name(), err)
				}
				errMu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func runPair(ctx context.Context, p Pair, cfg Config) (*PairResult, error) {
	sc, d, v := p.Scenario, p.Discipline, p.Variant
	pr := &PairResult{Scenario: sc.Name, Discipline: d, Store: v.Name, FirstIndex: -1}
	dev := p.device()
	if p.Device != nil {
		pr.Device = dev.Name()
	}
	idx := cfg.Indices()
	outs := make([]outcome, len(idx))
	var (
		mu    sync.Mutex
		next  int
		first = len(idx) // lowest failing position so far: later ones drop their schedules
		lib   = len(idx) // lowest position with a library failure
		libS  *harness.Schedule
		libR  *harness.Result
	)
	var wg sync.WaitGroup
	for range min(cfg.Pool.Size(), len(idx)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				k := next
				next++
				mu.Unlock()
				if k >= len(idx) || ctx.Err() != nil {
					return
				}
				if err := cfg.Pool.Acquire(ctx); err != nil {
					outs[k].err = err
					return
				}
				seed := SeedFor(cfg.Seed, idx[k])
				sched, res, err := harness.RunOn(ctx, dev, p.setup(seed), cfg.Mode, NewGenerator(sc, cfg.Policy, seed))
				cfg.Pool.Release()
				o := &outs[k]
				if err != nil {
					o.err = err
					return
				}
				o.counts, o.failed, o.done = res.Counts(), res.Failed(), true
				mu.Lock()
				if len(res.LibraryFailures) > 0 && k < lib {
					lib, libS, libR = k, sched, res
				}
				if o.failed && k < first {
					if first < len(idx) {
						outs[first].sched, outs[first].res = nil, nil
					}
					first = k
					o.sched, o.res = sched, res
				}
				mu.Unlock()
				if cfg.Progress != nil {
					cfg.Progress()
				}
			}
		}()
	}
	wg.Wait()
	for _, cancelled := range []bool{false, true} {
		for _, o := range outs {
			if o.err != nil && errors.Is(o.err, context.Canceled) == cancelled {
				return nil, o.err // the lowest-numbered schedule's error, a cancellation last
			}
		}
	}
	for k, o := range outs {
		if !o.done {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("schedule %d did not run", idx[k])
		}
		pr.Schedules++
		pr.Counts.Add(o.counts)
		if o.failed {
			pr.Failed++
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if first < len(idx) {
		pr.First, pr.FirstResult, pr.FirstIndex = outs[first].sched, outs[first].res, idx[first]
	}
	if lib < len(idx) {
		pr.Library, pr.LibraryResult, pr.LibraryIndex = libS, libR, idx[lib]
	}
	budget := cfg.ShrinkBudget
	if p.Device != nil && cfg.DeviceShrinkBudget > 0 {
		budget = cfg.DeviceShrinkBudget
	}
	if pr.First != nil && budget > 0 && cfg.Mode == harness.Controlled {
		s, r, err := harness.ShrinkWith(ctx, pr.First, v, cfg.Mode, harness.ShrinkOptions{
			Budget: budget, Time: cfg.ShrinkTime, Pool: cfg.Pool, Known: pr.FirstResult, Device: dev})
		if err != nil {
			return nil, err
		}
		pr.First, pr.FirstResult = s, r
	}
	if pr.Library != nil && budget > 0 && cfg.Mode == harness.Controlled {
		keep := func(r *harness.Result) bool { return len(r.LibraryFailures) > 0 }
		s, r, err := harness.ShrinkKeeping(ctx, pr.Library, v, cfg.Mode, harness.ShrinkOptions{
			Budget: budget, Time: cfg.ShrinkTime, Pool: cfg.Pool, Known: pr.LibraryResult, Device: dev}, keep)
		if err != nil {
			return nil, err
		}
		pr.Library, pr.LibraryResult = s, r
	}
	return pr, nil
}
