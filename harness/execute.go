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
	// trace: every action of a controlled run, for the same-client run
	// to follow (follow.go).
	trace []action
	// killedUnacked: messages whose receive a crash killed after it had
	// stored the decrypt's state and before its ack (docs/design.md §7).
	killedUnacked []string
}

// Apply runs one op and records it, with what the same-client run needs
// to follow the run's interleaving on the reference store (follow.go). Ops
// that do not apply do nothing.
func (r *Run) Apply(op Op) error {
	err := r.applyOp(op)
	r.record(op)
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
// client: what the protocol survives without the buffer. A crash is a clean
// restart there (nothing is in flight, nothing is lost), and a rollback
// restores nothing.
func Baseline(ctx context.Context, s *Schedule) (*Result, error) {
	var res *Result
	err := baseline(ctx, s, Serial, func(r *Run) (err error) {
		for _, op := range s.Ops {
			if err = r.Apply(op); err != nil {
				return err
			}
		}
		res, err = r.Finish()
		return err
	})
	return res, err
}

// RestoreBaseline is the protocol baseline crashed and restored at the
// same points as cand, the candidate's run of s (Baselines.Restored): what
// a serial client on a perfect store loses to the same restores. The
// backups are taken and restored at the same ops. When cand is a
// controlled run of the model, each device task runs whole at the moment
// the candidate's task ended, not when it started: a backup then holds
// the tasks that had ended when the candidate's was taken, a crash kills
// the tasks the candidate's killed, and a restore loses what came after
// its backup as the candidate's does. Otherwise (another device, free
// mode) every task runs whole as it starts, as in Baseline.
func RestoreBaseline(ctx context.Context, s *Schedule, cand *Result) (*Result, error) {
	mode := Serial
	if cand != nil && cand.trace != nil {
		mode = Controlled // tasks parked until the candidate's end
	}
	var res *Result
	err := baseline(ctx, s, mode, func(r *Run) (err error) {
		r.restores, r.following = true, true
		if mode == Serial {
			for _, op := range s.Ops {
				if err = r.applyOp(op); err != nil {
					return err
				}
			}
		} else {
			if err := r.atEnds(cand.trace); err != nil {
				return err
			}
		}
		res, err = r.Finish()
		return err
	})
	return res, err
}

// atEnds applies a candidate's actions with each device task run whole at
// the action that ended the candidate's (RestoreBaseline). A backup or a
// crash, though, lands where the candidate's did inside the tasks that were
// running then: before it, each such task is advanced as far as the
// candidate's had got (its writes so far are in the backup; a crash
// abandons the rest), and the rest of it runs at its end.
func (r *Run) atEnds(trace []action) error {
	got := map[string]int{} // the candidate's progress of each task so far
	var order []string
	for _, a := range trace {
		switch a.op.(type) {
		case StepOp, RunOp:
			name, _ := TaskOf(a.op)
			if _, ok := got[name]; !ok {
				order = append(order, name)
			}
			got[name] = a.at
			if a.done {
				r.advance(name, 0, true)
			}
			continue
		case SnapshotOp, CrashOp, RollbackOp:
			for _, name := range order {
				r.advance(name, got[name], false)
			}
		}
		if err := r.applyOp(a.op); err != nil {
			return err
		}
	}
	return nil
}

// baseline opens the reference store in mode on the baseline's
// crypto/rand stream and runs fn on it.
func baseline(ctx context.Context, s *Schedule, mode Mode, fn func(r *Run) error) error {
	if s.Discipline == Txn {
		s = s.Clone()
		s.Discipline = Locked
	}
	var err error
	withSeededRandom(s.Seed, 1, func() {
		var r *Run
		r, err = Open(ctx, s, stores.MustLookup("reference"), mode)
		if err != nil {
			return
		}
		defer r.Close()
		err = fn(r)
	})
	return err
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
		return nil, false
	}
	l.i++
	return l.ops[l.i-1], true
}

// Ops is a Source that yields a fixed list.
func Ops(ops []Op) Source { return &opList{ops: ops} }

// HistoryText is the history as one text block.
func (res *Result) HistoryText() string { return strings.Join(res.History, "\n") + "\n" }

// applyOp runs one op and records it (Apply wraps it): the op dispatch.
// Ops that do not apply do nothing.
func (r *Run) applyOp(op Op) error {
	if r.err != nil {
		return r.err
	}
	r.sched.Ops = append(r.sched.Ops, op)
	ctx := r.ctx
	switch o := op.(type) {
	case SendOp, GroupOp:
		if err := r.Send(ctx, op, r.sched.Group); err != nil {
			r.fail(fmt.Errorf("%s: %w", op, err))
			return r.err
		}
	case DeliverOp:
		if r.down || o.Inst >= len(r.devs) {
			return nil
		}
		if d := r.Inbound(o); d != nil {
			r.startReceive(o.Inst, d)
		}
	case ReplyOp:
		if r.down || o.Inst >= len(r.devs) {
			return nil
		}
		p, msg, id, body, ok := r.Reply(o)
		if !ok {
			return nil
		}
		r.start(job{name: id, inst: o.Inst, kind: "send", addr: p.Address().String(), msg: msg,
			fn: func(ctx context.Context, d *device, tk *ticket, id string) {
				r.sendMessage(ctx, d, p, msg, id, body, tk)
			}})
	case StepOp:
		if r.sim == nil {
			return nil
		}
		t := r.tasks[o.Task]
		if t == nil || !t.Runnable() {
			return nil
		}
		r.sim.Step(t)
		r.afterStep()
	case RunOp:
		if r.sim == nil {
			return nil
		}
		// Only a receive that failed queues work for afterStep (a retry
		// receipt), after its last store call: nothing is left undone by
		// running the task through its yield points.
		if r.sim.Run(r.tasks[o.Task]) {
			r.afterStep()
		}
	case ReadOp:
		if d := r.Outbound(o); d != nil {
			r.read(d)
		}
	case DupOp:
		r.Dup(o)
	case CrashOp:
		r.crash(o.Mode)
	case StopOp:
		r.stop()
	case RestartOp:
		r.restart()
	case SnapshotOp:
		if sn, ok := r.storage.(stores.Snapshotter); ok && (r.mode != Serial || r.restores) {
			r.snap = sn.Snapshot()
			r.log("%s: backup of the durable state taken", op)
		}
	case RollbackOp:
		r.rollback()
	case ReinstallOp:
		if _, ok := r.Peer(o.Peer); !ok {
			return nil
		}
		if r.mode == Free {
			// In-flight sends read the peer's endpoint: like a crash, the
			// reinstall lands between free-mode tasks (go test -race).
			r.wg.Wait()
			r.afterStep()
		}
		if err := r.Reinstall(ctx, o); err != nil {
			r.fail(fmt.Errorf("%s: %w", op, err))
			return r.err
		}
	case RekeyOp:
		if err := r.Rekey(ctx, o); err != nil {
			r.fail(fmt.Errorf("%s: %w", op, err))
			return r.err
		}
	case WaitOp:
		// The model has no clock (stores keep logical time).
	default:
		return fmt.Errorf("device model does not implement op %s", op.Verb())
	}
	return r.err
}
