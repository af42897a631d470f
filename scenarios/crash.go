package scenarios

import (
	"context"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// Conversation generates one explicit schedule of sc on the reference store
// with the given seed: the fixed workload a crash enumeration replays on
// every store.
func Conversation(ctx context.Context, sc Scenario, d harness.Discipline, policy Policy, seed uint64) (*harness.Schedule, error) {
	sc.Crash = "" // the conversation itself runs without crashes
	setup := sc.Setup(seed, d, "reference")
	sched, _, err := harness.Execute(ctx, setup, stores.MustLookup("reference"), harness.Controlled, NewGenerator(sc, policy, seed))
	return sched, err
}

// CrashPoints enumerates every write point of sc's conversation (seed) on
// v: the `crash` scenario.
func CrashPoints(ctx context.Context, sc Scenario, d harness.Discipline, v stores.Variant, seed uint64, opt harness.CrashOptions) (*harness.CrashReport, error) {
	base, err := Conversation(ctx, sc, d, Random, seed)
	if err != nil {
		return nil, err
	}
	return harness.EnumerateCrashes(ctx, base, v, opt)
}
