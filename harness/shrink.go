package harness

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/badmac/badmac/stores"
)

// ShrinkOptions tune ShrinkWith.
type ShrinkOptions struct {
	// Budget bounds the candidate runs. Runs are counted as a one-at-a-time
	// shrink would count them (speculative candidates run past the first
	// that reproduces are free), so the result is the same for any Pool.
	Budget int
	// Time, if > 0, also stops shrinking after this long. The result then
	// depends on the machine's speed; badmac run leaves it 0.
	Time time.Duration
	// Pool runs candidates in parallel, as many as it has free tokens
	// (always at least one); nil runs them one at a time.
	Pool *Pool
	// Known, if set, is the judged result of s (a run just executed it),
	// which saves running it again.
	Known *Result
	// Progress, if set, is called after each batch of candidates.
	Progress func(ShrinkProgress)
	// Keep, if set, replaces "fails the same way" as what a candidate must
	// preserve (the library finding keeps "the baseline still fails").
	Keep func(*Result) bool
	// Device, if set, runs the candidates (RunOn) instead of the model on
	// the variant given.
	Device Device
}

// ShrinkProgress is what a progress display shows.
type ShrinkProgress struct {
	Pass       string // the reduction being tried
	Runs       int    // candidate runs counted against the budget
	Budget     int
	Ops        int // ops in the smallest failing schedule so far
	Contacts   int // contact devices in it
	StartOps   int
	TimedOut   bool
	Candidates int // candidates run, speculative ones included
}

// ShrinkKeeping is ShrinkWith preserving keep instead of the failure's
// signature: the library-failure finding is shrunk with keep "the baseline
// still fails a message".
func ShrinkKeeping(ctx context.Context, s *Schedule, v stores.Variant, mode Mode, o ShrinkOptions, keep func(*Result) bool) (*Schedule, *Result, error) {
	o.Keep = keep
	return ShrinkWith(ctx, s, v, mode, o)
}

// Shrink is ShrinkWith with a run budget only.
func Shrink(ctx context.Context, s *Schedule, v stores.Variant, mode Mode, budget int) (*Schedule, *Result, error) {
	return ShrinkWith(ctx, s, v, mode, ShrinkOptions{Budget: budget})
}

// ShrinkWith reduces a failing schedule while it still fails the same way
// (Signature: the worst blamed failure class). The reductions, cheapest and
// largest first, repeated until none applies or the budget is spent:
// drop a contact, then one device of a contact (every op of their
// messages with them); delete whole messages (every op naming one: send,
// deliver, step, run, read, dup, reply) in halves, quarters, … then one at
// a time; merge runs of `step T` into one `run T` each, all at once, then
// in halves, … one at a time; then delete ops the same way (pebble's
// metamorphic reducer, ddmin). A candidate that
// reproduces replaces the schedule at once; the explicit schedule it ran is
// what is kept, so the result replays byte for byte.
func ShrinkWith(ctx context.Context, s *Schedule, v stores.Variant, mode Mode, o ShrinkOptions) (*Schedule, *Result, error) {
	if o.Device == nil {
		o.Device = Model{Variant: v}
	}
	res := o.Known
	if res == nil {
		var err error
		if _, res, err = RunOn(ctx, o.Device, s, mode, Ops(s.Ops)); err != nil {
			return s, res, err
		}
	}
	if o.Keep == nil {
		want := res.Signature()
		o.Keep = func(r *Result) bool { return r.Failed() && r.Signature() == want }
	}
	if !o.Keep(res) {
		return s, res, nil
	}
	sh := &shrinker{ctx: ctx, v: v, mode: mode, o: o,
		best: s.Clone(), bestRes: res, tried: map[string]bool{}, start: time.Now()}
	sh.prog.Budget, sh.prog.StartOps = o.Budget, len(s.Ops)
	for !sh.done() {
		before := sh.size()
		sh.dropContacts()
		sh.ddmin("messages", func(s *Schedule) int { return len(messages(s)) }, deleteMessages)
		sh.ddmin("steps", stepRuns, mergeSteps)
		sh.ddmin("ops", func(s *Schedule) int { return len(s.Ops) }, func(s *Schedule, lo, hi int) *Schedule {
			c := s.Clone()
			c.Ops = append(c.Ops[:lo:lo], s.Ops[hi:]...)
			return c
		})
		if sh.size() == before {
			break
		}
	}
	return sh.best, sh.bestRes, nil
}

type shrinker struct {
	ctx     context.Context
	v       stores.Variant
	mode    Mode
	o       ShrinkOptions
	best    *Schedule
	bestRes *Result
	runs    int
	tried   map[string]bool // candidates run (serially counted) that did not reproduce
	start   time.Time
	prog    ShrinkProgress
}

// size orders schedules: fewer ops, then fewer contact devices.
func (sh *shrinker) size() int { return len(sh.best.Ops)*64 + devices(sh.best) }

func devices(s *Schedule) int {
	n := 0
	for _, c := range s.Contacts {
		n += c.Devices
	}
	return n
}

func (sh *shrinker) done() bool {
	if sh.runs >= sh.o.Budget || sh.ctx.Err() != nil {
		return true
	}
	if sh.o.Time > 0 && time.Since(sh.start) > sh.o.Time {
		sh.prog.TimedOut = true
		return true
	}
	return false
}

// first runs candidates gen(0), gen(1), … (nil: no candidate) in batches
// and returns the index of the first that fails the same way, having made
// it the best; -1 when none does or the budget ran out.
func (sh *shrinker) first(pass string, n int, gen func(i int) *Schedule) int {
	sh.prog.Pass = pass
	i := 0
	for i < n && !sh.done() {
		// Collect a batch: the next candidates not tried already, as many
		// as the pool lets run at once and the budget allows.
		type cand struct {
			i    int
			s    *Schedule
			text string
			ok   bool
			sch  *Schedule
			res  *Result
		}
		var batch []*cand
		room := sh.o.Budget - sh.runs
		for i < n && len(batch) < room {
			c := gen(i)
			if c == nil {
				i++
				continue
			}
			c.Tidy()
			text := c.String()
			if sh.tried[text] {
				i++
				continue
			}
			if len(batch) == 0 {
				if sh.o.Pool != nil && sh.o.Pool.Acquire(sh.ctx) != nil {
					return -1
				}
			} else if sh.o.Pool == nil || !sh.o.Pool.TryAcquire() {
				break // candidate i waits for the next batch
			}
			batch = append(batch, &cand{i: i, s: c, text: text})
			i++
		}
		if len(batch) == 0 {
			break
		}
		var wg sync.WaitGroup
		for _, c := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if sh.o.Pool != nil {
					defer sh.o.Pool.Release()
				}
				sch, r, err := RunOn(sh.ctx, sh.o.Device, c.s, sh.mode, Ops(c.s.Ops))
				c.ok = err == nil && sh.o.Keep(r)
				c.sch, c.res = sch, r
			}()
		}
		wg.Wait()
		sh.prog.Candidates += len(batch)
		for _, c := range batch {
			sh.runs++
			if c.ok {
				sh.best, sh.bestRes = c.sch, c.res
				sh.report()
				return c.i
			}
			sh.tried[c.text] = true
		}
		sh.report()
	}
	return -1
}

func (sh *shrinker) report() {
	if sh.o.Progress == nil {
		return
	}
	sh.prog.Runs, sh.prog.Ops, sh.prog.Contacts = sh.runs, len(sh.best.Ops), devices(sh.best)
	sh.o.Progress(sh.prog)
}

// ddmin deletes units (messages or ops) in chunks of half, a quarter, …
// one: a chunk that can go goes, and the next chunk is tried at the same
// place.
func (sh *shrinker) ddmin(pass string, count func(*Schedule) int, remove func(s *Schedule, lo, hi int) *Schedule) {
	chunk := count(sh.best) / 2
	if pass == "steps" {
		chunk = count(sh.best) // merging every run is one candidate worth a try
	}
	for ; chunk >= 1 && !sh.done(); chunk /= 2 {
		for pos := 0; pos < count(sh.best) && !sh.done(); {
			base, n := sh.best, count(sh.best)
			k := sh.first(pass, (n-pos+chunk-1)/chunk, func(i int) *Schedule {
				lo := pos + i*chunk
				return remove(base, lo, min(lo+chunk, n))
			})
			if k < 0 {
				break
			}
			pos += k * chunk
		}
	}
}

// dropContacts drops a whole contact, then one device of a contact, with
// every op of the messages they send or are sent.
func (sh *shrinker) dropContacts() {
	for {
		base := sh.best
		var cands []*Schedule
		for ci, c := range base.Contacts {
			if len(base.Contacts) > 1 {
				cands = append(cands, withoutPeers(base, ci, 0))
			}
			if c.Devices > 1 {
				cands = append(cands, withoutPeers(base, ci, c.Devices-1))
			}
		}
		if sh.first("contacts", len(cands), func(i int) *Schedule { return cands[i] }) < 0 {
			return
		}
	}
}

// withoutPeers drops contact ci's devices from dev on (dev 0: the contact)
// and every op that names them or their messages.
func withoutPeers(s *Schedule, ci, dev int) *Schedule {
	c := s.Clone()
	user := s.Contacts[ci].User
	if dev == 0 {
		c.Contacts = append(c.Contacts[:ci:ci], s.Contacts[ci+1:]...)
	} else {
		c.Contacts[ci].Devices = dev
	}
	gone := func(peer string) bool {
		u, d, ok := strings.Cut(peer, ".")
		if !ok || u != user {
			return false
		}
		n := 0
		for _, ch := range d {
			n = n*10 + int(ch-'0')
		}
		return n >= dev
	}
	drop := map[string]bool{}
	for _, op := range s.Ops {
		if p := peerOf(op); p != "" && gone(p) {
			if m := msgOf(op); m != "" {
				drop[m] = true
			}
		}
	}
	c.Ops = c.Ops[:0]
	for _, op := range s.Ops {
		if p := peerOf(op); (p != "" && gone(p)) || drop[msgOf(op)] {
			continue
		}
		c.Ops = append(c.Ops, op)
	}
	return c
}

// stepRuns counts the runs of two or more consecutive `step T` of one task.
func stepRuns(s *Schedule) int {
	n := 0
	for i := 0; i < len(s.Ops); {
		j := stepRunEnd(s.Ops, i)
		if j-i >= 2 {
			n++
		}
		i = max(j, i+1)
	}
	return n
}

func stepRunEnd(ops []Op, i int) int {
	first, ok := ops[i].(StepOp)
	if !ok {
		return i
	}
	j := i + 1
	for j < len(ops) && ops[j] == Op(first) {
		j++
	}
	return j
}

// mergeSteps replaces step runs lo..hi-1 (runs of two or more
// consecutive `step T` of one task) each by one `run T`.
func mergeSteps(s *Schedule, lo, hi int) *Schedule {
	c := s.Clone()
	c.Ops = c.Ops[:0]
	n := 0
	for i := 0; i < len(s.Ops); {
		j := stepRunEnd(s.Ops, i)
		if j-i >= 2 {
			if n >= lo && n < hi {
				c.Ops = append(c.Ops, RunOp{Task: s.Ops[i].(StepOp).Task})
			} else {
				c.Ops = append(c.Ops, s.Ops[i:j]...)
			}
			n++
			i = j
			continue
		}
		c.Ops = append(c.Ops, s.Ops[i])
		i++
	}
	return c
}

// msgOf is the message an op concerns: sends and replies name it, the
// others name a delivery or task ("m3", "m3.2": copy 2 of m3).
func msgOf(op Op) string {
	if msg, ok := SentBy(op); ok {
		return msg
	}
	if id, ok := Ref(op); ok {
		m, _, _ := strings.Cut(id, ".")
		return m
	}
	return ""
}

// peerOf is the contact device an op names, "alice.0", if any.
func peerOf(op Op) string {
	switch o := op.(type) {
	case SendOp:
		return o.Peer
	case GroupOp:
		return o.Peer
	case ReplyOp:
		return o.Peer
	case ReinstallOp:
		return o.Peer
	}
	return ""
}

// messages lists the messages a schedule's ops name, in order of first
// appearance.
func messages(s *Schedule) []string {
	seen := map[string]bool{}
	var out []string
	for _, op := range s.Ops {
		if m := msgOf(op); m != "" && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// deleteMessages removes messages lo..hi-1 (in order of appearance) with
// every op that names them.
func deleteMessages(s *Schedule, lo, hi int) *Schedule {
	drop := map[string]bool{}
	for _, m := range messages(s)[lo:hi] {
		drop[m] = true
	}
	c := s.Clone()
	c.Ops = c.Ops[:0]
	for _, op := range s.Ops {
		if !drop[msgOf(op)] {
			c.Ops = append(c.Ops, op)
		}
	}
	return c
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
