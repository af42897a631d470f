// Package sim is badmac's deterministic scheduler: tasks are goroutines that
// run one at a time and hand control back at yield points (every call into a
// store), so a list of "run task T to its next yield point" choices fixes an
// interleaving exactly. Code that runs outside a controlled task (free mode,
// or the driver between steps) passes through Yield untouched and uses real
// locks.
package sim

import (
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/badmac/badmac/seeded"
)

type ctxKey struct{}

// Task is one cooperative thread of the controlled scheduler.
type Task struct {
	ID      int
	Name    string
	sched   *Scheduler
	next    func() (struct{}, bool) // resume the task until it parks or ends
	yield   func(struct{}) bool     // park: hand control back to next's caller
	done    bool
	blocked func() bool // set while waiting for a lock; true while it cannot run
	through bool        // Run: pass yield points without handing control back
	panicV  any
	killed  bool
}

// abandoned unwinds a killed task's goroutine.
type abandoned struct{}

// Scheduler runs tasks one at a time. It is driven from a single goroutine
// (the driver); tasks only run between Step's hand-off and their next yield.
//
// Each task is a coroutine (iter.Pull): a hand-off is a direct switch of
// goroutines on the driver's thread, not a channel send that wakes another
// processor and parks the driver until it answers (the two channel
// hand-offs per step cost 7–17% of a run's CPU, much of it system time,
// docs/design.md §9).
type Scheduler struct {
	tasks []*Task
	// Point is the last yield point reached, for traces.
	Point string
	// Yields counts every yield point passed; stores use it as a logical clock.
	Yields int64
}

// New returns an empty controlled scheduler.
func New() *Scheduler {
	return &Scheduler{}
}

// TaskFrom returns the controlled task running ctx, or nil.
func TaskFrom(ctx context.Context) *Task {
	if ctx == nil {
		return nil
	}
	t, _ := ctx.Value(ctxKey{}).(*Task)
	return t
}

// Spawn creates a parked task; it runs only when stepped.
func (s *Scheduler) Spawn(ctx context.Context, name string, fn func(ctx context.Context)) *Task {
	t := &Task{ID: len(s.tasks) + 1, Name: name, sched: s}
	s.tasks = append(s.tasks, t)
	tctx := context.WithValue(ctx, ctxKey{}, t)
	// The task draws crypto/rand from the stream of the run that spawns it
	// (bound on the coroutine's own goroutine when it first runs).
	r := seeded.Current()
	t.next, _ = iter.Pull(func(yield func(struct{}) bool) {
		t.yield = yield
		if r != nil {
			defer seeded.Bind(r)()
		}
		growStack(0)
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(abandoned); !ok {
					t.panicV = r
				}
			}
			t.done = true
		}()
		if t.killed {
			return
		}
		fn(tctx)
	})
	return t
}

// Task returns the task with the given id, or nil.
func (s *Scheduler) Task(id int) *Task {
	if id < 1 || id > len(s.tasks) {
		return nil
	}
	return s.tasks[id-1]
}

// Runnable reports whether the task can make progress when stepped.
func (t *Task) Runnable() bool {
	return !t.done && (t.blocked == nil || !t.blocked())
}

// Done reports whether the task has finished.
func (t *Task) Done() bool { return t.done }

// Live returns the tasks that have not finished, in id order.
func (s *Scheduler) Live() []*Task {
	var out []*Task
	for _, t := range s.tasks {
		if !t.done {
			out = append(out, t)
		}
	}
	return out
}

// Runnable returns the runnable tasks, in id order.
func (s *Scheduler) Runnable() []*Task {
	var out []*Task
	for _, t := range s.tasks {
		if t.Runnable() {
			out = append(out, t)
		}
	}
	return out
}

// Step runs task t until its next yield point, block or end. It returns
// false (and does nothing) when t cannot run.
func (s *Scheduler) Step(t *Task) bool {
	if t == nil || !t.Runnable() {
		return false
	}
	t.next()
	if t.panicV != nil {
		panic(fmt.Sprintf("task %d (%s) panicked: %v", t.ID, t.Name, t.panicV))
	}
	return true
}

// Run runs task t until it ends or blocks on a lock, as repeated Steps
// would, but passes its yield points without handing control back to the
// driver (two goroutine switches per yield saved). Only for a driver that
// would do nothing between those Steps. It returns false when t cannot run.
func (s *Scheduler) Run(t *Task) bool {
	if t == nil || !t.Runnable() {
		return false
	}
	t.through = true
	defer func() { t.through = false }()
	for t.Runnable() {
		s.Step(t)
	}
	return true
}

// Drain steps the lowest-numbered runnable task until none is left.
// It reports false if live tasks remain that can never run (a deadlock).
func (s *Scheduler) Drain() bool {
	for {
		r := s.Runnable()
		if len(r) == 0 {
			return len(s.Live()) == 0
		}
		s.Step(r[0])
	}
}

func (t *Task) park() {
	t.yield(struct{}{})
	if t.killed {
		panic(abandoned{})
	}
}

// Abandon kills a task, as a crash kills a process: it never runs again.
// Its goroutine is unwound at its yield point (deferred calls run, but no
// further store call does: a killed task's next yield panics again).
func (s *Scheduler) Abandon(t *Task) {
	if t == nil || t.done {
		return
	}
	t.killed = true
	t.next()
}

// Killed reports whether the task was abandoned.
func (t *Task) Killed() bool { return t.killed }

// Yield marks a yield point. Under a controlled task it hands control back to
// the driver; elsewhere it returns at once.
func Yield(ctx context.Context, point string) {
	t := TaskFrom(ctx)
	if t == nil {
		return
	}
	if t.killed {
		panic(abandoned{})
	}
	t.sched.Point = point
	t.sched.Yields++
	if t.through {
		return
	}
	t.park()
}

// Clock returns the logical time of the scheduler running ctx (the number of
// yield points passed), or -1 outside controlled mode.
func Clock(ctx context.Context) int64 {
	if t := TaskFrom(ctx); t != nil {
		return t.sched.Yields
	}
	return -1
}

// Mutex is a lock that works in both modes: under a controlled task a
// contended Lock parks the task (so the scheduler never deadlocks on a real
// lock); elsewhere it is a sync.Mutex.
type Mutex struct {
	real  sync.Mutex
	held  bool
	owner *Task
}

// Lock acquires m.
func (m *Mutex) Lock(ctx context.Context) {
	t := TaskFrom(ctx)
	if t == nil {
		m.real.Lock()
		return
	}
	for m.held {
		t.blocked = func() bool { return m.held }
		t.park()
	}
	t.blocked = nil
	m.held = true
	m.owner = t
}

// Unlock releases m.
func (m *Mutex) Unlock(ctx context.Context) {
	t := TaskFrom(ctx)
	if t == nil {
		m.real.Unlock()
		return
	}
	if !m.held || m.owner != t {
		panic("sim: unlock of a mutex not held by this task")
	}
	m.held = false
	m.owner = nil
}

// KeyedMutex hands out one Mutex per key (per Signal address, say).
type KeyedMutex struct {
	mu sync.Mutex
	m  map[string]*Mutex
}

// Get returns the mutex for key, creating it on first use.
func (k *KeyedMutex) Get(key string) *Mutex {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = make(map[string]*Mutex)
	}
	mu, ok := k.m[key]
	if !ok {
		mu = &Mutex{}
		k.m[key] = mu
	}
	return mu
}

// FIFO is a lock granted in ticket order: a task reserves its ticket when it
// is started (in arrival order) and takes the lock when its turn comes, as a
// per-chat queue does. Every reserved ticket must be locked and unlocked once.
type FIFO struct {
	mu      sync.Mutex
	cond    *sync.Cond
	issued  int
	serving int
}

// Reserve returns the next ticket.
func (f *FIFO) Reserve() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issued++
	return f.issued - 1
}

func (f *FIFO) turn(ticket int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serving == ticket
}

// Lock waits for ticket's turn.
func (f *FIFO) Lock(ctx context.Context, ticket int) {
	if t := TaskFrom(ctx); t != nil {
		for !f.turn(ticket) {
			t.blocked = func() bool { return !f.turn(ticket) }
			t.park()
		}
		t.blocked = nil
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cond == nil {
		f.cond = sync.NewCond(&f.mu)
	}
	for f.serving != ticket {
		f.cond.Wait()
	}
}

// Unlock passes the turn to the next ticket.
func (f *FIFO) Unlock() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serving++
	if f.cond != nil {
		f.cond.Broadcast()
	}
}

// KeyedFIFO hands out one FIFO per key.
type KeyedFIFO struct {
	mu sync.Mutex
	m  map[string]*FIFO
}

// Get returns the FIFO for key, creating it on first use.
func (k *KeyedFIFO) Get(key string) *FIFO {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = make(map[string]*FIFO)
	}
	f, ok := k.m[key]
	if !ok {
		f = &FIFO{}
		k.m[key] = f
	}
	return f
}

// growStack grows a new task goroutine's stack to 32 KiB at once, while it
// is still shallow: a task that decrypts would otherwise double its stack
// four times, each time copying every frame of libsignal's deep call chain
// (8% of a run's CPU before this). Not inlined, its frame must exist.
//
//go:noinline
func growStack(i int) byte {
	var frame [20 << 10]byte
	frame[i] = 1
	return frame[i/2]
}
