package storetest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/storetest"
	_ "github.com/badmac/badmac/storetest/client" // Options.Client: the real whatsmeow Client
)

// dropBatches is a store whose PutManySessions does nothing: whatsmeow's
// SendMessage writes its session cache back through it, so every reply
// after the first reuses a message key.
type dropBatches struct{ stores.All }

func (dropBatches) PutManySessions(context.Context, map[string][]byte) error { return nil }

func droppingBatches() (stores.Set, error) {
	set, err := reference()
	if err != nil {
		return set, err
	}
	return stores.SetOf(dropBatches{set.Sessions.(stores.All)}), nil
}

// Options.Client runs the same scenarios on the real whatsmeow Client over
// the user's store: the reference store passes with inline replies, and
// the scenarios the client cannot run are named, not passed silently.
func TestClientReferencePasses(t *testing.T) {
	rec := &record{}
	storetest.Check(rec, reference, storetest.Options{Client: true, ClientSchedules: 4, Scenarios: []string{"reply", "burst", "multi"},
		Schedules: 2, FreeSchedules: -1, SkipConformance: true})
	require.Empty(t, rec.errors)
	logs := strings.Join(rec.logs, "\n")
	require.Contains(t, logs, "reply (real whatsmeow Client, inline replies): 4 schedules")
	require.Contains(t, logs, "burst (real whatsmeow Client, async replies): 4 schedules")
	require.Contains(t, logs, "not run on the real client: multi (contact alice:2: one device per contact")
	t.Logf("%s", logs)
}

// Options.Client with only scenarios the real client cannot run fails the
// test: a discipline asked for and never run is not a pass.
func TestClientNothingToRunFails(t *testing.T) {
	rec := &record{}
	storetest.Check(rec, reference, storetest.Options{Client: true, Scenarios: []string{"multi"},
		Schedules: 1, FreeSchedules: -1, SkipConformance: true})
	require.Len(t, rec.errors, 1, "%q", rec.errors)
	require.Contains(t, rec.errors[0], "none of the scenarios runs on the real client: multi (")
}

// A store that drops PutManySessions fails on the real client with inline
// replies, reported like the other disciplines' failures with the saved
// schedule, and the replay command runs it on the real client again.
func TestClientCatchesDroppedBatches(t *testing.T) {
	rec := &record{}
	storetest.Check(rec, droppingBatches, storetest.Options{Client: true, ClientSchedules: 3, Scenarios: []string{"reply"},
		Schedules: 2, FreeSchedules: -1, ShrinkBudget: -1, SkipConformance: true})
	var msg string
	for _, e := range rec.errors {
		if strings.Contains(e, "real whatsmeow Client, inline replies") {
			msg = e
		}
	}
	require.NotEmpty(t, msg, "no real-client failure among %q", rec.errors)
	require.Contains(t, msg, "what production would show")
	require.Contains(t, msg, "device client-inline")
	require.Contains(t, msg, storetest.ReplayEnv+"=")
	t.Logf("%s", msg)
	path := strings.Fields(strings.SplitN(msg, storetest.ReplayEnv+"=", 2)[1])[0]
	defer rec.removeReplays()

	t.Setenv(storetest.ReplayEnv, path)
	again := &record{}
	storetest.Check(again, droppingBatches, storetest.Options{})
	require.Len(t, again.errors, 1, "the replay on the real client must fail again")
	require.Contains(t, again.errors[0], "on the real client fails")
	require.Contains(t, again.errors[0], "PutManySessions dropped alice:0")
}
