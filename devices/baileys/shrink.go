package baileys

import (
	"context"
	"slices"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
)

// Shrink deletes ops from a failing schedule while it still fails, within
// budget runs: chunks of half the ops, then smaller, down to single ops (as
// harness.Shrink does). Any subsequence of a schedule is a schedule; gate ids
// are numbered as gates are reached, so after a deletion a later "step gN"
// may name another gate or none: the reducer only keeps what still fails.
// A candidate is kept only if it fails the same way: the same worst failure
// class among its blamed messages, and regenerated credentials if o had
// them (a Bad MAC counterexample does not shrink into an old counter one).
// It returns the smallest such outcome found (o itself if none).
func (rn *Runner) Shrink(ctx context.Context, o *Outcome, budget int) (*Outcome, error) {
	best := o
	for chunk := len(best.Schedule.Ops) / 2; chunk >= 1 && budget > 0; {
		progress := false
		for start := 0; start+chunk <= len(best.Schedule.Ops) && budget > 0; {
			ops := append(append([]Op(nil), best.Schedule.Ops[:start]...), best.Schedule.Ops[start+chunk:]...)
			if len(ops) == 0 {
				start += chunk
				continue
			}
			cand := *best.Schedule
			cand.Ops = ops
			budget--
			got, err := rn.Run(ctx, &cand)
			if err != nil {
				return nil, err
			}
			if got.Result.Failed() && sameFailure(got.Result, o.Result) {
				best, progress = got, true
				continue // the same start now holds the next chunk
			}
			start += chunk
		}
		if !progress {
			chunk /= 2
		}
	}
	return best, nil
}

func sameFailure(a, b *harness.Result) bool {
	return a.RegeneratedCreds == b.RegeneratedCreds && worst(a) == worst(b)
}

// worst is the most severe failure class (endpoint.Classes order) among
// the blamed messages' failed attempts, "" when none failed an attempt.
func worst(res *harness.Result) endpoint.Class {
	best := len(endpoint.Classes)
	for _, m := range res.Messages {
		if !slices.Contains(res.Blamed, m.ID) {
			continue
		}
		for _, a := range m.Failures() {
			if i := slices.Index(endpoint.Classes, a.Class); i >= 0 && i < best {
				best = i
			}
		}
	}
	if best == len(endpoint.Classes) {
		return ""
	}
	return endpoint.Classes[best]
}
