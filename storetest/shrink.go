package storetest

import (
	"context"
	"strings"
	"sync"

	"github.com/badmac/badmac/harness"
)

// shrunk is a schedule with everything a failure report says about it.
type shrunk struct {
	sched  *harness.Schedule
	res    *harness.Result
	finds  []string
	blamed []string
	log    *runLog // the run's traces and tally, merged by the caller
}

// judge runs an explicit schedule on the store under test (controlled) and
// says what the store is to blame for: messages worse than on the
// reference store, and findings of the call trace. The run's tally is in
// j.log; the caller merges it (s.tally.merge) if the run counts.
func judge(ctx context.Context, s *subject, sched *harness.Schedule) (*shrunk, error) {
	log := newRunLog()
	out, res, err := harness.Execute(ctx, sched, s.variant(log, sched.Instances, reopens(sched)), harness.Controlled, harness.Ops(sched.Ops))
	if err == nil {
		err = log.failure()
	}
	if err != nil {
		return nil, err
	}
	j := &shrunk{sched: out, res: res, finds: diagnoseAll(log.traces()), log: log}
	if res.Failed() {
		if j.blamed, err = worseThanReference(ctx, out, res); err != nil {
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
//
// Candidates run on the pool a batch at a time: the next pool.Size()
// deletions of the current pass, as if each before it fails. The first of
// the batch that keeps the failure is taken and the later ones are thrown
// away (their runs neither count against the budget nor reach the tally),
// so the result, the runs spent and the tally are those of trying the
// candidates one after another, for any pool size.
func shrink(ctx context.Context, s *subject, sched *harness.Schedule, budget int, pool *harness.Pool) (*shrunk, error) {
	best, err := judge(ctx, s, sched)
	if err != nil {
		return nil, err
	}
	s.tally.merge(best.log.tally)
	want := best.kind()
	if want == "" {
		return nil, nil
	}
	runs := 0
	for chunk := len(best.sched.Ops) / 2; chunk >= 1; chunk /= 2 {
		for i := 0; i+chunk <= len(best.sched.Ops); {
			if runs >= budget {
				return best, nil
			}
			var at []int
			for p := i; p+chunk <= len(best.sched.Ops) && len(at) < min(pool.Size(), budget-runs); p += chunk {
				at = append(at, p)
			}
			tried := make([]*shrunk, len(at))
			errs := make([]error, len(at))
			var wg sync.WaitGroup
			for k, p := range at {
				c := best.sched.Clone()
				c.Ops = append(append([]harness.Op(nil), best.sched.Ops[:p]...), best.sched.Ops[p+chunk:]...)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if errs[k] = pool.Acquire(ctx); errs[k] != nil {
						return
					}
					defer pool.Release()
					tried[k], errs[k] = judge(ctx, s, c)
				}()
			}
			wg.Wait()
			kept := -1
			for k := range at {
				runs++
				if errs[k] != nil {
					return nil, errs[k]
				}
				s.tally.merge(tried[k].log.tally)
				if tried[k].kind() == want {
					kept = k
					break
				}
			}
			if kept >= 0 {
				best, i = tried[kept], at[kept]
			} else {
				i = at[len(at)-1] + chunk
			}
		}
	}
	return best, nil
}
