package harness

import (
	"context"

	"github.com/badmac/badmac/stores"
)

// Shrink deletes ops from a failing schedule while it still fails with a
// failure of the same kind (a blamed message with the same worst class),
// first in large chunks, then one at a time (as pebble's metamorphic
// reducer does). budget bounds the number of runs it may spend.
func Shrink(ctx context.Context, s *Schedule, v stores.Variant, mode Mode, budget int) (*Schedule, *Result, error) {
	_, res, err := Execute(ctx, s, v, mode, Ops(s.Ops))
	if err != nil || !res.Failed() {
		return s, res, err
	}
	want := res.Signature()
	best, bestRes := s.Clone(), res
	runs := 0
	try := func(ops []Op) bool {
		if runs >= budget {
			return false
		}
		runs++
		c := best.Clone()
		c.Ops = ops
		sched, r, err := Execute(ctx, c, v, mode, Ops(ops))
		if err != nil || !r.Failed() || r.Signature() != want {
			return false
		}
		best, bestRes = sched, r
		return true
	}
	for chunk := len(best.Ops) / 2; chunk >= 1; chunk /= 2 {
		for i := 0; i+chunk <= len(best.Ops); {
			ops := append(append([]Op(nil), best.Ops[:i]...), best.Ops[i+chunk:]...)
			if !try(ops) {
				i += chunk
			}
		}
	}
	return best, bestRes, nil
}

// Signature is what a shrink must preserve: the worst blamed failure class
// (Bad MAC first), or the worst outcome when no attempt failed.
func (res *Result) Signature() string {
	blamed := map[string]bool{}
	for _, id := range res.Blamed {
		blamed[id] = true
	}
	rank := map[string]int{}
	for _, m := range res.Messages {
		if !blamed[m.ID] {
			continue
		}
		for _, a := range m.Failures() {
			rank[string(a.Class)]++
		}
		rank["outcome:"+string(m.Outcome())]++
	}
	if res.RegeneratedCreds {
		return "RegeneratedCreds"
	}
	if res.StartRefused {
		return "StartRefused"
	}
	if res.LostPreKeys > 0 {
		return "LostPreKeys"
	}
	for _, k := range []string{"BadMAC", "OldCounter", "NoSession", "InvalidPreKey", "UntrustedIdentity", "NoSenderKey", "StoreError", "Other",
		"outcome:wrong", "outcome:duplicate", "outcome:lost", "outcome:recovered"} {
		if rank[k] > 0 {
			return k
		}
	}
	return ""
}
