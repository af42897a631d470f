package devproto

import (
	"context"
	"fmt"
	"testing"
)

// Gates parks a task before each store call and reports the gates in the
// order reached; Step releases one call; a killed task makes no further
// call; an unknown gate or a live task's name again is refused.
func TestGates(t *testing.T) {
	g := NewGates()
	var made []string
	task := func(name string) func(context.Context) Event {
		return func(ctx context.Context) Event {
			for _, c := range []string{"GetSession a", "PutSession a"} {
				Gate(ctx, c)
				made = append(made, name+" "+c)
			}
			return Event{OK: true, PT: []byte{}}
		}
	}
	evs, err := g.Start(context.Background(), "m1", task("m1"))
	if err != nil || fmt.Sprint(evs) != fmt.Sprint([]Event{{Task: "m1", Gate: "g1", Call: "GetSession a"}}) {
		t.Fatalf("start: %v %v", evs, err)
	}
	if _, err := g.Start(context.Background(), "m1", task("m1")); err == nil {
		t.Error("a live task started twice")
	}
	if evs, _ = g.Start(context.Background(), "m2", task("m2")); evs[0].Gate != "g2" {
		t.Fatalf("m2: %v", evs)
	}
	if evs, err = g.Step("g1"); err != nil || evs[0].Gate != "g3" || evs[0].Task != "m1" {
		t.Fatalf("step g1: %v %v", evs, err)
	}
	if evs, err = g.Step("g3"); err != nil || !evs[0].Done || evs[0].Task != "m1" || !evs[0].OK {
		t.Fatalf("step g3: %v %v", evs, err)
	}
	if _, err := g.Step("g3"); err == nil {
		t.Error("a gate stepped twice")
	}
	if fmt.Sprint(g.Parked(), g.Tasks()) != "[g2] [m2]" {
		t.Errorf("parked %v, tasks %v", g.Parked(), g.Tasks())
	}
	g.Kill()
	if len(g.Parked()) != 0 || len(g.Tasks()) != 0 {
		t.Errorf("after the kill: parked %v, tasks %v", g.Parked(), g.Tasks())
	}
	if fmt.Sprint(made) != "[m1 GetSession a m1 PutSession a]" {
		t.Errorf("calls made: %v (m2 killed before its first)", made)
	}
}
