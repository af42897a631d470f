package harness

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/badmac/badmac/stores"
)

// CrashPoint is one crash injected right after a store write.
type CrashPoint struct {
	K        int    // the crash lands right after the K-th completed write
	Location string // "after PutSession alice:0 (m3, write 5), before RemovePreKey (m3)"
	Pending  int    // writes the storage had not made durable at the crash
	Mode     string // what the crash did with each pending write (k, d, g)
	Schedule *Schedule
	Result   *Result
	// LostToCrash lists the messages worse than in the protocol baseline
	// that the crash explains by its cause (Result.LostToCrash): killed
	// between the decrypt's store write and the ack, the client's
	// load→decrypt→store→ack not being atomic (whatsmeow's decrypted-event
	// buffer in a transaction is the cure). StoreBlamed lists the messages
	// worse than on the reference store.
	LostToCrash []string
	StoreBlamed []string
}

// StoreFailed reports whether the store itself is blamed at this point:
// messages the reference store survives, or credentials.
func (p CrashPoint) StoreFailed() bool {
	return len(p.StoreBlamed) > 0 || p.Result.RegeneratedCreds || p.Result.StartRefused || p.Result.LostPreKeys > 0
}

// String is the readable form of a failing point.
func (p CrashPoint) String() string {
	mode := ""
	if p.Mode != "" {
		mode = fmt.Sprintf(" mode %s", p.Mode)
	}
	client := ""
	if len(p.LostToCrash) > 0 {
		client = fmt.Sprintf(" (lost to the crash: %s)", strings.Join(p.Result.describe(p.LostToCrash), "; "))
	}
	return fmt.Sprintf("crash %s [%d pending%s]: %s%s", p.Location, p.Pending, mode, p.Result.failures(), client)
}

// CrashReport is a crash-point enumeration over one conversation.
type CrashReport struct {
	Store  string
	Writes int          // write points in the crash-free run
	Runs   int          // runs made (one per point and mode)
	Points []CrashPoint // every point run
	Failed []CrashPoint // the points where the store is blamed (StoreFailed)
	// LostToCrash are the points whose only losses the crash explains.
	LostToCrash []CrashPoint
	Counts      Counts // totals over every run (blamed against the serial baseline)
	// StoreBlamed totals the messages the store is blamed for beyond the
	// reference store under the same crashes.
	StoreBlamed int
}

// CrashOptions tunes an enumeration.
type CrashOptions struct {
	// Modes returns the crash modes to try at a point with n pending writes
	// (nil: one crash that drops every pending write).
	Modes func(pending int) []string
	// Every enumerates every Every-th write point (0 or 1: all of them);
	// sampling for long schedules.
	Every int
}

// EnumerateCrashes runs base (an explicit schedule, as a generator left it)
// once on v to count its store-write points, then once per write point k
// (and per mode) with a crash injected right after the k-th write, a
// restart, and the rest of the conversation. Every run is fully explicit
// (run ops become steps, the final drain becomes ops, the crash and restart
// are ops), so each point's Schedule replays byte for byte.
func EnumerateCrashes(ctx context.Context, base *Schedule, v stores.Variant, opt CrashOptions) (*CrashReport, error) {
	setup := base.Clone()
	setup.Store = v.Name
	setup.Ops = nil
	_, res, writes, err := runCrash(ctx, setup, base.Ops, v, 0, nil)
	if err != nil {
		return nil, err
	}
	rep := &CrashReport{Store: v.Name, Writes: writes}
	if res.Failed() {
		return nil, fmt.Errorf("%s fails without a crash: %s", v.Name, res.Summary())
	}
	step := max(opt.Every, 1)
	for k := 1; k <= writes; k += step {
		var pending int
		var loc string
		modes := []string{""}
		first := true
		for i := 0; i < len(modes); i++ {
			pick := func(r *Run) string {
				if first {
					pending, loc = r.PendingWrites(), r.WriteLocation(k)
					if opt.Modes != nil {
						modes = opt.Modes(pending)
					}
					first = false
				}
				return modes[i]
			}
			sched, res, _, err := runCrash(ctx, setup, base.Ops, v, k, pick)
			if err != nil {
				return nil, fmt.Errorf("crash after write %d: %w", k, err)
			}
			rep.Runs++
			p := CrashPoint{K: k, Location: loc, Pending: pending, Mode: modes[i], Schedule: sched, Result: res}
			p.judge()
			rep.Points = append(rep.Points, p)
			rep.Counts.Add(res.Counts())
			rep.StoreBlamed += len(p.StoreBlamed)
			switch {
			case p.StoreFailed():
				rep.Failed = append(rep.Failed, p)
			case len(p.LostToCrash) > 0:
				rep.LostToCrash = append(rep.LostToCrash, p)
			}
		}
	}
	return rep, nil
}

// judge takes the point's verdict from its run (Stop judged it): the
// messages lost to the crash, and those the reference store under the same
// client and crash does not lose (store-blamed).
func (p *CrashPoint) judge() {
	p.LostToCrash = p.Result.LostToCrash
	if p.Result.StoreJudged {
		p.StoreBlamed = p.Result.StoreBlamed
	}
}

// runCrash runs ops with a crash after write k (k 0: none) and returns the
// explicit schedule, the judged result and the writes counted.
func runCrash(ctx context.Context, setup *Schedule, ops []Op, v stores.Variant, k int, mode func(*Run) string) (*Schedule, *Result, int, error) {
	r, err := Start(ctx, setup, v, Controlled)
	if err != nil {
		return nil, nil, 0, err
	}
	if err := r.Drive(&crashSource{ops: ops, k: k, mode: mode}); err != nil {
		return nil, nil, 0, err
	}
	writes := r.WritesDone()
	sched, res, err := r.Stop()
	return sched, res, writes, err
}

// crashSource replays ops with every run expanded into steps, injects
// crash+restart once k writes have completed, then drains explicitly.
type crashSource struct {
	ops     []Op
	i       int
	running string // task a run op is stepping
	k       int
	mode    func(*Run) string
	crashed bool
	queue   []Op
}

// Next needs the model's own run (its store-write count): crash points are
// enumerated on the in-process model only.
func (s *crashSource) Next(v View) (Op, bool) {
	r := v.(*Run)
	if len(s.queue) > 0 {
		op := s.queue[0]
		s.queue = s.queue[1:]
		return op, true
	}
	if s.k > 0 && !s.crashed && r.WritesDone() >= s.k {
		s.crashed = true
		s.running = ""
		c := CrashOp{Mode: s.mode(r)}
		s.queue = append(s.queue, RestartOp{})
		return c, true
	}
	if s.running != "" {
		if slices.Contains(r.Runnable(), s.running) {
			return StepOp{Task: s.running}, true
		}
		s.running = ""
	}
	if s.i < len(s.ops) {
		op := s.ops[s.i]
		s.i++
		if o, ok := op.(RunOp); ok {
			s.running = o.Task
			return s.Next(r)
		}
		return op, true
	}
	// Drain as Finish does, but as ops.
	if r.Down() {
		return RestartOp{}, true
	}
	if rs := r.Runnable(); len(rs) > 0 {
		return StepOp{Task: rs[0]}, true
	}
	in, out := r.Pending()
	if len(in) > 0 {
		return DeliverOp{ID: in[0]}, true
	}
	if len(out) > 0 {
		return ReadOp{ID: out[0]}, true
	}
	return nil, false
}

// Text is the readable report: one line per failing point with the
// schedule that replays it.
func (rep *CrashReport) Text(schedules bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "store %s: %d write points, %d runs, %d store-blamed, %d lost to the crash only\n",
		rep.Store, rep.Writes, rep.Runs, len(rep.Failed), len(rep.LostToCrash))
	for _, p := range rep.LostToCrash {
		fmt.Fprintf(&b, "  lost to the crash: %s\n", p)
	}
	for _, p := range rep.Failed {
		fmt.Fprintf(&b, "  %s\n", p)
		if schedules {
			for _, line := range strings.Split(strings.TrimSpace(p.Schedule.String()), "\n") {
				fmt.Fprintf(&b, "    | %s\n", line)
			}
		}
	}
	return b.String()
}
