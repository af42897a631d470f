package harness_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// Free mode: real goroutines and locks (run with -race). No plaintext comes
// out wrong, every inbound message reaches the device (the drain does not
// leave work behind when goroutines finish out of order), and the correct
// pair stays clean.
func TestFreeMode(t *testing.T) {
	sc, err := scenarios.Lookup("multi")
	require.NoError(t, err)
	for _, pair := range []struct {
		d     harness.Discipline
		store string
	}{{harness.Concurrent, "mutexed"}, {harness.Locked, "mutexed"}, {harness.Whatsmeow, "cached"}} {
		v := stores.MustLookup(pair.store)
		for seed := uint64(1); seed <= 10; seed++ {
			_, res, err := harness.Execute(context.Background(), sc.Setup(seed, pair.d, v.Name), v, harness.Free,
				scenarios.NewGenerator(sc, scenarios.Random, seed))
			require.NoError(t, err)
			require.NotEmpty(t, res.Messages)
			for _, m := range res.Messages {
				require.NotEqual(t, harness.Wrong, m.Outcome(), "%s/%s seed %d: %s", pair.d, pair.store, seed, m.ID)
				if m.Dir == harness.In {
					require.NotEmpty(t, m.Attempts, "%s/%s seed %d: %s never reached the device", pair.d, pair.store, seed, m.ID)
				}
			}
			if pair.d == harness.Locked {
				require.False(t, res.Failed(), "locked/mutexed in free mode, seed %d: %s", seed, res.Summary())
			}
		}
	}
}
