package procs

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/fakeserver"
)

// The harness device's tasks (Device, hrun). Without gates a request runs
// whole: its reply carries its task's end and the job ends at once. With
// gates (Device.Gates, the child's -gates) a job is a task in flight in a
// device process: its store calls wait at gates, a step op lets one call
// go, and its end comes in the reply to a later step. Which task may start
// is decided here, by the run's discipline: locked, one lock per Signal
// address in each process, held across the task's whole
// load→decrypt/encrypt→store (harness/discipline.go reserve; every task
// kind queues on it, in start order), so a process's tasks on one address
// take turns and tasks on other addresses, and every task of another
// process, run alongside. Txn is refused with gates (Device.Check). A
// task's need_bundle restart (the send's bundle fetch, the retry
// receipt's recreated session) keeps its lock, as the whole of whatsmeow's
// SendMessage and handleRetryReceipt run under one call.

// job is one task: its request, and what its end does (end returns the
// request to send again, under the same task and lock, or nil).
type job struct {
	inst int
	req  devproto.Request
	del  *fakeserver.Delivery // a receive's delivery: requeued if the task is killed
	end  func(devproto.Reply, devproto.Event) (*devproto.Request, error)
	seq  int // start order
	// stored: a receive's decrypt wrote to the store (a write call of
	// its returned), so a kill before its end leaves the session moved on
	// and the message unacknowledged.
	stored bool
}

func (j *job) lock() string { return fmt.Sprintf("%s.%d", j.req.Peer, j.req.PeerDev) }

// tasks are the run's tasks in flight (with gates).
type tasks struct {
	gated   bool
	seq     int
	live    map[string]*job   // started, not ended (parked, running or waiting)
	parked  map[string]string // task → the gate it waits at
	calls   map[string]string // task → the store call at its gate
	held    []map[string]string
	waiting []*job // waiting on a lock another task holds, in start order
	killed  []*job // in flight at a crash: redone at the restart
	// killedUnacked are the messages a crash killed after their
	// decrypt's store write, before their end (harness.Result's).
	killedUnacked []string
}

func newTasks(gated bool, instances int) tasks {
	t := tasks{gated: gated, live: map[string]*job{}, parked: map[string]string{}, calls: map[string]string{}}
	for range instances {
		t.held = append(t.held, map[string]string{})
	}
	return t
}

// start starts job j: at once, or (with gates) when its lock is free.
func (r *hrun) start(j *job) error {
	if !r.gated {
		return r.send(j)
	}
	r.seq++
	j.seq = r.seq
	r.live[j.req.Task] = j
	if _, busy := r.held[j.inst][j.lock()]; busy {
		r.waiting = append(r.waiting, j)
		return nil
	}
	r.held[j.inst][j.lock()] = j.req.Task
	return r.send(j)
}

// send sends j's request and takes in the reply.
func (r *hrun) send(j *job) error {
	resp, err := r.do(j.inst, j.req)
	if err != nil {
		return err
	}
	return r.took(j, resp)
}

// took takes in a reply about j: a gate it parked at, or its end.
func (r *hrun) took(j *job, resp devproto.Reply) error {
	task := j.req.Task
	if r.gated && resp.OK && !resp.Dropped {
		for _, e := range resp.Events {
			if e.Task != task {
				return fmt.Errorf("event for task %s in the reply about %s", e.Task, task)
			}
			if !e.Done {
				r.parked[task], r.calls[task] = e.Gate, e.Call
				return nil
			}
		}
	}
	next, err := j.end(resp, outcome(resp, task))
	if err != nil || next != nil {
		if err == nil {
			j.req = *next
			err = r.send(j)
		}
		return err
	}
	if !r.gated {
		return nil
	}
	// The task ended: its lock goes to the first task waiting for it.
	delete(r.live, task)
	delete(r.held[j.inst], j.lock())
	for i, w := range r.waiting {
		if w.inst == j.inst && w.lock() == j.lock() {
			r.waiting = append(r.waiting[:i:i], r.waiting[i+1:]...)
			r.held[w.inst][w.lock()] = w.req.Task
			return r.send(w)
		}
	}
	return nil
}

func (r *hrun) isParked(task string) bool {
	_, ok := r.parked[task]
	return ok && !r.down
}

// step lets task make the store call it is parked at (the history's line
// is the call's, "TASK Call args", as the model's store calls read).
func (r *hrun) step(task string) error {
	j, gate := r.live[task], r.parked[task]
	name := task
	if j.inst > 0 {
		name = fmt.Sprintf("%s@%d", task, j.inst)
	}
	call, before := r.calls[task], r.writes[j.inst]
	r.log("%s %s", name, call)
	delete(r.parked, task)
	delete(r.calls, task)
	resp, err := r.do(j.inst, devproto.Request{Op: devproto.OpStep, Gate: gate})
	if err != nil {
		return err
	}
	// The process counts its completed writes; only this task ran. The
	// retry receipt's fresh prekey comes after the decrypt (whatsmeow
	// acknowledges the message before sendRetryReceipt, as the model's
	// receive does), so it is not the decrypt's write.
	if j.del != nil && resp.Writes > before && !strings.HasPrefix(call, "GenOnePreKey") {
		j.stored = true
	}
	return r.took(j, resp)
}

// runnable are the parked tasks in start order.
func (r *hrun) runnable() []string {
	if r.down {
		return nil
	}
	var ts []string
	for t := range r.parked {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(a, b int) bool { return r.live[ts[a]].seq < r.live[ts[b]].seq })
	return ts
}

// inFlight are the live tasks in start order.
func (r *hrun) inFlight() []string {
	var ts []string
	for t := range r.live {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(a, b int) bool { return r.live[ts[a]].seq < r.live[ts[b]].seq })
	return ts
}

// abandon ends the tasks a crash killed: none of their store calls past
// their gates ran; they are redone at the restart.
func (r *hrun) abandon() {
	for _, t := range r.inFlight() {
		j := r.live[t]
		r.killed = append(r.killed, j)
		if j.stored && !slices.Contains(r.killedUnacked, j.del.Msg) {
			r.killedUnacked = append(r.killedUnacked, j.del.Msg)
			r.log("crash: %s killed after storing its decrypt, before its ack", t)
		}
	}
	r.live, r.parked, r.calls, r.waiting = map[string]*job{}, map[string]string{}, map[string]string{}, nil
	for i := range r.held {
		r.held[i] = map[string]string{}
	}
}

// finishTasks runs every task in flight to its end, the first started
// first (a clean shutdown lets the device finish what it is doing).
func (r *hrun) finishTasks() error {
	for len(r.live) > 0 {
		t := r.runnable()
		if len(t) == 0 {
			return fmt.Errorf("tasks %v neither parked nor finished", r.inFlight())
		}
		if err := r.step(t[0]); err != nil {
			return err
		}
	}
	return nil
}

// redoTasks is the restart's part for the killed tasks, in start order: a
// receive was never acknowledged, so the server queues its delivery again;
// a send (a reply, a retry receipt's answer) runs again from the start.
func (r *hrun) redoTasks() error {
	killed := r.killed
	r.killed = nil
	for _, j := range killed {
		if j.del != nil {
			r.Server().ToDevice(j.del)
			r.log("%s: requeued (never acknowledged)", j.req.Task)
			continue
		}
		r.log("%s: sent again (killed in flight)", j.req.Task)
		if err := r.start(j); err != nil {
			return err
		}
	}
	return nil
}
