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
	Next(r *Run) (Op, bool)
}

// Execute runs a schedule's setup with ops from src on variant v, drains it,
// then runs the recorded schedule as the protocol baseline (serial, on the
// reference store) and blames the pair for what the baseline survives. The
// returned schedule is the fully explicit one: it replays byte for byte.
func Execute(ctx context.Context, setup *Schedule, v stores.Variant, mode Mode, src Source) (*Schedule, *Result, error) {
	r, err := Start(ctx, setup, v, mode)
	if err != nil {
		return nil, nil, err
	}
	if err := r.Drive(src); err != nil {
		return nil, nil, err
	}
	return r.Stop()
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

// Stop drains the run, closes it, runs the baseline and blames. A run in
// which every message was delivered cleanly cannot be blamed for anything,
// so its baseline is skipped (half the cost of a passing schedule).
func (r *Run) Stop() (*Schedule, *Result, error) {
	sched, res, err := r.Drain()
	if err != nil {
		return nil, nil, err
	}
	if res.clean() {
		return sched, res, nil
	}
	base, err := Baseline(r.ctx, sched)
	if err != nil {
		return nil, nil, fmt.Errorf("baseline: %w", err)
	}
	Blame(res, base)
	return sched, res, nil
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

func (l *opList) Next(*Run) (Op, bool) {
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
