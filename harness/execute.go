package harness

import (
	"context"
	"fmt"
	"strings"

	"github.com/badmac/badmac/stores"
)

// Source decides the next op of a run as it goes; generators (seeded random,
// PCT, rapid) implement it. Next returns false when the source is done.
type Source interface {
	Next(v View) (Op, bool)
}

// Execute runs a schedule's setup with ops from src on variant v, drains it,
// then runs the recorded schedule as the protocol baseline (serial, on the
// reference store) and blames the pair for what the baseline survives. The
// returned schedule is the fully explicit one: it replays byte for byte.
func Execute(ctx context.Context, setup *Schedule, v stores.Variant, mode Mode, src Source) (*Schedule, *Result, error) {
	return RunOn(ctx, Model{Variant: v}, setup, mode, src)
}

// Drive applies ops from src until it is done. On error the run is stopped.
func (r *Run) Drive(src Source) error {
	for {
		op, ok := src.Next(r)
		if !ok {
			return nil
		}
		if err := r.Apply(op); err != nil {
			r.Stop()
			return err
		}
	}
}

// verdictState is what judging a run needs beyond its ops.
type verdictState struct {
	// crashPoints: where each crash that hit a live device landed.
	crashPoints []string
	// Store calls with yield points of their own (a backend round trip, a
	// store's lock) split one step of the reference store into several.
	// inside: tasks stopped inside a store call; skip: the step ops
	// SameClient leaves out, those that stopped inside a store call: on
	// the reference store the step that leaves the call runs it whole
	// (docs/design.md §5).
	inside map[string]bool
	atCall map[string]bool // parked at the yield point before a store call
	skip   map[int]bool
}

// Apply runs one op and records it, with the bookkeeping SameClient needs
// to follow the run's interleaving on the reference store. Ops that do not
// apply do nothing.
func (r *Run) Apply(op Op) error {
	if r.sim == nil || (op.Verb != "step" && op.Verb != "run") || len(op.Args) == 0 {
		return r.applyOp(op)
	}
	v := &r.verdict
	if v.inside == nil {
		v.inside, v.atCall, v.skip = map[string]bool{}, map[string]bool{}, map[int]bool{}
	}
	name, i := op.Args[0], len(r.sched.Ops)
	y0 := r.sim.Yields
	err := r.applyOp(op)
	t := r.tasks[name]
	switch {
	case t == nil || t.Done():
		v.inside[name], v.atCall[name] = false, false
	case r.sim.Yields > y0 && !strings.HasPrefix(r.sim.Point, "backend."):
		// Parked before a store call, or (run) blocked after passing one:
		// a store's own lock is taken inside the call.
		v.inside[name] = op.Verb == "run" && !t.Runnable()
		v.atCall[name] = !v.inside[name]
	case r.sim.Yields > y0:
		v.inside[name], v.atCall[name] = true, false // at a backend round trip
	default:
		// No yield point passed: blocked on a lock. Inside the call when
		// the step started at one (the store's lock), else a discipline's.
		v.inside[name] = v.inside[name] || v.atCall[name]
		v.atCall[name] = false
	}
	// A store call takes effect in the step that leaves it (a backend
	// round trip yields before it reads or writes), so the reference
	// store runs the call whole in that step and not in those before it.
	if op.Verb == "step" && v.inside[name] {
		v.skip[i] = true
	}
	return err
}

// Start opens a run whose crypto/rand is seeded from the schedule's seed;
// the caller applies ops from the same goroutine and must call Stop. Runs
// on different goroutines run in parallel, each on its own stream.
func Start(ctx context.Context, setup *Schedule, v stores.Variant, mode Mode) (*Run, error) {
	restore := bindRandom(setup.Seed, 0)
	r, err := Open(ctx, setup, v, mode)
	if err != nil {
		restore()
		return nil, err
	}
	r.restore = restore
	return r, nil
}

// Stop drains the run, closes it, runs the baselines and judges it as
// RunOn judges a Model run.
func (r *Run) Stop() (*Schedule, *Result, error) {
	sched, res, err := r.Drain()
	if err != nil {
		return nil, nil, err
	}
	m := Model{Variant: r.variant}
	m.noteReference(r, res)
	return judge(r.ctx, m, sched, res)
}

// referenceStore is the store every candidate is compared with.
const referenceStore = "reference"

// SameClient runs an explicit schedule on the reference store under the
// same discipline, in controlled mode, with the same crypto/rand stream as
// the candidate's run: what a perfect store gives this client on this
// interleaving, crashes included (docs/design.md §5). skip lists the ops
// (by index) to leave out: steps the candidate took inside a store call,
// which the reference store runs in one. txn runs on the reference store
// with transactions (stores.ReferenceTxn): the same client, the same
// decrypted-event buffer, and a crash inside a transaction rolls it back
// there too, so neither txn's own send/receive race nor what a correct
// rollback leads to is charged to the candidate. Its result is not judged.
func SameClient(ctx context.Context, s *Schedule, skip map[int]bool) (*Result, error) {
	s = s.Clone()
	ref := stores.MustLookup(referenceStore)
	if s.Discipline == Txn {
		ref = stores.ReferenceTxn()
	}
	var res *Result
	var err error
	withSeededRandom(s.Seed, 0, func() {
		var r *Run
		r, err = Open(ctx, s, ref, Controlled)
		if err != nil {
			return
		}
		defer r.Close()
		for i, op := range s.Ops {
			if skip[i] {
				continue
			}
			if err = r.Apply(op); err != nil {
				return
			}
		}
		res, err = r.Finish()
	})
	return res, err
}

// Drain finishes and closes the run without the baseline: the result is
// not judged (Blamed is empty). Benchmarks use it to time the harness alone.
func (r *Run) Drain() (*Schedule, *Result, error) {
	if r.restore == nil {
		return nil, nil, fmt.Errorf("run stopped twice")
	}
	sched := r.Schedule()
	res, err := r.Finish()
	r.Close()
	r.restore()
	r.restore = nil
	if err != nil {
		return nil, nil, err
	}
	return sched, res, nil
}

// clean reports whether every message was delivered once, cleanly: then
// Blame would blame nothing whatever the baseline did.
func (res *Result) clean() bool {
	for _, m := range res.Messages {
		if m.Outcome() != Delivered {
			return false
		}
	}
	return true
}

// Baseline runs the schedule serially on the reference store. The reference
// store has no transactions, so a txn schedule's baseline is the locked
// client: what the protocol survives without the buffer.
func Baseline(ctx context.Context, s *Schedule) (*Result, error) {
	if s.Discipline == Txn {
		s = s.Clone()
		s.Discipline = Locked
	}
	var res *Result
	var err error
	withSeededRandom(s.Seed, 1, func() {
		var r *Run
		r, err = Open(ctx, s, stores.MustLookup("reference"), Serial)
		if err != nil {
			return
		}
		defer r.Close()
		for _, op := range s.Ops {
			if err = r.Apply(op); err != nil {
				return
			}
		}
		res, err = r.Finish()
	})
	return res, err
}

// Replay runs an explicit schedule on its own store, as recorded.
func Replay(ctx context.Context, s *Schedule, mode Mode) (*Result, error) {
	v, err := stores.Lookup(s.Store)
	if err != nil {
		return nil, err
	}
	_, res, err := Execute(ctx, s, v, mode, &opList{ops: s.Ops})
	return res, err
}

type opList struct {
	ops []Op
	i   int
}

func (l *opList) Next(View) (Op, bool) {
	if l.i >= len(l.ops) {
		return Op{}, false
	}
	l.i++
	return l.ops[l.i-1], true
}

// Ops is a Source that yields a fixed list.
func Ops(ops []Op) Source { return &opList{ops: ops} }

// HistoryText is the history as one text block.
func (res *Result) HistoryText() string { return strings.Join(res.History, "\n") + "\n" }
