package scenarios

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// Parameters on a scenario's name reshape it, canonically named; bad ones
// are one-line errors.
func TestScenarioParams(t *testing.T) {
	sc, err := Lookup("reply:burst=04:messages=30:reply=1:contacts=2")
	if err != nil {
		t.Fatal(err)
	}
	if sc.Name != "reply:messages=30:contacts=2:burst=4:reply=1" || sc.Base() != "reply" {
		t.Errorf("name %q base %q: want the parameters in canonical order", sc.Name, sc.Base())
	}
	if sc.Messages != 30 || len(sc.Contacts) != 2 || sc.Contacts[1].User != "bob" || sc.BurstMax != 4 || sc.Reply != 1 {
		t.Errorf("reshaped wrong: %+v", sc)
	}
	again, err := Lookup(sc.Name)
	if err != nil || again.Name != sc.Name {
		t.Errorf("the canonical name does not look up to itself: %v %q", err, again.Name)
	}
	for _, bad := range []string{"reply:messages", "reply:messages=0", "reply:messages=x", "reply:nosuch=1",
		"reply:reply=1.5", "reply:drop=-0.1", "reply:drop=NaN", "reply:messages=3:messages=4", "crash:messages=3", "replica:burst=2", "reply:contacts=5", "reply:"} {
		if _, err := Lookup(bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: want a one-line error, got %v", bad, err)
		}
	}
}

// burst=K: at most K sends back to back, the next burst only after every
// stanza is delivered and every reply read; every message sent; the same
// seed gives the same schedule, whose header names the parameters.
func TestBurstParam(t *testing.T) {
	sc, err := Lookup("reply:messages=30:contacts=3:burst=3:reply=1")
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for range 2 {
		sched, _, err := harness.Execute(context.Background(), sc.Setup(7, harness.Locked, "reference"),
			stores.MustLookup("reference"), harness.Controlled, NewGenerator(sc, Random, 7))
		if err != nil {
			t.Fatal(err)
		}
		text := sched.String()
		if first == "" {
			first = text
		} else if text != first {
			t.Fatal("two runs of one seed differ")
		}
		if !strings.Contains(text, "scenario "+sc.Name+"\n") {
			t.Errorf("the schedule's header does not name the parameters:\n%s", text)
		}
		run, sends, peers, maxRun := 0, 0, map[string]bool{}, 0
		queued := map[string]bool{}
		for _, op := range sched.Ops {
			switch o := op.(type) {
			case harness.SendOp:
				if len(queued) > 0 && run == 0 {
					t.Errorf("a burst started with %v still queued", queued)
				}
				run++
				sends++
				peers[o.Peer] = true
				queued[o.Msg] = true
				maxRun = max(maxRun, run)
			case harness.DeliverOp:
				run = 0
				delete(queued, o.ID)
			default:
				run = 0
			}
		}
		if sends != 30 || maxRun > 3 || maxRun < 2 || len(peers) != 3 {
			t.Errorf("sends %d (want 30), longest burst %d (want 2..3), peers %d (want 3)", sends, maxRun, len(peers))
		}
	}
}

// drop=P: a drop op follows the last send of a burst with chance P; the
// model refuses it by name (it has no connection), and a replay's
// validation accepts it in the scenario.
func TestDropParam(t *testing.T) {
	sc, err := Lookup("reply:messages=20:burst=3:drop=0.5")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sc.Ops(), "drop") {
		t.Errorf("%s: ops %v have no drop (a replay would refuse its drops)", sc.Name, sc.Ops())
	}
	// The generator's ops, drops included; the model is given the rest.
	rec := &withoutDrops{g: NewGenerator(sc, Random, 3)}
	if _, _, err := harness.Execute(context.Background(), sc.Setup(3, harness.Locked, "reference"),
		stores.MustLookup("reference"), harness.Controlled, rec); err != nil {
		t.Fatal(err)
	}
	// A drop lands once its burst is sent, before the next burst: never
	// between two sends of a burst (a send follows it only once every
	// message sent is delivered), and (the point of placing it among the
	// burst's ops) not only right after a send, when nothing is in flight.
	drops, atWork := 0, 0
	sent, delivered := map[string]bool{}, map[string]bool{}
	dropped := false
	for i, op := range rec.all {
		switch op := op.(type) {
		case harness.DropOp:
			drops++
			dropped = true
			if _, ok := rec.all[i-1].(harness.SendOp); !ok {
				atWork++
			}
		case harness.SendOp:
			if dropped {
				for id := range sent {
					if !delivered[id] {
						t.Errorf("op %d: %s, the next burst, while %s is undelivered: the drop was not within its burst", i, op, id)
					}
				}
			}
			dropped = false
			sent[op.Msg] = true
		case harness.DeliverOp:
			delivered[op.ID] = true
		}
	}
	if drops == 0 || drops > 19 || atWork == 0 {
		t.Errorf("%d drops in 20 messages at chance 0.5, %d of them after a delivery, reply or read", drops, atWork)
	}
	_, _, err = harness.Execute(context.Background(), sc.Setup(3, harness.Locked, "reference"),
		stores.MustLookup("reference"), harness.Controlled, NewGenerator(sc, Random, 3))
	if err == nil || err.Error() != "device model does not implement op drop" {
		t.Errorf("the model ran drops: %v", err)
	}
}

// withoutDrops records a generator's ops and passes on all but drops.
type withoutDrops struct {
	g   *Generator
	all []harness.Op
}

func (w *withoutDrops) Next(r harness.View) (harness.Op, bool) {
	for {
		op, ok := w.g.Next(r)
		if ok {
			w.all = append(w.all, op)
		}
		if !ok || op != (harness.DropOp{}) {
			return op, ok
		}
	}
}
