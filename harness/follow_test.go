package harness

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Schedules the old same-client run store-blamed mutexed for (every call
// atomic, reads return the last write): it replayed the candidate's step
// ops with a mapping of its own and drained and stopped in its own order,
// so the reference store saw another interleaving. Now it follows what each
// step, stop and drain did to each task, and mutexed is blamed for nothing;
// the client's own losses stay pair-blamed.
func TestSameClientFollowsTheInterleaving(t *testing.T) {
	files, err := filepath.Glob("testdata/sameclient/*.txt")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s := parseFile(t, f)
			require.Equal(t, "mutexed", s.Store)
			res, err := Replay(context.Background(), s, Controlled)
			require.NoError(t, err)
			require.True(t, res.StoreJudged)
			require.Empty(t, res.StoreBlamed, res.HistoryText())
			require.NotEmpty(t, res.Blamed, "the client's own loss is gone: the schedule no longer shows anything")
		})
	}
}
