package procs

import (
	"github.com/badmac/badmac/harness"
)

// JudgeKill fills the verdict of real, a run a kill hit, by the harness's
// one judge (harness.Judge, docs/design.md §5 and §7): its protocol
// baseline is base, the same conversation unkilled; the same kill in
// process on the reference store (the model: every write durable when it
// returns) is both the store's comparison and what the kill explains by
// its cause. So real.StoreBlamed lists the messages worse than the model
// (harness.Worse: the database lost or rolled back something the model
// kept); real.LostToCrash those worse than unkilled but no worse than the
// model (the client's decrypt→store→ack, not the store's); real.Blamed
// those worse than both, and real.Failed() is the verdict. A kill whose
// last write may or may not have committed has two models: the one that
// blames the store least is kept (the store is blamed only when no model
// explains the run).
func JudgeKill(real, base *Run, models ...*Run) {
	best, least := -1, 0
	for i, m := range models {
		harness.Judge(real.Result, harness.Baselines{Protocol: base.Result, Restored: m.Result, Reference: m.Result})
		if best < 0 || len(real.StoreBlamed) < least {
			best, least = i, len(real.StoreBlamed)
		}
	}
	if best >= 0 {
		m := models[best]
		harness.Judge(real.Result, harness.Baselines{Protocol: base.Result, Restored: m.Result, Reference: m.Result})
	} else {
		harness.Judge(real.Result, harness.Baselines{Protocol: base.Result})
	}
	real.StoreJudged = best >= 0
}

// JudgeAlone fills the verdict of a run that has no baseline run of its
// own (two replicas: one process on one database delivers every message
// cleanly, which the tests check), by harness.Judge against an empty
// baseline: every message not delivered cleanly is blamed.
func JudgeAlone(r *Run) {
	harness.Judge(r.Result, harness.Baselines{Protocol: &harness.Result{}})
}
