package harness

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/badmac/badmac/endpoint"
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
	// Note names the public report a device matched the message's failure
	// with ("" for none; realclient's LID reports, docs/lid.md §3).
	Note string
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

// Result is what a run produced: every message and the history, judged
// three ways (docs/design.md §5): against the protocol baseline (the pair's
// verdict, the gate), against the reference store under the same client and
// the same interleaving (the store's verdict), and, in runs a crash or a
// restore hit, what was lost to it by its cause (LostToCrash).
type Result struct {
	Messages []*Message
	History  []string
	// What Model.Reference needs: whether the store attribution runs
	// (a controlled run on a store other than the reference store), the
	// run is on the reference store itself, and the run's actions for the
	// same-client run to follow.
	refNeeded, refSelf bool
	trace              []action
	// Blamed lists the pair failures: messages whose outcome is worse than
	// in the protocol baseline (Worse), other than those lost to a crash.
	// Filled by Judge.
	Blamed []string
	// StoreBlamed lists the store failures: messages worse than on the
	// reference store under the same discipline and the same explicit
	// schedule. Only meaningful when StoreJudged.
	StoreBlamed []string
	// StoreJudged is false when the store was not compared with the
	// reference store: the candidate is the reference store itself, or the
	// run is not replayable (free mode). A clean run is judged (nothing can
	// be worse than anything).
	StoreJudged bool
	// StoreNotJudged is why a device declined to judge the store of this
	// run when the reason is its own (the Baileys socket device on a LID
	// schedule whose reference run would not be exact); "" otherwise, and
	// the caller says the general reason.
	StoreNotJudged string
	// LostToCrash lists the messages worse than in the protocol baseline
	// that a crash or a restore explains by its cause (docs/design.md §7):
	// a crash killed the message's receive after it stored the decrypt's
	// state and before its ack (KilledUnacked: the redelivered copy meets
	// an old counter on any store that kept the write), or the protocol
	// baseline with the same backups restored loses it as badly (the
	// restore's, whatever the client). Never blamed; anything else a crash
	// schedule loses is judged as in any other schedule.
	LostToCrash []string
	// KilledUnacked lists the messages whose receive a crash killed
	// between its decrypt's store write and its ack (the device reports
	// it; the model from its tasks' store calls).
	KilledUnacked []string
	// BaselineFailures counts messages the protocol baseline itself did not
	// deliver cleanly; LibraryFailures lists those it lost, duplicated or
	// got wrong: failures of the protocol or of libsignal with a perfect
	// store and a serial client (reported on their own, never blamed).
	// Only counted when the run had a message not delivered cleanly
	// (otherwise the baseline is not run).
	BaselineFailures int
	LibraryFailures  []string
	// BaselineSummary describes the library failures as the baseline
	// ended them ("m3 lost [OldCounter]").
	BaselineSummary string
	// Crashes counts crash ops that hit a live device; CrashPoints says
	// where each landed ("crash after PutSession alice:0 (m1, write 2),
	// before RemovePreKey (m1)").
	Crashes     int
	CrashPoints []string
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
	res := r.Contacts.Result()
	r.mu.Lock()
	defer r.mu.Unlock()
	res.Crashes, res.CrashPoints = r.crashes, append([]string(nil), r.verdict.crashPoints...)
	res.KilledUnacked = append([]string(nil), r.verdict.killedUnacked...)
	res.RegeneratedCreds, res.StartRefused, res.LostPreKeys = r.regenerated, r.refused, r.lostPreKeys
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
	// Blamed: pair failures (the gate); StoreBlamed: store failures, over
	// the StoreJudged runs; StoreNA: runs whose store was not judged
	// against the reference store; LostToCrash: losses a crash or a
	// restore explains by its cause; Baseline: messages the baseline did
	// not deliver cleanly, Library: those it lost, duplicated or got wrong.
	Blamed      int
	StoreBlamed int
	StoreNA     int
	LostToCrash int
	Baseline    int
	Library     int
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
	c.StoreBlamed += o.StoreBlamed
	c.StoreNA += o.StoreNA
	c.LostToCrash += o.LostToCrash
	c.Baseline += o.Baseline
	c.Library += o.Library
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
		StoreBlamed: len(res.StoreBlamed), LostToCrash: len(res.LostToCrash), Library: len(res.LibraryFailures),
		Crashes: res.Crashes, LostPreKeys: res.LostPreKeys}
	if !res.StoreJudged {
		c.StoreNA = 1
	}
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

// Failed is the verdict on one schedule, the only one: the pair fails when
// it is blamed for a message (worse than the protocol baseline, losses a
// crash explains by its cause excepted), when a restart regenerated credentials or refused
// to start (the reference store always starts, so starting was right), when
// uploaded prekeys were lost, or when a store call returned an error. Every
// output (FAIL lines, exit code, JSON, JUnit, HTML, Markdown, storetest)
// derives from it; reports.Row.Failed is its row-level form.
func (res *Result) Failed() bool {
	return len(res.Blamed) > 0 || res.RegeneratedCreds || res.StartRefused || res.LostPreKeys > 0 || res.storeErrors() > 0
}

// storeErrors counts failed attempts whose store call returned an error.
func (res *Result) storeErrors() int {
	n := 0
	for _, m := range res.Messages {
		for _, a := range m.Attempts {
			if !a.OK && a.Class == endpoint.StoreError {
				n++
			}
		}
	}
	return n
}

// outcomeRank orders outcomes from best to worst.
var outcomeRank = map[Outcome]int{Delivered: 0, Recovered: 1, Duplicate: 2, Lost: 3, Wrong: 4}

// classRank orders failure classes by what they say about the state:
// a missing session is mended by a retry, a Bad MAC means the ratchets
// diverged, a store error that the store itself failed.
var classRank = map[endpoint.Class]int{
	endpoint.NoSession: 1, endpoint.OldCounter: 2, endpoint.InvalidPreKey: 3, endpoint.NoSenderKey: 3,
	endpoint.UntrustedIdentity: 4, endpoint.BadMAC: 5, endpoint.StoreError: 6, endpoint.Other: 6,
}

// worstClass is the highest classRank among m's failed attempts (0: none).
func worstClass(m *Message) int {
	w := 0
	for _, a := range m.Failures() {
		w = max(w, classRank[a.Class])
	}
	return w
}

// Worse reports whether message m ended worse than b, the same message in
// another run: a worse outcome (delivered < recovered < duplicate < lost <
// wrong), or a failed attempt of a class b never had that is worse than
// every class b had (classRank). A new class no worse than b's is not
// blamed: the same libsignal error ("no valid sessions") is classified
// NoSession on one state and BadMAC on another, and a reply queued across
// a contact's reinstall meets one or the other depending on when it is
// encrypted. b nil (the message does not exist in the other run) counts as
// delivered cleanly.
func Worse(m, b *Message) bool {
	if b == nil {
		return m.Outcome() != Delivered
	}
	if outcomeRank[m.Outcome()] > outcomeRank[b.Outcome()] {
		return true
	}
	return worstClass(m) > worstClass(b)
}

func byID(res *Result) map[string]*Message {
	out := map[string]*Message{}
	if res != nil {
		for _, m := range res.Messages {
			out[m.ID] = m
		}
	}
	return out
}

// Blame judges a candidate against the protocol baseline of the same
// schedule alone: every message worse than the baseline is a pair failure.
// Judge is the full verdict; Blame is it without the other runs.
func Blame(cand, base *Result) { Judge(cand, Baselines{Protocol: base}) }

// Baselines are the runs Judge compares a candidate with.
type Baselines struct {
	// Protocol is the protocol baseline: the explicit schedule serially on
	// the reference store (a crash there is a clean restart, a rollback
	// restores nothing).
	Protocol *Result
	// Restored is the protocol baseline with the schedule's backups
	// restored at the same ops (RestoreBaseline); nil when the schedule
	// restores none, or the device has none.
	Restored *Result
	// Reference is the same explicit schedule on the reference store under
	// the same client and interleaving (nil: the store is not judged; the
	// candidate itself when it is the reference store, which is then judged
	// by definition and reported n/a by StoreJudged false).
	Reference *Result
}

// Judge fills cand's verdict (docs/design.md §5). Every message worse than
// the protocol baseline is a pair failure, unless a crash or a restore
// explains it by its cause (LostToCrash): its receive was killed between
// its decrypt's store write and its ack (cand.KilledUnacked), or the
// protocol baseline with the same backups restored ends it as badly. A
// crash is no excuse for anything else: a racy client loses as much in a
// crash schedule as in any other and is blamed for it. Store failures are
// the messages worse than on the reference store under the same client.
func Judge(cand *Result, b Baselines) {
	base, ref := b.Protocol, b.Reference
	bm, rm, restored := byID(base), byID(ref), byID(b.Restored)
	cand.Blamed, cand.StoreBlamed, cand.LostToCrash, cand.LibraryFailures, cand.BaselineSummary = nil, nil, nil, nil, ""
	cand.BaselineFailures = 0
	for _, m := range base.Messages {
		switch m.Outcome() {
		case Delivered:
		case Recovered:
			cand.BaselineFailures++
			// A Bad MAC with a perfect store and one task at a time is
			// the library's, even when a retry recovered the message
			// (libsignal-late-old-session.txt). Other recovered classes
			// are the protocol's ordering (a group message before its
			// sender key) and stay counted as baseline failures only.
			if slices.ContainsFunc(m.Failures(), func(a Attempt) bool { return a.Class == endpoint.BadMAC }) {
				cand.LibraryFailures = append(cand.LibraryFailures, m.ID)
			}
		default:
			cand.BaselineFailures++
			cand.LibraryFailures = append(cand.LibraryFailures, m.ID)
		}
	}
	cand.BaselineSummary = strings.Join(base.describe(cand.LibraryFailures), "; ")
	for _, m := range cand.Messages {
		if ref != nil && ref != cand && Worse(m, rm[m.ID]) {
			cand.StoreBlamed = append(cand.StoreBlamed, m.ID)
		}
		if !Worse(m, bm[m.ID]) {
			continue
		}
		if slices.Contains(cand.KilledUnacked, m.ID) || (b.Restored != nil && !Worse(m, restored[m.ID])) {
			cand.LostToCrash = append(cand.LostToCrash, m.ID)
			continue
		}
		cand.Blamed = append(cand.Blamed, m.ID)
	}
}

// Summary is a one-line description of what the pair is blamed for; in a
// run a crash hit it starts with where the crash landed.
func (res *Result) Summary() string {
	s := res.failures()
	if len(res.CrashPoints) > 0 && res.Failed() {
		s = strings.Join(res.CrashPoints, "; ") + ": " + s
	}
	return s
}

// failures is Summary without where the crashes landed.
func (res *Result) failures() string {
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
	if n := res.storeErrors(); n > 0 {
		parts = append(parts, fmt.Sprintf("%d STORE ERRORS", n))
	}
	parts = append(parts, res.describe(res.Blamed)...)
	return strings.Join(parts, "; ")
}

// Verdict is "m3 lost [OldCounter]": the message's outcome and the
// classes of its failed attempts.
func (m *Message) Verdict() string {
	var cls []string
	for _, a := range m.Failures() {
		cls = append(cls, string(a.Class))
	}
	return fmt.Sprintf("%s %s [%s]", m.ID, m.Outcome(), strings.Join(cls, " "))
}

// Verdicts is every message's Verdict, in order, joined by "; " (what
// tests compare a run's ending with).
func (res *Result) Verdicts() string {
	parts := make([]string, len(res.Messages))
	for i, m := range res.Messages {
		parts[i] = m.Verdict()
	}
	return strings.Join(parts, "; ")
}

// describe is "m3 lost [OldCounter]" for each listed message.
func (res *Result) describe(ids []string) []string {
	var parts []string
	for _, id := range ids {
		for _, m := range res.Messages {
			if m.ID != id {
				continue
			}
			part := m.Verdict()
			if m.Note != "" {
				part += " (" + m.Note + ")"
			}
			parts = append(parts, part)
		}
	}
	return parts
}

// LibrarySummary describes the messages the protocol baseline itself
// failed ("" when none): a failure of the protocol or of libsignal.
func (res *Result) LibrarySummary() string {
	if len(res.LibraryFailures) == 0 {
		return ""
	}
	return "in the protocol baseline (one task at a time, reference store): " + res.BaselineSummary
}

// Rate is k of n as a share (0 for no trials) with its 95% Wilson interval.
func Rate(k, n int) (p, lo, hi float64) {
	if n > 0 {
		p = float64(k) / float64(n)
	}
	lo, hi = Wilson(k, n)
	return p, lo, hi
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
