package harness_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// Free mode: real goroutines and locks (run with -race). Every message must
// end in exactly one outcome, and the correct pair stays clean.
func TestFreeModeAccounting(t *testing.T) {
	sc, err := scenarios.Lookup("multi")
	require.NoError(t, err)
	for _, pair := range []struct {
		d     harness.Discipline
		store string
	}{{harness.Concurrent, "mutexed"}, {harness.Locked, "mutexed"}, {harness.Whatsmeow, "cached"}} {
		pr, err := scenarios.RunPair(context.Background(), sc, pair.d, stores.MustLookup(pair.store),
			scenarios.Config{Mode: harness.Free, Policy: scenarios.Random, Seed: 5, Schedules: 10})
		require.NoError(t, err)
		c := pr.Counts
		require.Positive(t, c.Messages)
		require.Equal(t, c.Messages, c.Delivered+c.Recovered+c.Duplicates+c.Lost+c.Wrong)
		require.Zero(t, c.Wrong, "a plaintext came out wrong")
		if pair.d == harness.Locked {
			require.Zero(t, pr.Failed, "locked/mutexed in free mode: %v", pr.FirstResult)
		}
	}
}
