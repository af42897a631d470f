package baileys

import (
	"slices"
	"testing"
)

// The crash's attribution on the socket device from what it observes
// (receives), both ways: a receive killed after a write of its decrypt
// took effect and before its attempt is noted (lost to the crash); one
// killed before any write of its decrypt took effect, one that recorded
// its attempt, and tasks other than receives are not (their losses stay
// blamed).
func TestReceivesKilledUnacked(t *testing.T) {
	type gate struct {
		task, call string
		io, step   bool
	}
	// decrypt is m1's receive up to its session write: the reads, then
	// the set with its writes below the store (a temporary file, its
	// fsync, the rename), the last n gates not stepped.
	decrypt := func(task string, unstepped int) []gate {
		gs := []gate{
			{task, "get session alice.0", false, true},
			{task, "set pre-key 1 (delete), session alice.0", false, true},
			{task, "open session-alice.0.json.1.tmp (w)", true, true},
			{task, "write session-alice.0.json.1.tmp", true, true},
			{task, "fsync session-alice.0.json.1.tmp", true, true},
			{task, "rename session-alice.0.json.1.tmp -> session-alice.0.json", true, true},
		}
		for i := len(gs) - unstepped; i < len(gs); i++ {
			gs[i].step = false
		}
		return gs[:len(gs)-unstepped+min(unstepped, 1)]
	}
	cases := []struct {
		name      string
		gates     []gate
		attempted bool // the bot recorded m1's attempt before the crash
		keptWhole bool // the crash keeps m1's parked write whole
		want      []string
	}{
		{"killed at the rename, writes before it done", decrypt("m1", 1), false, false, []string{"m1"}},
		{"killed at the rename, which the crash keeps", decrypt("m1", 1), false, true, []string{"m1"}},
		{"killed at the set's first write, dropped", decrypt("m1", 4), false, false, nil},
		{"killed at the set's first write, kept whole", decrypt("m1", 4), false, true, []string{"m1"}},
		{"killed at the set itself", decrypt("m1", 5), false, false, nil},
		{"killed before the set", decrypt("m1", 6), false, false, nil},
		{"the set returned, killed at the next call", append(decrypt("m1", 0), gate{"m1", "get sender-key x", false, false}), false, false, []string{"m1"}},
		{"the attempt was recorded", append(decrypt("m1", 0), gate{"m1", "get sender-key x", false, false}), true, false, nil},
		{"a second copy of m1", decrypt("m1.2", 1), false, false, []string{"m1"}},
		{"a reply's session write", decrypt("r1", 1), false, false, nil},
		{"a resend's session write", decrypt("r1~retry1", 1), false, false, nil},
		{"a creds save started by m1", decrypt("m1~creds1", 1), false, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := newReceives()
			rc.sent("m1")
			for _, g := range c.gates {
				rc.parked(g.task, g.call, g.io)
				if g.step {
					rc.step(g.task, g.io)
				}
			}
			if c.attempted {
				rc.attempt("m1")
			}
			task := c.gates[0].task
			rc.crash(map[string]bool{task: c.keptWhole})
			if !slices.Equal(rc.killed, c.want) {
				t.Errorf("killed unacked %v, want %v", rc.killed, c.want)
			}
		})
	}
}

// A crash ends the killed process's tasks: a later crash notes nothing for
// them again, and a redelivered copy is followed afresh.
func TestReceivesCrashEndsTasks(t *testing.T) {
	rc := newReceives()
	rc.sent("m1")
	rc.sent("m2")
	rc.parked("m2", "get session alice.0", false)
	rc.step("m2", false)
	rc.parked("m2", "set session alice.0", false)
	rc.step("m2", false)
	rc.parked("m2", "open session-alice.0.json.1.tmp (w)", true)
	rc.step("m2", true)
	rc.parked("m2", "rename session-alice.0.json.1.tmp -> session-alice.0.json", true)
	if got := rc.crash(nil); !slices.Equal(got, []string{"m2"}) {
		t.Fatalf("first crash noted %v, want [m2]", got)
	}
	// After the restart m2.2 only reads before the next kill.
	rc.parked("m2.2", "get session alice.0", false)
	rc.step("m2.2", false)
	rc.parked("m1.2", "get session alice.0", false)
	if got := rc.crash(nil); got != nil {
		t.Fatalf("second crash noted %v, want nothing", got)
	}
	if !slices.Equal(rc.killed, []string{"m2"}) {
		t.Errorf("killed unacked %v, want [m2]", rc.killed)
	}
}
