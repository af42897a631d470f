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
