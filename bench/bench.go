// Package bench measures badmac: messages per second through the harness
// against the raw libsignal loop in the same process, schedules per second,
// and how fast broken pairs are caught. `badmac bench` prints it; the
// testing.B benchmarks in this package cover the hot paths.
package bench

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/realclient"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// Raw runs n messages one way between two endpoints on the reference store
// with no harness: no scheduler, no trace, no oracle, no seeded reader. It
// is libsignal through whatsmeow's store.Device (record serialization
// included), as a bot runs it. Session setup is outside the timing.
func Raw(ctx context.Context, n int) (time.Duration, error) {
	t, err := RawTimed(ctx, n)
	return t.Wall, err
}

// Times are the wall and process CPU time of one measurement.
type Times struct{ Wall, CPU time.Duration }

// RawTimed is Raw with the CPU time of the loop as well.
func RawTimed(ctx context.Context, n int) (Times, error) {
	open := func(user string) (*endpoint.Endpoint, error) {
		return endpoint.OnReference(ctx, types.JID{User: user, Server: types.DefaultUserServer})
	}
	a, err := open("alice")
	if err != nil {
		return Times{}, err
	}
	b, err := open("bot")
	if err != nil {
		return Times{}, err
	}
	pks, err := b.Device.PreKeys.GetOrGenPreKeys(ctx, 1)
	if err != nil {
		return Times{}, err
	}
	if err := a.ProcessBundle(ctx, b.Address(), b.Bundle(pks[0])); err != nil {
		return Times{}, err
	}
	start, cpu := time.Now(), ProcessCPU()
	for i := range n {
		kind, ct, err := a.Encrypt(ctx, b.Address(), fmt.Appendf(nil, "m%d hello m%d", i, i))
		if err != nil {
			return Times{}, err
		}
		if _, err := b.DecryptDM(ctx, a.Address(), kind, ct); err != nil {
			return Times{}, fmt.Errorf("raw loop message %d: %w", i, err)
		}
	}
	return Times{Wall: time.Since(start), CPU: ProcessCPU() - cpu}, nil
}

// Conversation is the schedule the harness rate is measured on: n messages
// from one contact, each delivered and handled to its end, under the locked
// discipline (the same one-way traffic as Raw).
func Conversation(store string, n int) *harness.Schedule {
	s := &harness.Schedule{Seed: 1, Scenario: "bench", Discipline: harness.Locked, Store: store,
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Instances: 1}
	for i := 1; i <= n; i++ {
		m := fmt.Sprintf("m%d", i)
		s.Ops = append(s.Ops, harness.SendOp{Peer: "alice.0", Msg: m},
			harness.DeliverOp{ID: m}, harness.RunOp{Task: m})
	}
	return s
}

// HarnessTimes are the times of one conversation through the harness.
type HarnessTimes struct {
	Messages int
	// Run is the controlled run alone, setup to drain (no baseline).
	Run time.Duration
	// Baseline is the protocol baseline of the same schedule; badmac run
	// pays it only for schedules with a message not delivered cleanly.
	Baseline time.Duration
	// RunCPU and BaselineCPU are the process CPU times of the same.
	RunCPU, BaselineCPU time.Duration
}

// Harness runs Conversation(v.Name, n) through the harness in controlled
// mode and times the run and, with baseline, separately its baseline.
// Setup (store, prekeys, peers) is inside the timing, as it is for every
// schedule.
func Harness(ctx context.Context, v stores.Variant, n int, baseline bool) (HarnessTimes, error) {
	s := Conversation(v.Name, n)
	start, cpu := time.Now(), ProcessCPU()
	r, err := harness.Start(ctx, s, v, harness.Controlled)
	if err != nil {
		return HarnessTimes{}, err
	}
	for _, op := range s.Ops {
		if err := r.Apply(op); err != nil {
			r.Drain()
			return HarnessTimes{}, err
		}
	}
	sched, res, err := r.Drain()
	if err != nil {
		return HarnessTimes{}, err
	}
	t := HarnessTimes{Run: time.Since(start), RunCPU: ProcessCPU() - cpu}
	for _, m := range res.Messages {
		if m.Outcome() != harness.Delivered {
			return t, fmt.Errorf("store %s: bench message %s %s", v.Name, m.ID, m.Outcome())
		}
	}
	t.Messages = len(res.Messages)
	if !baseline {
		return t, nil
	}
	start, cpu = time.Now(), ProcessCPU()
	if _, err := harness.Baseline(ctx, sched); err != nil {
		return t, err
	}
	t.Baseline, t.BaselineCPU = time.Since(start), ProcessCPU()-cpu
	return t, nil
}

// Schedules runs n schedules of sc on (d, v) as badmac run does (baseline
// and shrinking included) and returns the time taken.
func Schedules(ctx context.Context, sc scenarios.Scenario, d harness.Discipline, v stores.Variant, n int, seed uint64) (time.Duration, error) {
	start := time.Now()
	_, err := scenarios.RunPair(ctx, sc, d, v, scenarios.Config{Mode: harness.Controlled, Policy: scenarios.Random, Seed: seed, Schedules: n, Workers: 1})
	return time.Since(start), err
}

// Broken is a pair known to fail, and the scenario that shows it.
type Broken struct {
	Discipline harness.Discipline
	Store      string
	Scenario   string
}

func (b Broken) String() string { return fmt.Sprintf("%s/%s/%s", b.Discipline, b.Store, b.Scenario) }

// BrokenPairs are the pairs `badmac bench` times to a first failure.
var BrokenPairs = []Broken{
	{harness.Concurrent, "mutexed", "reply"},
	{harness.Whatsmeow, "reference", "reply"},
	{harness.Locked, "cached", "replica"},
	{harness.Locked, "debounced", "crash"},
}

// FirstFailure is one trial of hunting a broken pair.
type FirstFailure struct {
	Schedules int           // schedules run up to and including the first failing one
	Time      time.Duration // time to find it (not to shrink it)
	ShrunkOps int           // ops in the shrunk counterexample
	Found     bool
}

// HuntFirstFailure runs schedules of b from seed until one fails (at most
// limit), then shrinks it with the given budget.
func HuntFirstFailure(ctx context.Context, b Broken, seed uint64, limit, shrinkBudget int) (FirstFailure, error) {
	sc, err := scenarios.Lookup(b.Scenario)
	if err != nil {
		return FirstFailure{}, err
	}
	v, err := stores.Lookup(b.Store)
	if err != nil {
		return FirstFailure{}, err
	}
	var f FirstFailure
	start := time.Now()
	for i := range limit {
		s := scenarios.SeedFor(seed, i)
		sched, res, err := harness.Execute(ctx, sc.Setup(s, b.Discipline, v.Name), v, harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, s))
		if err != nil {
			return f, err
		}
		f.Schedules = i + 1
		if !res.Failed() {
			continue
		}
		f.Time, f.Found = time.Since(start), true
		small, _, err := harness.Shrink(ctx, sched, v, harness.Controlled, shrinkBudget)
		if err != nil {
			return f, err
		}
		f.ShrunkOps = len(small.Ops)
		return f, nil
	}
	f.Time = time.Since(start)
	return f, nil
}

// Median returns the median of xs (the mean of the middle two for an even
// count); 0 for none.
func Median[T int | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := append([]T(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// findFailing returns schedule 0 of seed for b if it fails.
func findFailing(ctx context.Context, b Broken, seed uint64) (*harness.Schedule, bool) {
	sc, err := scenarios.Lookup(b.Scenario)
	if err != nil {
		return nil, false
	}
	v := stores.MustLookup(b.Store)
	s := scenarios.SeedFor(seed, 0)
	sched, res, err := harness.Execute(ctx, sc.Setup(s, b.Discipline, v.Name), v, harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, s))
	if err != nil || !res.Failed() {
		return nil, false
	}
	return sched, true
}

// RealClient runs Conversation(v.Name, n) on the real whatsmeow Client
// (realclient.Device, inline replies: none are asked for here) in
// controlled mode, the same one-way traffic as Harness: each message
// delivered and its receive run to its end ("run recv", the client's
// handler goroutine). Setup (server, database, login) is inside the timing.
func RealClient(ctx context.Context, v stores.Variant, n int) (Times, error) {
	s := Conversation(v.Name, n)
	for i, op := range s.Ops {
		if _, ok := op.(harness.RunOp); ok {
			s.Ops[i] = harness.RunOp{Task: "recv"}
		}
	}
	dev := &realclient.Device{Reply: realclient.Inline, Variant: &v}
	if v.Name == "sqlite" {
		dev.Variant = nil // whatsmeow's own sqlstore for the whole device
	}
	start, cpu := time.Now(), ProcessCPU()
	_, res, err := dev.Exec(ctx, s, harness.Controlled, harness.Ops(s.Ops))
	if err != nil {
		return Times{}, err
	}
	t := Times{Wall: time.Since(start), CPU: ProcessCPU() - cpu}
	for _, m := range res.Messages {
		if m.Outcome() != harness.Delivered {
			return t, fmt.Errorf("store %s: real client message %s %s", v.Name, m.ID, m.Outcome())
		}
	}
	return t, nil
}
