package harness

import (
	"context"

	"github.com/badmac/badmac/sim"
	"github.com/badmac/badmac/stores"
)

// The same-client run (docs/design.md §5, store failures) replays a
// controlled run on the reference store under the same client. It must
// follow the candidate's interleaving exactly, or a store whose every call
// is atomic is blamed for an interleaving it never had. The two runs do not
// share yield points: a candidate's store may yield inside a call (a
// backend round trip, its own lock), the reference store never does. So
// the same-client run does not replay the candidate's step ops; it replays
// what each step did to its task, counted in store calls: the candidate
// records every action it took (the schedule's ops, and the steps, takes,
// reads and restarts its stop and its drain made on their own), each step
// with the task's progress after it, and the same-client run advances its
// own copy of the task to the same progress. A call then takes effect in
// the same order on both stores, whatever yield points lie inside it.

// progress is how far a device task got through its store calls, in the
// order that fixes what it did: started, then per call entered (parked at
// the call's yield point) and completed (the store answered).
type progress struct {
	started           bool
	entered, finished int
	// stored: a write of the task's completed (outside an uncommitted
	// transaction: a txn receive's writes count once DoDecryptionTxn
	// committed); acked: the receive recorded its attempt, the ack.
	stored, acked bool
}

// at is the progress as one number: it only grows as the task runs, by one
// at its start, at each call entered and at each call completed.
func (p *progress) at() int {
	if p == nil {
		return 0
	}
	n := p.entered + p.finished
	if p.started {
		n++
	}
	return n
}

// action is one thing a controlled run did, in order: an op of the
// schedule, or a step, run, deliver, read or restart its stop or drain made
// on its own. For step and run, at and done are the task's progress after
// it.
type action struct {
	op   Op
	at   int
	done bool
}

// task returns the progress record of the named task, created on first use.
// The caller holds r.mu.
func (r *Run) task(name string) *progress {
	if r.prog == nil {
		r.prog = map[string]*progress{}
	}
	p := r.prog[name]
	if p == nil {
		p = &progress{}
		r.prog[name] = p
	}
	return p
}

// noteProgress updates the running task's progress (controlled mode only:
// free-mode tasks are not sim tasks, and a killed task unwinding through a
// call completed nothing).
func (r *Run) noteProgress(ctx context.Context, f func(p *progress)) {
	t := sim.TaskFrom(ctx)
	if t == nil || t.Killed() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.task(t.Name))
}

// progressOf is the named task's progress.
func (r *Run) progressOf(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prog[name].at()
}

// record appends an action to the run's trace (controlled runs only; the
// same-client run records nothing). For step and run ops it notes the
// task's progress after the op.
func (r *Run) record(op Op) {
	if r.sim == nil || r.following {
		return
	}
	a := action{op: op}
	if task, ok := TaskOf(op); ok {
		a.at = r.progressOf(task)
		if t := r.tasks[task]; t != nil {
			a.done = t.Done()
		}
	}
	r.verdict.trace = append(r.verdict.trace, a)
}

// advance steps the named task until it has the progress the candidate's
// task had after the same action (to its end when that one ended). It
// stops early when the task cannot run: the runs have diverged, which only
// a store that behaves differently from the reference store causes.
func (r *Run) advance(name string, at int, done bool) {
	t := r.tasks[name]
	for t != nil && t.Runnable() && (done || r.progressOf(name) < at) {
		r.sim.Step(t)
		r.afterStep()
	}
}

// SameClient runs a controlled run's actions on the reference store under
// the same discipline, with the same crypto/rand stream as the candidate's
// run: what a perfect store gives this client on this interleaving,
// crashes included (docs/design.md §5). res is the candidate's result,
// which holds its actions. txn runs on the reference store with
// transactions (stores.ReferenceTxn): the same client, the same
// decrypted-event buffer, and a crash inside a transaction rolls it back
// there too, so neither txn's own send/receive race nor what a correct
// rollback leads to is charged to the candidate. Its result is not judged.
func SameClient(ctx context.Context, s *Schedule, res *Result) (*Result, error) {
	ref := stores.MustLookup(referenceStore)
	if s.Discipline == Txn {
		ref = stores.ReferenceTxn()
	}
	return follow(ctx, s, res.trace, ref)
}

// follow replays a controlled run's actions on store v (SameClient).
func follow(ctx context.Context, s *Schedule, trace []action, v stores.Variant) (*Result, error) {
	s = s.Clone()
	var res *Result
	var err error
	withSeededRandom(s.Seed, 0, func() {
		var r *Run
		r, err = Open(ctx, s, v, Controlled)
		if err != nil {
			return
		}
		defer r.Close()
		r.following = true
		for _, a := range trace {
			if task, ok := TaskOf(a.op); ok {
				r.advance(task, a.at, a.done)
				continue
			}
			if err = r.applyOp(a.op); err != nil {
				return
			}
		}
		res, err = r.Finish()
	})
	return res, err
}
