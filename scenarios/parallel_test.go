package scenarios

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// Worker count does not change a pair's result: counts, the failing
// schedule chosen and its shrunk form are the same for 1, 2 and 3 workers,
// and 4 shards add up to the whole.
func TestRunPairWorkersAndShards(t *testing.T) {
	ctx := context.Background()
	sc := scenario(t, "reply")
	v := stores.MustLookup("mutexed")
	cfg := Config{Mode: harness.Controlled, Policy: Random, Seed: 5, Schedules: 8, ShrinkBudget: 40}
	var want *PairResult
	for _, w := range []int{1, 2, 3} {
		c := cfg
		c.Workers = w
		pr, err := RunPair(ctx, sc, harness.Concurrent, v, c)
		require.NoError(t, err)
		require.NotNil(t, pr.First, "concurrent/mutexed/reply must fail in 8 schedules")
		if want == nil {
			want = pr
			continue
		}
		require.Equal(t, want.Counts, pr.Counts, "workers %d", w)
		require.Equal(t, want.Failed, pr.Failed)
		require.Equal(t, want.FirstIndex, pr.FirstIndex)
		require.Equal(t, want.First.String(), pr.First.String(), "workers %d: another counterexample", w)
		require.Equal(t, want.FirstResult.HistoryText(), pr.FirstResult.HistoryText())
	}
	var sum harness.Counts
	failed, schedules, first := 0, 0, -1
	for k := range 4 {
		c := cfg
		c.Workers, c.Shard, c.Shards = 2, k, 4
		pr, err := RunPair(ctx, sc, harness.Concurrent, v, c)
		require.NoError(t, err)
		sum.Add(pr.Counts)
		failed += pr.Failed
		schedules += pr.Schedules
		if pr.FirstIndex >= 0 && (first < 0 || pr.FirstIndex < first) {
			first = pr.FirstIndex
			require.Equal(t, want.First.String(), pr.First.String(), "shard %d/4 shrank the same schedule differently", k+1)
		}
	}
	require.Equal(t, want.Counts, sum)
	require.Equal(t, want.Failed, failed)
	require.Equal(t, cfg.Schedules, schedules)
	require.Equal(t, want.FirstIndex, first)
}

// RunPairs runs rows at once on one pool and returns what RunPair returns
// for each row alone.
func TestRunPairsSameAsOneByOne(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Mode: harness.Controlled, Policy: Random, Seed: 2, Schedules: 3, ShrinkBudget: 10, Workers: 2}
	pairs := []Pair{
		{scenario(t, "reply"), harness.Concurrent, stores.MustLookup("reference"), nil},
		{scenario(t, "burst"), harness.Locked, stores.MustLookup("mutexed"), nil},
		{scenario(t, "reorder"), harness.Whatsmeow, stores.MustLookup("uncached"), nil},
	}
	got, err := RunPairs(ctx, pairs, cfg)
	require.NoError(t, err)
	require.Len(t, got, len(pairs))
	for i, p := range pairs {
		want, err := RunPair(ctx, p.Scenario, p.Discipline, p.Variant, cfg)
		require.NoError(t, err)
		require.Equal(t, want.Scenario+want.Store, got[i].Scenario+got[i].Store, "row %d out of order", i)
		require.Equal(t, want.Counts, got[i].Counts)
		require.Equal(t, want.FirstIndex, got[i].FirstIndex)
		if want.First != nil {
			require.Equal(t, want.First.String(), got[i].First.String())
		}
	}
}
