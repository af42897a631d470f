package devproto

import (
	"context"
	"fmt"
	"runtime"
	"sort"
)

// Gates is a device's side of gates (docs/device-protocol.md "Events:
// gates and task ends"), for a device written in Go: each task runs in a
// goroutine of its own and stops before each store call (Gate, the store
// hook) until the harness steps it. Only one task runs at a time: Start
// and Step return once the task they set going has parked or ended, so the
// device is quiescent at every reply and the gate ids ("g1", "g2", … in
// the order the gates are reached) are deterministic. The Go device
// (devices/godevice) and the whatsmeow child (procs) use it. Not safe for
// concurrent use: the device's request loop calls it.
type Gates struct {
	n      int
	parked map[string]gated
	live   map[string]*gatedTask
}

type gatesKey struct{}

// gated is a task parked before store call call; release lets it go.
type gated struct {
	task    *gatedTask
	call    string
	release chan struct{}
}

type gatedTask struct {
	name string
	ch   chan gatedProgress
	dead bool // killed: its goroutine exits at its gate
}

// gatedProgress is what a running task reports when it stops: parked
// before call (release set), or ended (done set).
type gatedProgress struct {
	call    string
	release chan struct{}
	done    *Event
}

// NewGates has no tasks.
func NewGates() *Gates {
	return &Gates{parked: map[string]gated{}, live: map[string]*gatedTask{}}
}

// Start runs task name (fn, on a context that carries it) until it parks
// at its first gate or ends: the reply's events. fn returns the task's end
// event (its Task and Done are set here).
func (g *Gates) Start(ctx context.Context, name string, fn func(ctx context.Context) Event) ([]Event, error) {
	if name == "" || g.live[name] != nil {
		return nil, fmt.Errorf("task %q empty or already live", name)
	}
	t := &gatedTask{name: name, ch: make(chan gatedProgress)}
	g.live[name] = t
	go func() {
		ev := fn(context.WithValue(ctx, gatesKey{}, gatesCtx{g, t}))
		ev.Task, ev.Done = name, true
		t.ch <- gatedProgress{done: &ev}
	}()
	return g.wait(t), nil
}

// Step lets the task parked at gate id make its store call and run on to
// its next gate or its end.
func (g *Gates) Step(id string) ([]Event, error) {
	p, ok := g.parked[id]
	if !ok {
		return nil, fmt.Errorf("no parked gate %q", id)
	}
	delete(g.parked, id)
	close(p.release)
	return g.wait(p.task), nil
}

type gatesCtx struct {
	g *Gates
	t *gatedTask
}

// Gate is the store hook (endpoint.Probe's Trace or Gate): a call made by
// a task of a Gates waits there until the harness steps it; calls outside
// any task (provisioning, a state request) run.
func Gate(ctx context.Context, call string) {
	c, ok := ctx.Value(gatesKey{}).(gatesCtx)
	if !ok {
		return
	}
	rel := make(chan struct{})
	c.t.ch <- gatedProgress{call: call, release: rel}
	<-rel
	if c.t.dead {
		runtime.Goexit()
	}
}

// wait runs until task t parks or ends: tasks only stop at gates, so one
// message from t means the device is quiescent again.
func (g *Gates) wait(t *gatedTask) []Event {
	p := <-t.ch
	if p.done != nil {
		delete(g.live, t.name)
		return []Event{*p.done}
	}
	g.n++
	id := fmt.Sprintf("g%d", g.n)
	g.parked[id] = gated{task: t, call: p.call, release: p.release}
	return []Event{{Task: t.name, Gate: id, Call: p.call}}
}

// Drop forgets every task (a clean restart in the same process): their
// goroutines stay parked until the process ends. Gate ids go on counting.
func (g *Gates) Drop() {
	g.parked, g.live = map[string]gated{}, map[string]*gatedTask{}
}

// Kill ends every parked task where it stands, as a killed process's
// goroutines end: its store call is never made (the goroutine exits at its
// gate). Gate ids go on counting.
func (g *Gates) Kill() {
	for _, p := range g.parked {
		p.task.dead = true
		close(p.release)
	}
	g.Drop()
}

// Parked are the parked gates' ids and Tasks the live tasks' names,
// sorted (a state reply's parked and tasks).
func (g *Gates) Parked() []string { return sortedKeys(g.parked) }

// Tasks are the live tasks, sorted.
func (g *Gates) Tasks() []string { return sortedKeys(g.live) }

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
