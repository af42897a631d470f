package reports

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// unknownLines are the lines of history that no reader of the history's
// formats reads (classify's fallback).
func unknownLines(history []string) []string {
	var out []string
	for _, l := range history {
		if _, known := classify(l); !known {
			out = append(out, l)
		}
	}
	return out
}

// placements are the different places the readers that read line l put
// it in (classify takes the first reader's).
func placements(l string) []Event {
	var out []Event
	for _, r := range lineReaders {
		if e, ok := r(l); ok && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// checkEveryLine fails on a line of any history that no reader reads, or
// that two read and place differently (classify's order would decide
// where it goes; the server's "phase alice mixed", its LID op's text, is
// read by both its reader and the op reader, in the server lane), and
// returns the lanes'
// counts and the number of lines.
func checkEveryLine(t *testing.T, histories map[string][]string) (map[Lane]int, int) {
	t.Helper()
	lanes := map[Lane]int{}
	lines := 0
	names := slices.Sorted(maps.Keys(histories))
	for _, name := range names {
		h := histories[name]
		if u := unknownLines(h); len(u) > 0 {
			t.Errorf("%s: %d lines no reader knows, the first %q", name, len(u), u[0])
		}
		for _, l := range h {
			if p := placements(l); len(p) > 1 {
				t.Errorf("%s: %q placed by its readers as %+v", name, l, p)
			}
		}
		for _, e := range Timeline(h) {
			lanes[e.Lane]++
		}
		lines += len(h)
	}
	return lanes, lines
}

// modelHistories runs every scenario the in-process model runs (the LID
// ones are the real clients'), six seeds each, random and PCT in turn,
// under every discipline on stores that lose, tear, cache and roll back,
// and returns the histories.
func modelHistories(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	ds := []harness.Discipline{harness.Concurrent, harness.Whatsmeow, harness.Locked}
	ss := []string{"debounced", "files", "cached"}
	for i, sc := range scenarios.All() {
		if strings.HasPrefix(sc.Name, "lid-") {
			continue
		}
		for seed := uint64(1); seed <= 6; seed++ {
			d, s := ds[(i+int(seed))%len(ds)], ss[(i+2*int(seed))%len(ss)]
			pol := scenarios.Policies[seed%2]
			sd := scenarios.SeedFor(seed, 1)
			_, res, err := harness.Execute(context.Background(), sc.Setup(sd, d, s), stores.MustLookup(s),
				harness.Controlled, scenarios.NewGenerator(sc, pol, sd))
			if err != nil {
				t.Fatalf("%s seed %d on %s/%s: %v", sc.Name, seed, d, s, err)
			}
			out[sc.Name+"/"+string(d)+"/"+s+"/"+string(pol)] = res.History
		}
	}
	return out
}

// Every line of every model scenario's history is placed by a reader of
// its writer's format (harness/history.go), none by the fallback: a
// history wording the timeline does not know fails here, rather than
// landing in the wrong lane. Each lane but the server's is used.
func TestTimelineKnowsEveryLine(t *testing.T) {
	checkDeviceLines(t, modelHistories(t), LaneServer)
}

// The check above fails when a writer's wording changes: a real history
// with one line reworded, per format, is reported at that line, and the
// history as written is not.
func TestTimelineUnknownWording(t *testing.T) {
	sc, _ := scenarios.Lookup("crash")
	sd := scenarios.SeedFor(3, 1)
	_, res, err := harness.Execute(context.Background(), sc.Setup(sd, harness.Concurrent, "debounced"),
		stores.MustLookup("debounced"), harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, sd))
	if err != nil {
		t.Fatal(err)
	}
	if u := unknownLines(res.History); len(u) > 0 {
		t.Fatalf("the history as written has unknown lines: %q", u)
	}
	rewordings := []struct{ from, to string }{
		{": ok", ": decrypted"},           // an attempt
		{"deliver ", "take "},             // an op
		{" GetSession ", " LoadSession "}, // a store call
		{"restart: ", "restarted: "},      // a restart
	}
	for _, rw := range rewordings {
		i := slices.IndexFunc(res.History, func(l string) bool { return strings.Contains(l, rw.from) })
		if i < 0 {
			t.Fatalf("no line with %q in the history", rw.from)
		}
		h := slices.Clone(res.History)
		h[i] = strings.Replace(h[i], rw.from, rw.to, 1)
		if u := unknownLines(h); !slices.Equal(u, []string{h[i]}) {
			t.Errorf("%q reworded as %q: unknown lines %q, want that one", res.History[i], h[i], u)
		}
	}
	for _, l := range []string{"m1: decrypted", "alice.0: gives up on m2", "queued m3", ""} {
		if _, known := classify(l); known {
			t.Errorf("%q read as a known line", l)
		}
	}
}
