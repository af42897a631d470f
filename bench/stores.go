package bench

import (
	"context"
	"os"
	"time"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// StoreTargets are the backends whose per-message cost is compared with
// the in-memory reference: reference first, then sqlite, then postgres
// when BADMAC_POSTGRES_DSN is set.
func StoreTargets() []string {
	t := []string{"reference", "sqlite"}
	if os.Getenv(sqlstores.PostgresEnv) != "" {
		t = append(t, "postgres")
	}
	return t
}

// StoreScenario is the workload StorePerMessage runs: the bot replies
// while receiving, under the correct (locked) client, so that every
// message costs a full load→decrypt/encrypt→store on the backend.
const StoreScenario = "reply"

// StorePerMessage runs schedules schedules of StoreScenario (seeds 1..)
// on the named store through the whole harness (controlled scheduler,
// oracle, serial baseline on the reference store included) and returns
// the wall time and the messages the oracle followed. Divide one
// backend's time/messages by the reference's from the same process for
// the ratio.
func StorePerMessage(ctx context.Context, store string, schedules int) (time.Duration, int, error) {
	v, err := stores.Lookup(store)
	if err != nil {
		return 0, 0, err
	}
	sc, err := scenarios.Lookup(StoreScenario)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	pr, err := scenarios.RunPair(ctx, sc, harness.Locked, v, scenarios.Config{
		Mode: harness.Controlled, Policy: scenarios.Random, Seed: 1, Schedules: schedules})
	if err != nil {
		return 0, 0, err
	}
	return time.Since(start), pr.Counts.Messages, nil
}
