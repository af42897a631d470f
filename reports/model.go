// Package reports turns run results into what people and machines read:
// the terminal table, and machine-readable forms.
package reports

import (
	"fmt"
	"slices"
	"strings"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
)

// Report is the outcome of one badmac invocation.
type Report struct {
	// Format names the JSON schema version (schema.json); it changes only
	// when a field changes meaning or goes away.
	Format    string `json:"format"`
	Seed      uint64 `json:"seed"`
	Mode      string `json:"mode"`
	Schedules int    `json:"schedules_per_row"`
	Rows      []Row  `json:"rows"`
	// Gate is the verdict (Verdict): GatePass, GateFail or GateNotGated.
	// Pass is true exactly when Gate is GatePass: a run with no must-pass
	// row is never reported as passing. Both are set by WriteJSON from
	// Verdict, so they cannot disagree with the rows.
	Gate string `json:"gate"`
	Pass bool   `json:"pass"`
	// Shard is "K/N" for a report of one slice of every row's schedules
	// (badmac run -shard); badmac merge combines all N. Empty otherwise.
	Shard string `json:"shard,omitempty"`
	// MustPass is the gate as the user gave it: -must-pass's value, "none"
	// for no gate on purpose, or "" for the default gate.
	MustPass string `json:"must_pass"`
}

// The gate's verdicts.
const (
	GatePass     = "pass"       // every must-pass row ran and passed (exit 0)
	GateFail     = "fail"       // a must-pass row failed (exit 1)
	GateNotGated = "not gated"  // -must-pass none: measured, no verdict on purpose (exit 0)
	GateUnearned = "no verdict" // the gate holds no row that ran a schedule (exit 2)
)

// NoGate is -must-pass's value for a run without a gate.
const NoGate = "none"

// Verdict is the gate, the only one: GateFail when a must-pass row failed
// (Row.Failed); GateNotGated when the user asked for no gate (-must-pass
// none); GateUnearned when a gate was asked for but holds no row, or a
// must-pass row ran no schedule or judged no message (a pass nothing
// earned: a shard with no schedule, a device that ran but reported no
// message); else GatePass.
// The exit code, JSON, JUnit, HTML, Markdown and the table all call it.
func (rep *Report) Verdict() string {
	gated, idle := false, false
	for _, r := range rep.Rows {
		if !r.MustPass {
			continue
		}
		if r.Failed() {
			return GateFail
		}
		gated = true
		idle = idle || r.idle()
	}
	switch {
	case rep.Ungated():
		return GateNotGated
	case !gated || idle:
		return GateUnearned
	}
	return GatePass
}

// idle: the row earned nothing, no schedule ran or no message was judged.
func (r Row) idle() bool { return r.Schedules == 0 || r.Messages == 0 }

// Ungated reports whether the user asked for no gate (-must-pass none).
func (rep *Report) Ungated() bool { return strings.TrimSpace(rep.MustPass) == NoGate }

// VerdictLine is the verdict in one line, as every output prints it.
func (rep *Report) VerdictLine() string {
	var gated, idle, failed []string
	for _, r := range rep.Rows {
		switch {
		case !r.MustPass:
			continue
		case r.Failed():
			failed = append(failed, r.Name())
		case r.idle():
			idle = append(idle, r.Name())
		}
		gated = append(gated, r.Name())
	}
	switch rep.Verdict() {
	case GateFail:
		return "FAIL: must-pass rows failed: " + strings.Join(failed, ", ")
	case GatePass:
		return fmt.Sprintf("PASS: all %d must-pass rows passed (no pair failures, credentials, lost prekeys or store errors)", len(gated))
	case GateNotGated:
		return fmt.Sprintf("NOT GATED: -must-pass none: %s measured, none judged", rows(len(rep.Rows)))
	}
	if len(idle) > 0 {
		return "NO VERDICT: must-pass rows ran no schedule or judged no message: " + strings.Join(idle, ", ")
	}
	return "NO VERDICT: no must-pass row in the run (name one with -must-pass, or -must-pass none)"
}

// GateLine says what the gate judged, for the summary under the table:
// the gate as given and how its rows fared.
func (rep *Report) GateLine() string {
	if rep.Ungated() {
		return "gate: none (-must-pass none)"
	}
	var pairs []string
	n, failed := 0, 0
	for _, r := range rep.Rows {
		if r.MustPass {
			n++
			if r.Failed() {
				failed++
			}
			if p := r.Discipline + "/" + r.Store; !slices.Contains(pairs, p) {
				pairs = append(pairs, p)
			}
		}
	}
	given := "-must-pass " + rep.MustPass
	if rep.MustPass == "" {
		given = "the default: " + strings.Join(pairs, ", ")
	}
	return fmt.Sprintf("gate (%s): %s, %d failed", given, rows(n), failed)
}

// MeasuredLine counts the rows with failures that no gate judged, with the
// flag that gates one; "" when there are none.
func (rep *Report) MeasuredLine() string {
	n := 0
	for _, r := range rep.Rows {
		if !r.MustPass && r.Failed() {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("measured, not gated: %s with failures (-must-pass DISCIPLINE/STORE or DEVICE/STORE[/SCENARIO] gates one)", rows(n))
}

// rows is "1 row", "2 rows".
func rows(n int) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// Row is one (discipline, store, scenario) triple over many schedules.
type Row struct {
	Discipline string `json:"discipline"`
	Store      string `json:"store"`
	Scenario   string `json:"scenario"`
	MustPass   bool   `json:"must_pass"`
	Schedules  int    `json:"schedules"`
	// FailedSchedules counts the schedules that failed (harness
	// Result.Failed: a pair failure, credentials, lost prekeys, a store
	// error).
	FailedSchedules int `json:"failed_schedules"`
	Messages        int `json:"messages"`
	Delivered       int `json:"delivered"`
	Recovered       int `json:"recovered"`
	Duplicates      int `json:"duplicates"`
	Lost            int `json:"lost"`
	Wrong           int `json:"wrong_plaintext"`
	// Failed attempts by class (docs/design.md §5).
	BadMAC            int `json:"bad_mac"`
	OldCounter        int `json:"old_counter"`
	NoSession         int `json:"no_session"`
	InvalidPreKey     int `json:"invalid_prekey"`
	UntrustedIdentity int `json:"untrusted_identity"`
	NoSenderKey       int `json:"no_sender_key"`
	StoreError        int `json:"store_error"`
	OtherError        int `json:"other_error"`
	// Crash and restart (docs/design.md §7): crashes injected, and the schedules
	// in which a restart came up with regenerated credentials or refused to
	// start (creds unreadable).
	Crashes          int `json:"crashes"`
	RegeneratedCreds int `json:"regenerated_creds"`
	StartRefused     int `json:"start_refused"`
	// LostPreKeys counts uploaded, unclaimed one-time prekeys missing from
	// the store after restarts (a restart invariant).
	LostPreKeys int `json:"lost_prekeys"`
	// BaselineFailures counts messages that failed even in the protocol
	// baseline (the schedule run serially on the reference store): limits of
	// the protocol, never blamed on the pair.
	BaselineFailures int `json:"baseline_failures"`
	// LibraryFailures counts messages the protocol baseline itself lost,
	// duplicated or got wrong (a perfect store, one task at a time): the
	// protocol's or libsignal's failures, reported on their own, never
	// blamed. Library is the first such schedule, shrunk.
	LibraryFailures int      `json:"library_failures"`
	Library         *Finding `json:"library,omitempty"`
	// LostToCrash counts messages worse than in the protocol baseline that
	// a crash or a restore explains by its cause (harness.Result.LostToCrash:
	// killed between the decrypt's store write and the ack, or lost as badly
	// by the serial baseline with the same backup restored), never blamed.
	LostToCrash int `json:"lost_to_crash"`
	// StoreBlamed counts the store failures: messages worse than on the
	// reference store under the same discipline and the same explicit
	// schedule. nil (JSON null) when not judged: the candidate is the
	// reference store itself, or free mode (nothing to replay).
	StoreBlamed *int `json:"store_blamed"`
	// StoreJudged is how many schedules the store was judged in, set only
	// when it was judged in some and not all (a device that declines the
	// runs its reference run would not follow exactly: the Baileys socket
	// device on LID schedules); StoreBlamed counts over those.
	StoreJudged *int `json:"store_judged,omitempty"`
	// Blamed counts the pair failures: messages worse than in the protocol
	// baseline (outcome or a new failure class), those lost to a crash excepted;
	// the failure rate is Blamed/Messages.
	Blamed int     `json:"blamed"`
	Rate   float64 `json:"failure_rate"`
	RateLo float64 `json:"failure_rate_lo95"`
	RateHi float64 `json:"failure_rate_hi95"`
	// Replay reproduces the first failing schedule; empty when none failed.
	Replay string `json:"replay,omitempty"`
	// Counterexample is the first failing schedule's text.
	Counterexample string `json:"counterexample,omitempty"`
	Summary        string `json:"summary,omitempty"`
	// History is the replayed history of the counterexample, one event a
	// line (what `badmac replay` prints); Timeline places it in lanes.
	History []string `json:"history,omitempty"`
	// FirstFailing is the number of the failing schedule the counterexample
	// was shrunk from: the lowest, so that merged shards pick the same one.
	FirstFailing *int `json:"first_failing_schedule,omitempty"`
	// Baseline names the row's protocol baseline when it is not the
	// model's (the same discipline, one task at a time, on the reference
	// store): a device's own (Baileys: that version's locked key store).
	Baseline string `json:"baseline,omitempty"`
}

// CountsRow is a row's figures from harness counts over schedules runs, of
// which failed failed: every count, store-blamed (nil when no run was
// judged against the reference store: the candidate is the reference
// store, or free mode; judged in some only: StoreJudged) and the
// pair rate. badmac run and
// storetest's replay page build their rows with it, so they show the same
// figures for the same counts.
func CountsRow(c harness.Counts, schedules, failed int) Row {
	f := c.Failures
	r := Row{Schedules: schedules, FailedSchedules: failed,
		Messages: c.Messages, Delivered: c.Delivered, Recovered: c.Recovered, Duplicates: c.Duplicates,
		Lost: c.Lost, Wrong: c.Wrong, Blamed: c.Blamed,
		Crashes: c.Crashes, RegeneratedCreds: c.RegeneratedCreds, StartRefused: c.StartRefused,
		LostPreKeys: c.LostPreKeys, BaselineFailures: c.Baseline, LibraryFailures: c.Library, LostToCrash: c.LostToCrash,
		BadMAC: f[endpoint.BadMAC], OldCounter: f[endpoint.OldCounter], NoSession: f[endpoint.NoSession],
		InvalidPreKey: f[endpoint.InvalidPreKey], UntrustedIdentity: f[endpoint.UntrustedIdentity],
		NoSenderKey: f[endpoint.NoSenderKey], StoreError: f[endpoint.StoreError], OtherError: f[endpoint.Other],
	}
	if c.StoreNA < schedules {
		n := c.StoreBlamed
		r.StoreBlamed = &n
		if c.StoreNA > 0 {
			j := schedules - c.StoreNA
			r.StoreJudged = &j
		}
	}
	r.Rate, r.RateLo, r.RateHi = r.PairRate()
	return r
}

// ModelBaseline is the protocol baseline of a row whose Baseline is empty.
const ModelBaseline = "the same client, one task at a time, on the reference store"

// OtherErrors sums the failure classes without a column of their own.
func (r Row) OtherErrors() int {
	return r.InvalidPreKey + r.UntrustedIdentity + r.NoSenderKey + r.StoreError + r.OtherError
}

// Finding is one shrunk schedule and what its replay shows.
type Finding struct {
	// Schedule is the number of the schedule the finding was shrunk from
	// (the lowest with a library failure; badmac merge keeps the lowest).
	Schedule       int      `json:"schedule"`
	Replay         string   `json:"replay,omitempty"`
	Counterexample string   `json:"counterexample,omitempty"`
	Summary        string   `json:"summary"`
	History        []string `json:"history,omitempty"`
}

// Name is "discipline/store/scenario".
func (r Row) Name() string { return r.Discipline + "/" + r.Store + "/" + r.Scenario }

// PairRate is the pair failure rate, Blamed/Messages, with its 95% Wilson
// interval: the one set of figures every output shows (the stored Rate
// fields are filled from it for JSON).
func (r Row) PairRate() (rate, lo, hi float64) { return harness.Rate(r.Blamed, r.Messages) }

// Heading is how the summaries name a row with failures: FAIL when the
// gate judged it, a measurement otherwise (no FAIL for a row no gate
// judged).
func (r Row) Heading() string {
	if r.MustPass {
		return "FAIL " + r.Name()
	}
	return "measured " + r.Name()
}

// Failed is the row's verdict, the only one: a schedule failed (the
// harness's Result.Failed), or the row's counts show anything an output
// calls a failure: pair-blamed messages, regenerated credentials, a refused
// start, lost prekeys, store errors. Store failures and losses to a crash
// are shown beside it, not in it: the gate is the pair's.
func (r Row) Failed() bool {
	return r.FailedSchedules > 0 || r.Blamed > 0 || r.RegeneratedCreds > 0 || r.StartRefused > 0 ||
		r.LostPreKeys > 0 || r.StoreError > 0
}

// StoreCell is the store-blamed count, or "n/a" when not judged, with
// "(J/S)" when judged in J of the S schedules only.
func (r Row) StoreCell() string {
	if r.StoreBlamed == nil {
		return "n/a"
	}
	if r.StoreJudged != nil {
		return fmt.Sprintf("%d (%d/%d)", *r.StoreBlamed, *r.StoreJudged, r.Schedules)
	}
	return fmt.Sprint(*r.StoreBlamed)
}
