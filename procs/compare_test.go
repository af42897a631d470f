package procs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
)

// message is m with the given failed attempts, then one that succeeds
// unless lost.
func message(id string, lost bool, fails ...endpoint.Class) *harness.Message {
	m := &harness.Message{ID: id}
	for _, c := range fails {
		m.Attempts = append(m.Attempts, harness.Attempt{Class: c})
	}
	if !lost {
		m.Attempts = append(m.Attempts, harness.Attempt{OK: true})
	}
	return m
}

// JudgeKill is harness.Judge with the model of the kill point as the
// store's comparison and as what the kill explains: a class the model
// never had is blamed like a worse outcome, and the same outcome and
// class are not; what the model itself loses against the unkilled run is
// lost to the crash, not blamed; of two models, the one that explains
// the run is kept.
func TestJudgeKillBlamesClasses(t *testing.T) {
	run := func(ms ...*harness.Message) *Run { return &Run{Result: &harness.Result{Messages: ms}} }
	base := run(message("m1", false), message("m2", false), message("m3", false))
	model := run(message("m1", false), message("m2", false, endpoint.NoSession), message("m3", false))
	real := run(message("m1", false), message("m2", false, endpoint.BadMAC), message("m3", true, endpoint.OldCounter))
	JudgeKill(real, base, model)
	require.Equal(t, []string{"m2", "m3"}, real.StoreBlamed)
	require.Equal(t, []string{"m2", "m3"}, real.Blamed)
	require.True(t, real.Failed() && real.StoreJudged)

	same := run(message("m1", false), message("m2", false, endpoint.NoSession), message("m3", false))
	JudgeKill(same, base, model)
	require.Empty(t, same.StoreBlamed)
	require.Empty(t, same.Blamed)
	require.Equal(t, []string{"m2"}, same.LostToCrash, "the model loses it too: the kill's, not the store's")
	require.False(t, same.Failed())

	// A kill whose last write may have committed: the model that
	// explains the run wins.
	explains := run(message("m1", false), message("m2", false, endpoint.BadMAC), message("m3", true, endpoint.OldCounter))
	JudgeKill(real, base, model, explains)
	require.Empty(t, real.StoreBlamed)
	require.False(t, real.Failed())
}

// JudgeAlone blames every message not delivered cleanly (no baseline).
func TestJudgeAlone(t *testing.T) {
	r := &Run{Result: &harness.Result{Messages: []*harness.Message{message("m1", false), message("m2", false, endpoint.BadMAC), message("m3", true)}}}
	JudgeAlone(r)
	require.Equal(t, []string{"m2", "m3"}, r.Blamed)
	clean := &Run{Result: &harness.Result{Messages: []*harness.Message{message("m1", false)}}}
	JudgeAlone(clean)
	require.False(t, clean.Failed())
}
