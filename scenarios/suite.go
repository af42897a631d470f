package scenarios

import (
	"context"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// PairResult is a (discipline, store, scenario) over many schedules.
type PairResult struct {
	Scenario   string
	Discipline harness.Discipline
	Store      string
	Schedules  int
	Failed     int
	Counts     harness.Counts
	// First is the first failing schedule, shrunk, and its result.
	First       *harness.Schedule
	FirstResult *harness.Result
	// Library is the first schedule whose protocol baseline failed a
	// message too (a failure of the protocol or libsignal), shrunk.
	Library       *harness.Schedule
	LibraryResult *harness.Result
}

// Config says how to run a pair.
type Config struct {
	Mode      harness.Mode
	Policy    Policy
	Seed      uint64
	Schedules int
	// ShrinkBudget bounds the runs spent shrinking the first failure (0: no shrink).
	ShrinkBudget int
	// Progress, if set, is called after each schedule (a progress bar).
	Progress func()
}

// SeedFor is the seed of schedule i of a run with base seed: the same for
// every pair, so pairs are compared on the same workloads.
func SeedFor(base uint64, i int) uint64 { return base*1_000_003 + uint64(i) }

// RunPair runs cfg.Schedules schedules of sc on (d, v).
func RunPair(ctx context.Context, sc Scenario, d harness.Discipline, v stores.Variant, cfg Config) (*PairResult, error) {
	pr := &PairResult{Scenario: sc.Name, Discipline: d, Store: v.Name}
	for i := range cfg.Schedules {
		seed := SeedFor(cfg.Seed, i)
		setup := sc.Setup(seed, d, v.Name)
		sched, res, err := harness.Execute(ctx, setup, v, cfg.Mode, NewGenerator(sc, cfg.Policy, seed))
		if err != nil {
			return nil, err
		}
		pr.Schedules++
		if cfg.Progress != nil {
			cfg.Progress()
		}
		pr.Counts.Add(res.Counts())
		if len(res.LibraryFailures) > 0 && pr.Library == nil {
			pr.Library, pr.LibraryResult = sched, res
		}
		if res.Failed() {
			pr.Failed++
			if pr.First == nil {
				pr.First, pr.FirstResult = sched, res
			}
		}
	}
	if pr.First != nil && cfg.ShrinkBudget > 0 && cfg.Mode == harness.Controlled {
		s, r, err := harness.Shrink(ctx, pr.First, v, cfg.Mode, cfg.ShrinkBudget)
		if err != nil {
			return nil, err
		}
		pr.First, pr.FirstResult = s, r
	}
	if pr.Library != nil && cfg.ShrinkBudget > 0 && cfg.Mode == harness.Controlled {
		keep := func(r *harness.Result) bool { return len(r.LibraryFailures) > 0 }
		s, r, err := harness.ShrinkKeeping(ctx, pr.Library, v, cfg.Mode, cfg.ShrinkBudget, keep)
		if err != nil {
			return nil, err
		}
		pr.Library, pr.LibraryResult = s, r
	}
	return pr, nil
}
