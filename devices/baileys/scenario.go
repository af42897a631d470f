package baileys

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/badmac/badmac/harness"
)

// Scenario is a workload: contacts and a script of sends and replies; the
// generator interleaves deliveries, gate steps and reads at random around it.
type Scenario struct {
	Name     string
	Contacts []string
	Script   []Op
	// Dups: the generator may queue redelivered copies (reorder).
	Dups bool
}

// Scenarios are the device scenarios, named like the harness's.
var Scenarios = []Scenario{
	{Name: "burst", Contacts: []string{"alice"}, Script: sends("alice.0", "m", 1, 8)},
	{Name: "reply", Contacts: []string{"alice"}, Script: interleave(sends("alice.0", "m", 1, 6), replies("alice.0", "r", 1, 4))},
	{Name: "reorder", Contacts: []string{"alice"}, Script: sends("alice.0", "m", 1, 6), Dups: true},
	{Name: "multi", Contacts: []string{"alice", "bob"}, Script: interleave(
		interleave(sends("alice.0", "a", 1, 4), sends("bob.0", "b", 1, 4)),
		interleave(replies("alice.0", "ra", 1, 2), replies("bob.0", "rb", 1, 2)))},
	// torn: a conversation with replies, and a crash inside a creds.json
	// write part way (the multi-file state's torn creds).
	{Name: "torn", Contacts: []string{"alice"}, Script: append(append(
		interleave(sends("alice.0", "m", 1, 3), replies("alice.0", "r", 1, 2)), Op{Verb: "tear"}),
		interleave(sends("alice.0", "m", 4, 6), replies("alice.0", "r", 3, 4))...)},
}

// DefaultScenarios run by `badmac run -device` unless told otherwise.
var DefaultScenarios = []string{"burst", "reply", "reorder", "torn"}

// LookupScenario finds a scenario by name.
func LookupScenario(name string) (Scenario, error) {
	var names []string
	for _, s := range Scenarios {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("unknown device scenario %q (known: %s)", name, strings.Join(names, ", "))
}

func sends(peer, prefix string, from, to int) []Op {
	var out []Op
	for i := from; i <= to; i++ {
		out = append(out, Op{Verb: "send", Args: []string{peer, fmt.Sprintf("%s%d", prefix, i)}})
	}
	return out
}

func replies(peer, prefix string, from, to int) []Op {
	var out []Op
	for i := from; i <= to; i++ {
		out = append(out, Op{Verb: "reply", Args: []string{peer, fmt.Sprintf("%s%d", prefix, i)}})
	}
	return out
}

// interleave merges b into a, one of b after every len(a)/len(b) of a.
func interleave(a, b []Op) []Op {
	var out []Op
	every := max(1, len(a)/max(1, len(b)))
	for i, op := range a {
		out = append(out, op)
		if (i+1)%every == 0 && len(b) > 0 {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(out, b...)
}

// Generator picks the next op of a generated schedule.
type Generator interface {
	Next(r *run, rng *rand.Rand) (Op, bool)
}

// scriptGen walks the script, choosing at random between the next scripted
// op, a delivery, a gate step, a read and (Dups) a redelivery. A reply
// waits until the bot has heard from its contact (it has a session); a
// step is twice as likely as anything else, so tasks overlap.
type scriptGen struct {
	sc   Scenario
	next int
}

// NewGenerator is the generator of a scenario.
func NewGenerator(sc Scenario) Generator { return &scriptGen{sc: sc} }

func (g *scriptGen) Next(r *run, rng *rand.Rand) (Op, bool) {
	if g.next >= len(g.sc.Script) {
		return Op{}, false
	}
	in, out := r.srv.Pending()
	var cs []Op
	scripted := g.sc.Script[g.next]
	canScript := scripted.Verb != "reply" || r.heard[scripted.Args[0]] > 0
	if canScript {
		cs = append(cs, scripted)
	}
	if len(in) > 0 {
		cs = append(cs, Op{Verb: "deliver", Args: []string{in[rng.IntN(len(in))]}})
	}
	if len(r.parked) > 0 {
		for range 2 {
			cs = append(cs, Op{Verb: "step", Args: []string{r.parked[rng.IntN(len(r.parked))].id}})
		}
	}
	if len(out) > 0 {
		cs = append(cs, Op{Verb: "read", Args: []string{out[rng.IntN(len(out))]}})
	}
	if g.sc.Dups && len(r.delivered) > 0 && rng.IntN(4) == 0 {
		ids := make([]string, 0, len(r.delivered))
		for id := range r.delivered {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		cs = append(cs, Op{Verb: "dup", Args: []string{ids[rng.IntN(len(ids))]}})
	}
	if len(cs) == 0 {
		// Nothing else can happen: the reply goes ahead without a session
		// (the device reports it cannot send; the baseline does the same).
		cs = append(cs, scripted)
	}
	op := cs[rng.IntN(len(cs))]
	if op.Verb == scripted.Verb && len(op.Args) == len(scripted.Args) && op.String() == scripted.String() {
		g.next++
	}
	return op, true
}

// Outcome is one schedule's verdict.
type Outcome struct {
	Schedule *Schedule // as applied: replays
	Result   *harness.Result
}

// Run runs one schedule: generated from its scenario when it has no ops,
// replayed otherwise; judged against its protocol baseline (the same
// schedule, every task run to its end as it starts, on the locked variant
// of the same Baileys version) when any message was not delivered cleanly.
func (rn *Runner) Run(ctx context.Context, s *Schedule) (*Outcome, error) {
	var gen Generator
	if len(s.Ops) == 0 {
		sc, err := LookupScenario(s.Scenario)
		if err != nil {
			return nil, err
		}
		gen = NewGenerator(sc)
	}
	res, applied, err := rn.Exec(ctx, s, false, gen)
	if err != nil {
		return nil, err
	}
	clean := !res.RegeneratedCreds
	for _, m := range res.Messages {
		clean = clean && m.Outcome() == harness.Delivered
	}
	base := res
	if !clean {
		if base, _, err = rn.Exec(ctx, applied, true, nil); err != nil {
			return nil, fmt.Errorf("protocol baseline: %w", err)
		}
	}
	harness.Blame(res, base)
	return &Outcome{Schedule: applied, Result: res}, nil
}
