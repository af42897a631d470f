package baileys

import "context"

// Shrink deletes ops from a failing schedule while it still fails, within
// budget runs: chunks of half the ops, then smaller, down to single ops (as
// harness.Shrink does). Any subsequence of a schedule is a schedule; gate ids
// are numbered as gates are reached, so after a deletion a later "step gN"
// may name another gate or none: the reducer only keeps what still fails.
// It returns the smallest failing outcome found (o itself if none).
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
			if got.Result.Failed() {
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
