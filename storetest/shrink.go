package storetest

import (
	"context"
	"strings"

	"github.com/badmac/badmac/harness"
)

// shrunk is a schedule with everything a failure report says about it.
type shrunk struct {
	sched  *harness.Schedule
	res    *harness.Result
	finds  []string
	blamed []string
}

// judge runs an explicit schedule on the store under test (controlled) and
// says what the store is to blame for: messages worse than on the
// reference store, and findings of the call trace.
func judge(ctx context.Context, s *subject, sched *harness.Schedule) (*shrunk, error) {
	s.takeTraces()
	out, res, err := harness.Execute(ctx, sched, s.variant(), harness.Controlled, harness.Ops(sched.Ops))
	if err != nil {
		return nil, err
	}
	j := &shrunk{sched: out, res: res, finds: diagnoseAll(s.takeTraces())}
	if res.Failed() {
		if j.blamed, err = worseThanReference(ctx, out, res, harness.Controlled); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// kind is what a shrink keeps: the first finding's shape (its words up to
// the first number) and the worst blamed class, whichever there are.
func (j *shrunk) kind() string {
	var k []string
	if len(j.finds) > 0 {
		f := j.finds[0]
		if i := strings.IndexAny(f, "0123456789"); i >= 0 {
			f = f[:i]
		}
		k = append(k, "finding:"+f)
	}
	if len(j.blamed) > 0 {
		k = append(k, "blamed:"+j.res.Signature())
	}
	return strings.Join(k, " ")
}

// shrink deletes ops from a failing schedule while it fails the same way,
// in halving chunks as harness.Shrink does, within budget runs. It judges
// by the trace as well as by the messages, so a store that answers wrongly
// before any message fails still shrinks. nil: the schedule did not fail
// when rerun.
func shrink(ctx context.Context, s *subject, sched *harness.Schedule, budget int) (*shrunk, error) {
	best, err := judge(ctx, s, sched)
	if err != nil {
		return nil, err
	}
	want := best.kind()
	if want == "" {
		return nil, nil
	}
	runs := 0
	try := func(ops []harness.Op) (bool, error) {
		if runs >= budget {
			return false, nil
		}
		runs++
		c := best.sched.Clone()
		c.Ops = ops
		j, err := judge(ctx, s, c)
		if err != nil || j.kind() != want {
			return false, err
		}
		best = j
		return true, nil
	}
	for chunk := len(best.sched.Ops) / 2; chunk >= 1; chunk /= 2 {
		for i := 0; i+chunk <= len(best.sched.Ops); {
			ops := append(append([]harness.Op(nil), best.sched.Ops[:i]...), best.sched.Ops[i+chunk:]...)
			ok, err := try(ops)
			if err != nil {
				return nil, err
			}
			if !ok {
				i += chunk
			}
		}
	}
	return best, nil
}
