package scenarios

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// TornModes samples the torn-write cases at a crash point with n pending
// writes: every write kept, and each of up to four writes (first, last and
// two between) torn while the others are kept.
func tornModes(n int) []string {
	if n == 0 {
		return []string{""}
	}
	out := []string{strings.Repeat("k", n)}
	seen := map[int]bool{}
	for _, i := range []int{0, n / 3, 2 * n / 3, n - 1} {
		if seen[i] {
			continue
		}
		seen[i] = true
		b := []byte(strings.Repeat("k", n))
		b[i] = 'g'
		out = append(out, string(b))
	}
	return out
}

func TestTornWrites(t *testing.T) {
	opt := harness.CrashOptions{Modes: tornModes, Every: 2}
	atomic := crashPoints(t, "files-atomic", opt)
	if len(atomic.Failed) != 0 {
		t.Errorf("files-atomic blamed under torn writes:\n%s", atomic.Text(true))
	}
	for _, p := range atomic.Points {
		if p.Pending != 0 {
			t.Errorf("files-atomic left %d unsynced writes at %s", p.Pending, p.Location)
		}
	}
	inPlace := crashPoints(t, "files", opt)
	torn, regen, badmac := 0, 0, 0
	for _, p := range inPlace.Failed {
		if !strings.Contains(p.Mode, "g") {
			continue
		}
		torn++
		if p.Result.RegeneratedCreds {
			regen++
		}
		if p.Result.Counts().Failures["BadMAC"] > 0 {
			badmac++
		}
	}
	t.Logf("files: %d runs, %d blamed with a torn write: %d regenerated creds, %d Bad MAC", inPlace.Runs, torn, regen, badmac)
	if regen+badmac == 0 {
		t.Fatalf("files: no torn write gave regenerated creds or Bad MAC:\n%s", inPlace.Text(false))
	}
}

// Restart invariant: one-time prekeys the device uploaded and the server has
// not handed out must still be in the store after a restart. Torn in-place
// file writes lose some; atomic files and the reference store never do.
func TestUnusedPreKeysSurviveRestart(t *testing.T) {
	sc, err := Lookup("torn")
	require.NoError(t, err)
	cfg := Config{Mode: harness.Controlled, Policy: Random, Seed: 1, Schedules: 8}
	lost := map[string]int{}
	for _, st := range []string{"reference", "files-atomic", "files"} {
		pr, err := RunPair(context.Background(), sc, harness.Locked, stores.MustLookup(st), cfg)
		require.NoError(t, err)
		lost[st] = pr.Counts.LostPreKeys
	}
	t.Logf("unused prekeys lost over %d torn schedules: %v", cfg.Schedules, lost)
	require.Zero(t, lost["reference"])
	require.Zero(t, lost["files-atomic"])
	require.Positive(t, lost["files"])
}
