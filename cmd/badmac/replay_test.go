package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Strict replay (issue 16 §6): a schedule naming an unknown scenario,
// store, device or discipline, an op on a message never sent, or an op its
// scenario cannot produce is bad input: exit 2, one line naming the file
// and the line. Before, `scenario nosuch` and `deliver m9` for a message
// never sent replayed as "PASS: no blamed failures", exit 0.
func TestReplayIsStrict(t *testing.T) {
	head := func(scenario, store string) string {
		return "badmac schedule v1\nseed 1\nscenario " + scenario + "\ndiscipline locked\nstore " + store + "\ncontacts alice:1\nops\n"
	}
	dir := t.TempDir()
	for _, c := range []struct{ name, text, want string }{
		{"scenario", head("nosuch", "reference") + "send alice.0 m1\ndeliver m1\n", `schedule line 3: unknown scenario "nosuch"`},
		{"store", head("reply", "nosuch") + "send alice.0 m1\n", `schedule line 5: unknown store "nosuch"`},
		{"discipline", strings.Replace(head("reply", "reference"), "locked", "lockd", 1) + "send alice.0 m1\n", `schedule line 4: unknown discipline "lockd"`},
		{"device", strings.Replace(head("reply", "stock"), "seed 1", "device baileys@0.1\nseed 1", 1) + "send alice.0 m1\n", `schedule line 2: unknown device "baileys@0.1"`},
		{"unsent", head("reply", "reference") + "send alice.0 m1\ndeliver m1\ndeliver m9\n", `schedule line 10: op "deliver m9": no op before it sent message m9`},
		{"sent after", head("reply", "reference") + "deliver m1\nsend alice.0 m1\n", `schedule line 8: op "deliver m1": no op before it sent message m1`},
		{"copy of unsent", head("reorder", "reference") + "send alice.0 m1\nstep m2.2\n", `schedule line 9: op "step m2.2": no op before it sent message m2`},
		{"op", head("burst", "reference") + "send alice.0 m1\nreply alice.0 r1\n", `schedule line 9: op "reply alice.0 r1": scenario burst has no reply ops`},
		{"crash op", head("reply", "reference") + "send alice.0 m1\nrollback\n", `schedule line 9: op "rollback": scenario reply has no rollback ops`},
		{"contact", head("reply", "reference") + "send bob.0 m1\n", `schedule line 8: op "send bob.0 m1": bob.0 is not a contact device`},
		{"task", head("reply", "reference") + "send alice.0 m1\nstep bogus\n", `schedule line 9: op "step bogus": the model's tasks are messages`},
		{"instance", head("reply", "reference") + "send alice.0 m1\ndeliver m1 @1\n", `schedule line 9: op "deliver m1 @1": instance 1, but the schedule has 1`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".txt")
			require.NoError(t, os.WriteFile(path, []byte(c.text), 0o644))
			code, out, errs := run(t, "replay", path)
			require.Equal(t, 2, code, out)
			require.Empty(t, out)
			require.Equal(t, 1, strings.Count(errs, "\n"), errs)
			require.Contains(t, errs, "badmac: "+path+": "+c.want)
		})
	}
	// What the shrinker saves replays: a candidate that dropped a message's
	// send drops the ops naming it too (they did nothing), so no saved
	// schedule names a message it never sent.
	out := t.TempDir()
	code, _, errs := run(t, "run", "-disciplines", "concurrent", "-stores", "mutexed", "-scenarios", "reply,group,reorder,crash,rollback",
		"-schedules", "3", "-must-pass", "none", "-out", out)
	require.Equal(t, 0, code, errs)
	files, err := filepath.Glob(filepath.Join(out, "*.txt"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		code, _, errs := run(t, "replay", f)
		require.Equal(t, 1, code, "%s: %s", f, errs)
	}
}
