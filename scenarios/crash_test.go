package scenarios

import (
	"context"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// crashConversation is the conversation the crash tests enumerate: the
// `crash` scenario with a fixed seed (10 messages, 6 replies).
const crashSeed = 3

func crashPoints(t *testing.T, store string, opt harness.CrashOptions) *harness.CrashReport {
	t.Helper()
	sc, err := Lookup("crash")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := CrashPoints(context.Background(), sc, harness.Locked, stores.MustLookup(store), crashSeed, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s  counts %+v", rep.Text(false), rep.Counts)
	return rep
}

func TestCrashPointsDurableStores(t *testing.T) {
	for _, st := range []string{"reference", "files-atomic"} {
		rep := crashPoints(t, st, harness.CrashOptions{})
		if rep.Writes < 20 || rep.Counts.Messages/rep.Runs < 10 {
			t.Fatalf("%s: %d write points, %d messages per run: conversation too short", st, rep.Writes, rep.Counts.Messages/rep.Runs)
		}
		if len(rep.Failed) != 0 || rep.Counts.RegeneratedCreds != 0 {
			t.Errorf("%s: store blamed at %d crash points:\n%s", st, len(rep.Failed), rep.Text(true))
		}
		// What the durable stores still lose against the serial baseline
		// must be a crash inside one receive's calls (between PutSession
		// and RemovePreKey of a pkmsg), never between tasks.
		for _, p := range rep.LostToCrash {
			if strings.Contains(p.Location, "before end of") {
				t.Errorf("%s: loss at a task boundary: %s", st, p)
			}
		}
	}
}

func TestCrashPointsVolatileStores(t *testing.T) {
	for _, st := range []string{"debounced", "files"} {
		rep := crashPoints(t, st, harness.CrashOptions{})
		if len(rep.Failed) == 0 {
			t.Fatalf("%s: no crash point blamed", st)
		}
		t.Logf("%s first failure:\n%s", st, rep.Failed[0])
		// Each failure replays from its printed schedule.
		for _, p := range []harness.CrashPoint{rep.Failed[0], rep.Failed[len(rep.Failed)-1]} {
			if !strings.Contains(p.Location, "after ") || !strings.Contains(p.Location, ", before ") {
				t.Errorf("unreadable location %q", p.Location)
			}
			s, err := harness.Parse(strings.NewReader(p.Schedule.String()))
			if err != nil {
				t.Fatal(err)
			}
			res, err := harness.Replay(context.Background(), s, harness.Controlled)
			if err != nil {
				t.Fatal(err)
			}
			if res.Summary() != p.Result.Summary() || res.HistoryText() != p.Result.HistoryText() {
				t.Errorf("%s: replay of %q gives %q, want %q", st, p.Location, res.Summary(), p.Result.Summary())
			}
		}
	}
}
