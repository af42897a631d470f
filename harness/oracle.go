package harness

import (
	"fmt"
	"math"
	"strings"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
)

// Direction of a message.
const (
	In  = "in"  // from a peer to the device under test
	Out = "out" // a reply from the device to a peer
)

// Message is one message the oracle follows, with every attempt to
// decrypt any copy of it.
type Message struct {
	ID       string
	Dir      string
	Peer     string
	Body     string
	Attempts []Attempt
	copies   []*fakeserver.Delivery
}

// Attempt is one decryption of one copy.
type Attempt struct {
	Delivery string
	OK       bool
	Wrong    bool // decrypted, but not to what was sent
	Class    endpoint.Class
	Err      string
}

// Outcome is where a message ended.
type Outcome string

const (
	Delivered Outcome = "delivered" // once, right plaintext, no failed attempt
	Recovered Outcome = "recovered" // once, after failed attempts (retries)
	Duplicate Outcome = "duplicate" // accepted more than once
	Lost      Outcome = "lost"      // never accepted
	Wrong     Outcome = "wrong"     // accepted with a plaintext that was not sent
)

// Outcome judges a message. An old counter on a copy of a message that was
// accepted anyway is the protocol rejecting a replay, not a failure.
func (m *Message) Outcome() Outcome {
	ok := 0
	for _, a := range m.Attempts {
		if a.OK && a.Wrong {
			return Wrong
		}
		if a.OK {
			ok++
		}
	}
	switch {
	case ok == 0:
		return Lost
	case ok > 1:
		return Duplicate
	case len(m.Failures()) > 0:
		return Recovered
	}
	return Delivered
}

// Failures returns the attempts that count as failures.
func (m *Message) Failures() []Attempt {
	accepted := false
	for _, a := range m.Attempts {
		accepted = accepted || a.OK
	}
	var out []Attempt
	for _, a := range m.Attempts {
		if !a.OK && !(accepted && a.Class == endpoint.OldCounter) {
			out = append(out, a)
		}
	}
	return out
}

// Result is what a run produced: every message and the history.
type Result struct {
	Messages []*Message
	History  []string
	// Blamed lists the messages whose outcome is worse than in the protocol
	// baseline (filled by Check).
	Blamed []string
	// BaselineFailures counts messages that failed even in the baseline:
	// the protocol's own limits, never counted against the pair. Only
	// counted when the run had a message not delivered cleanly (otherwise
	// the baseline is not run).
	BaselineFailures int
	// Crashes counts crash ops that hit a live device.
	Crashes int
	// RegeneratedCreds: a restart came up with other credentials (identity,
	// registration id or signed prekey) than the device had: a failure of
	// its own (Baileys' unreadable creds.json becomes a new identity).
	RegeneratedCreds bool
	// StartRefused: a restart refused to start (the store found its
	// credentials unreadable); the device stayed down. The baseline never
	// refuses, so this is blamed too, but it is the correct behaviour next
	// to RegeneratedCreds: detected, not papered over.
	StartRefused bool
	// LostPreKeys counts one-time prekeys that were uploaded and not yet
	// handed out but were gone from the store after a restart.
	LostPreKeys int
}

func (r *Run) result() *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{History: append([]string(nil), r.history...), Crashes: r.crashes,
		RegeneratedCreds: r.regenerated, StartRefused: r.refused, LostPreKeys: r.lostPreKeys}
	for _, id := range r.order {
		res.Messages = append(res.Messages, r.msgs[id])
	}
	return res
}

// Counts are the totals a report row shows.
type Counts struct {
	Messages   int
	Delivered  int
	Recovered  int
	Duplicates int
	Lost       int
	Wrong      int
	Failures   map[endpoint.Class]int // failed attempts by class
	Blamed     int
	Baseline   int
	// Crash and restart outcomes (runs, not messages).
	Crashes          int
	RegeneratedCreds int
	StartRefused     int
	LostPreKeys      int
}

// Add folds another run's counts in.
func (c *Counts) Add(o Counts) {
	c.Messages += o.Messages
	c.Delivered += o.Delivered
	c.Recovered += o.Recovered
	c.Duplicates += o.Duplicates
	c.Lost += o.Lost
	c.Wrong += o.Wrong
	c.Blamed += o.Blamed
	c.Baseline += o.Baseline
	c.Crashes += o.Crashes
	c.RegeneratedCreds += o.RegeneratedCreds
	c.StartRefused += o.StartRefused
	c.LostPreKeys += o.LostPreKeys
	if c.Failures == nil {
		c.Failures = map[endpoint.Class]int{}
	}
	for k, v := range o.Failures {
		c.Failures[k] += v
	}
}

// Counts totals the result.
func (res *Result) Counts() Counts {
	c := Counts{Failures: map[endpoint.Class]int{}, Blamed: len(res.Blamed), Baseline: res.BaselineFailures,
		Crashes: res.Crashes, LostPreKeys: res.LostPreKeys}
	if res.RegeneratedCreds {
		c.RegeneratedCreds = 1
	}
	if res.StartRefused {
		c.StartRefused = 1
	}
	for _, m := range res.Messages {
		c.Messages++
		switch m.Outcome() {
		case Delivered:
			c.Delivered++
		case Recovered:
			c.Recovered++
		case Duplicate:
			c.Duplicates++
		case Lost:
			c.Lost++
		case Wrong:
			c.Wrong++
		}
		for _, a := range m.Failures() {
			c.Failures[a.Class]++
		}
	}
	return c
}

// Failed reports whether the pair is blamed for anything in this run.
// Regenerated credentials and a refused start count as failures of their
// own, whatever happened to the messages.
func (res *Result) Failed() bool {
	return len(res.Blamed) > 0 || res.RegeneratedCreds || res.StartRefused || res.LostPreKeys > 0
}

// Blame compares a candidate result with the baseline of the same schedule.
// A message counts against the pair when the baseline delivered it cleanly
// and the candidate did not.
func Blame(cand, base *Result) {
	baseOut := map[string]Outcome{}
	for _, m := range base.Messages {
		baseOut[m.ID] = m.Outcome()
	}
	cand.Blamed = nil
	cand.BaselineFailures = 0
	for _, m := range cand.Messages {
		bo, ok := baseOut[m.ID]
		if ok && bo != Delivered {
			cand.BaselineFailures++
			continue
		}
		if m.Outcome() != Delivered {
			cand.Blamed = append(cand.Blamed, m.ID)
		}
	}
}

// Summary is a one-line description of what the pair is blamed for.
func (res *Result) Summary() string {
	if !res.Failed() {
		return "no failures"
	}
	var parts []string
	if res.RegeneratedCreds {
		parts = append(parts, "REGENERATED CREDENTIALS")
	}
	if res.StartRefused {
		parts = append(parts, "start refused (creds unreadable)")
	}
	if res.LostPreKeys > 0 {
		parts = append(parts, fmt.Sprintf("%d UNUSED PREKEYS LOST", res.LostPreKeys))
	}
	for _, id := range res.Blamed {
		for _, m := range res.Messages {
			if m.ID != id {
				continue
			}
			var cls []string
			for _, a := range m.Failures() {
				cls = append(cls, string(a.Class))
			}
			parts = append(parts, fmt.Sprintf("%s %s [%s]", m.ID, m.Outcome(), strings.Join(cls, " ")))
		}
	}
	return strings.Join(parts, "; ")
}

// Wilson returns the 95% Wilson score interval for k failures in n trials.
func Wilson(k, n int) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	const z = 1.959963984540054
	p := float64(k) / float64(n)
	nf := float64(n)
	den := 1 + z*z/nf
	mid := (p + z*z/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return math.Max(0, mid-half), math.Min(1, mid+half)
}
