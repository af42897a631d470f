package scenarios

import (
	"context"
	"fmt"

	"pgregory.net/rapid"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// RapidRun runs one schedule of sc on (d, v) in controlled mode whose ops
// are drawn by rapid's state-machine API (t.Repeat): every action is an op
// applied to the live run, so rapid's shrinking deletes ops and simplifies
// choices until the counterexample is minimal. It returns the explicit
// schedule and its judged result.
func RapidRun(t *rapid.T, sc Scenario, d harness.Discipline, v stores.Variant) (*harness.Schedule, *harness.Result) {
	seed := rapid.Uint64Range(1, 1<<20).Draw(t, "seed")
	setup := sc.Setup(seed, d, v.Name)
	r, err := harness.Start(context.Background(), setup, v, harness.Controlled)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			r.Stop()
		}
	}()
	peers := sc.peerNames()
	sent, replies := 0, 0
	apply := func(t *rapid.T, op harness.Op) {
		if err := r.Apply(op); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	pick := func(t *rapid.T, xs []string, label string) string {
		if len(xs) == 0 {
			t.Skip("nothing to " + label)
		}
		return rapid.SampledFrom(xs).Draw(t, label)
	}
	step := func(t *rapid.T) {
		apply(t, harness.StepOp{Task: pick(t, r.Runnable(), "task")})
	}
	actions := map[string]func(*rapid.T){
		"send": func(t *rapid.T) {
			if sent >= sc.Messages {
				t.Skip("all sent")
			}
			sent++
			peer := rapid.SampledFrom(peers).Draw(t, "peer")
			if sc.Group {
				apply(t, harness.GroupOp{Peer: peer, Msg: fmt.Sprintf("g%d", sent)})
			} else {
				apply(t, harness.SendOp{Peer: peer, Msg: fmt.Sprintf("m%d", sent)})
			}
		},
		"deliver": func(t *rapid.T) {
			in, _ := r.Pending()
			apply(t, harness.DeliverOp{ID: pick(t, in, "delivery")})
		},
		"read": func(t *rapid.T) {
			_, out := r.Pending()
			apply(t, harness.ReadOp{ID: pick(t, out, "reply")})
		},
		// Stepping is listed three times so that interleavings get as much
		// weight as new work.
		// wait does nothing: it keeps an action valid when all work is done.
		"wait":  func(*rapid.T) {},
		"step":  step,
		"step2": step,
		"step3": step,
	}
	if sc.Reply > 0 {
		actions["reply"] = func(t *rapid.T) {
			var heard []string
			for _, p := range peers {
				if r.HeardFrom(p) > 0 {
					heard = append(heard, p)
				}
			}
			p := pick(t, heard, "peer heard from")
			replies++
			apply(t, harness.ReplyOp{Peer: p, Msg: fmt.Sprintf("r%d", replies)})
		}
	}
	if sc.Reorder {
		actions["dup"] = func(t *rapid.T) {
			apply(t, harness.DupOp{ID: pick(t, r.Delivered(), "delivered")})
		}
	}
	t.Repeat(actions)
	stopped = true
	sched, res, err := r.Stop()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return sched, res
}
