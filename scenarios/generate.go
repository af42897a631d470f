package scenarios

import (
	"fmt"
	"math/rand/v2"

	"github.com/badmac/badmac/harness"
)

// Policy picks which task runs at each yield point.
type Policy string

const (
	// Random steps a uniformly chosen runnable task.
	Random Policy = "random"
	// PCT (probabilistic concurrency testing) runs the highest-priority
	// runnable task and demotes the running one at a few random points,
	// which finds bugs of small depth with good probability.
	PCT Policy = "pct"
)

// Policies lists the policies.
var Policies = []Policy{Random, PCT}

// ParsePolicy checks a policy name.
func ParsePolicy(s string) (Policy, error) {
	for _, p := range Policies {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("unknown policy %q (known: random, pct)", s)
}

// Generator is a harness.Source that produces a scenario's workload with a
// seeded scheduling policy. It reacts to the run (which tasks are live,
// what is queued), and the run records every op, so the schedule it leaves
// behind is explicit and replays without the generator.
type Generator struct {
	sc      Scenario
	policy  Policy
	rng     *rand.Rand
	sent    int
	replies int
	ops     int
	prio    map[string]int
	change  map[int]bool
	// pendingReply holds a reply the bot decided to send after a receive.
	wantReply []string
	seenDone  map[string]int
	// Crash scenarios: ops queued to follow the current one, and the op
	// numbers at which the device crashes.
	queue   []harness.Op
	crashAt map[int]bool
	snapped bool
	lid     *lidGen // LID scenarios (lid.go)
	// burstLeft is what the current burst still sends (BurstMax).
	burstLeft int
	// drops is the network drops decided (drop=P) and not yet made.
	drops int
}

// maxOps bounds a schedule's length: 600, or 20 ops a message for a
// scenario with more messages (messages=N, params.go).
const maxOps = 600

func (s Scenario) maxOps() int { return max(maxOps, 20*s.Messages) }

// NewGenerator returns the generator for one schedule.
func NewGenerator(sc Scenario, policy Policy, seed uint64) *Generator {
	g := &Generator{sc: sc, policy: policy, rng: rand.New(rand.NewPCG(seed, 0x62_61_64_6d_61_63)),
		prio: map[string]int{}, change: map[int]bool{}, seenDone: map[string]int{}}
	// PCT with depth 3: two priority change points among the first ops.
	for range 2 {
		g.change[g.rng.IntN(8*sc.Messages+1)] = true
	}
	if sc.First {
		// The bot opens the conversation with every contact device.
		for _, p := range sc.peerNames() {
			g.replies++
			g.queue = append(g.queue, harness.ReplyOp{Peer: p, Msg: fmt.Sprintf("r%d", g.replies)})
		}
	}
	if sc.Crash != "" || len(sc.Mix) > 0 {
		g.crashAt = map[int]bool{}
		for range sc.crashes() {
			g.crashAt[1+g.rng.IntN(8*sc.Messages)] = true
		}
	}
	g.lid = newLIDGen(sc, g.rng)
	return g
}

func (g *Generator) msgName(n int) string {
	if g.sc.Group {
		return fmt.Sprintf("g%d", n)
	}
	return fmt.Sprintf("m%d", n)
}

// Next implements harness.Source.
func (g *Generator) Next(r harness.View) (harness.Op, bool) {
	op, ok := g.choose(r)
	if ok && g.sc.Overlap {
		// Either process takes it, while the other runs.
		switch o := op.(type) {
		case harness.DeliverOp:
			o.Inst = g.rng.IntN(g.sc.Instances)
			op = o
		case harness.ReplyOp:
			o.Inst = g.rng.IntN(g.sc.Instances)
			op = o
		}
	}
	return op, ok
}

func (g *Generator) choose(r harness.View) (harness.Op, bool) {
	g.ops++
	if g.ops > g.sc.maxOps() {
		return nil, false
	}
	if len(g.queue) > 0 {
		op := g.queue[0]
		g.queue = g.queue[1:]
		return op, true
	}
	if g.crashAt[g.ops] && !r.Down() {
		return g.crashOp(r), true
	}
	if op, ok := g.lidOp(); ok {
		return op, true
	}
	peers := g.sc.peerNames()
	// The bot decides to reply when a receive from a peer completes.
	for _, p := range peers {
		if n := r.HeardFrom(p); n > g.seenDone[p] {
			for range n - g.seenDone[p] {
				if g.sc.Reply > 0 && g.rng.Float64() < g.sc.Reply {
					g.wantReply = append(g.wantReply, p)
				}
			}
			g.seenDone[p] = n
		}
	}
	in, out := r.Pending()
	runnable := r.Runnable()
	if g.sc.Instances > 1 && !g.sc.Overlap {
		return g.nextReplica(r, peers, in, out, runnable)
	}
	type choice struct {
		w  float64
		op func() harness.Op
	}
	var cs []choice
	if g.sc.BurstMax > 0 && g.sent < g.sc.Messages {
		// Bursts: 1..BurstMax sends back to back, the next burst once
		// every stanza is delivered, every reply sent and read.
		if g.burstLeft == 0 && len(in) == 0 && len(out) == 0 && len(runnable) == 0 && len(g.wantReply) == 0 && g.drops == 0 {
			g.burstLeft = 1 + g.rng.IntN(g.sc.BurstMax)
		}
		if g.burstLeft > 0 {
			g.burstLeft--
			g.sent++
			if g.burstLeft == 0 {
				g.maybeDrop()
			}
			return g.sendOp(peers), true
		}
	}
	if g.sent < g.sc.Messages && g.sc.BurstMax == 0 {
		w := 1.0
		if g.sc.Burst {
			w = 50
		}
		cs = append(cs, choice{w, func() harness.Op {
			g.sent++
			g.maybeDrop()
			return g.sendOp(peers)
		}})
	}
	if len(in) > 0 {
		cs = append(cs, choice{2, func() harness.Op {
			d := in[0]
			if g.sc.Reorder {
				d = in[g.rng.IntN(len(in))]
			}
			return harness.DeliverOp{ID: d}
		}})
	}
	if len(g.wantReply) > 0 {
		cs = append(cs, choice{2, func() harness.Op {
			p := g.wantReply[0]
			g.wantReply = g.wantReply[1:]
			g.replies++
			return harness.ReplyOp{Peer: p, Msg: fmt.Sprintf("r%d", g.replies)}
		}})
	}
	if len(out) > 0 {
		cs = append(cs, choice{1, func() harness.Op {
			d := out[0]
			if g.sc.Reorder {
				d = out[g.rng.IntN(len(out))]
			}
			return harness.ReadOp{ID: d}
		}})
	}
	if g.drops > 0 {
		cs = append(cs, choice{1, func() harness.Op {
			g.drops--
			return harness.DropOp{}
		}})
	}
	if g.sc.Reorder {
		if done := r.Delivered(); len(done) > 0 && g.rng.IntN(6) == 0 {
			cs = append(cs, choice{0.5, func() harness.Op {
				return harness.DupOp{ID: done[g.rng.IntN(len(done))]}
			}})
		}
	}
	if len(runnable) > 0 {
		cs = append(cs, choice{4, func() harness.Op {
			return harness.StepOp{Task: g.pick(runnable)}
		}})
	}
	if len(cs) == 0 {
		return nil, false
	}
	total := 0.0
	for _, c := range cs {
		total += c.w
	}
	x := g.rng.Float64() * total
	for _, c := range cs {
		if x < c.w {
			return c.op(), true
		}
		x -= c.w
	}
	return cs[len(cs)-1].op(), true
}

// pick chooses the task to step under the policy.
func (g *Generator) pick(runnable []string) string {
	if g.policy != PCT {
		return runnable[g.rng.IntN(len(runnable))]
	}
	best := ""
	for _, t := range runnable {
		if _, ok := g.prio[t]; !ok {
			g.prio[t] = 10 + g.rng.IntN(1000)
		}
		if best == "" || g.prio[t] > g.prio[best] {
			best = t
		}
	}
	if g.change[g.ops] {
		g.prio[best] = g.rng.IntN(10) // demote below every fresh task
	}
	return best
}

// nextReplica drives the replica scenario: device processes take turns, each
// delivery and reply handled to its end by one instance, so any failure is
// from state one process did not see the other write.
func (g *Generator) nextReplica(r harness.View, peers, in, out, runnable []string) (harness.Op, bool) {
	inst := g.rng.IntN(g.sc.Instances)
	switch {
	case len(runnable) > 0:
		return harness.RunOp{Task: runnable[0]}, true
	case len(out) > 0:
		return harness.ReadOp{ID: out[0]}, true
	case len(g.wantReply) > 0:
		p := g.wantReply[0]
		g.wantReply = g.wantReply[1:]
		g.replies++
		return harness.ReplyOp{Peer: p, Msg: fmt.Sprintf("r%d", g.replies), Inst: inst}, true
	case len(in) > 0:
		return harness.DeliverOp{ID: in[0], Inst: inst}, true
	case g.sent < g.sc.Messages:
		g.sent++
		return g.sendOp(peers), true
	}
	return nil, false
}

// maybeDrop decides, with the scenario's chance (drop=P; no draw when it
// is 0, so that the schedules of a scenario without it stay as they were),
// that a network drop follows the send being made. The drop is then one of
// the generator's choices, among the deliveries, replies and reads of what
// was sent (and before the next burst): it lands while the device is at
// work, a handler mid-decrypt or mid-reply, as a real drop does, not only
// between bursts when nothing is in flight.
func (g *Generator) maybeDrop() {
	if g.sc.Drop > 0 && g.rng.Float64() < g.sc.Drop {
		g.drops++
	}
}

// sendOp is a new message g.sent from a random peer: a group message in a
// group scenario.
func (g *Generator) sendOp(peers []string) harness.Op {
	p := peers[g.rng.IntN(len(peers))]
	if g.sc.Group {
		return harness.GroupOp{Peer: p, Msg: g.msgName(g.sent)}
	}
	return harness.SendOp{Peer: p, Msg: g.msgName(g.sent)}
}

// crashes is how many crashes a schedule of the scenario has.
func (s Scenario) crashes() int {
	if s.Crashes > 0 && (s.Crash != "" || len(s.Mix) > 0) {
		return s.Crashes
	}
	switch s.Crash {
	case "":
		return 0
	case CrashRestart:
		return 3
	case CrashRollback:
		return 2
	case CrashIdle:
		return 3
	}
	return 1
}

// crashOp is the scenario's crash (queueing what follows it).
func (g *Generator) crashOp(r harness.View) harness.Op {
	op := harness.CrashOp{}
	kind := g.sc.Crash
	if len(g.sc.Mix) > 0 {
		kind = g.sc.Mix[g.rng.IntN(len(g.sc.Mix))]
	}
	switch kind {
	case CrashRollback:
		if !g.snapped {
			g.snapped = true
			return harness.SnapshotOp{}
		}
		return harness.RollbackOp{}
	case CrashReinstall, CrashRekey:
		peers := g.sc.peerNames()
		p := peers[g.rng.IntN(len(peers))]
		if kind == CrashRekey {
			return harness.RekeyOp{Peer: p}
		}
		return harness.ReinstallOp{Peer: p}
	case CrashTorn:
		// Each pending write kept, dropped or torn at random.
		n := r.PendingWrites()
		b := make([]byte, n)
		for i := range b {
			b[i] = "kdg"[g.rng.IntN(3)]
		}
		op.Mode = string(b)
	case CrashIdle:
		return harness.WaitOp{Seconds: 360}
	case CrashRestart:
		// A clean restart: let the device finish what it is doing first.
		for _, t := range r.Runnable() {
			g.queue = append(g.queue, harness.RunOp{Task: t})
		}
		g.queue = append(g.queue, harness.StopOp{}, harness.RestartOp{})
		return g.next()
	}
	g.queue = append(g.queue, harness.RestartOp{})
	return op
}

// next pops the queue.
func (g *Generator) next() harness.Op {
	op := g.queue[0]
	g.queue = g.queue[1:]
	return op
}
