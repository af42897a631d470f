// Package reports turns run results into what people and machines read:
// the terminal table, and machine-readable forms.
package reports

import (
	"fmt"
	"strings"
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
}

// The gate's verdicts.
const (
	GatePass     = "pass"      // every must-pass row passed (exit 0)
	GateFail     = "fail"      // a must-pass row failed (exit 1)
	GateNotGated = "not gated" // no must-pass row (-must-pass none): no verdict (exit 0)
)

// Verdict is the gate, the only one: GateFail when a must-pass row failed
// (Row.Failed), GatePass when every must-pass row passed, GateNotGated
// when the report has no must-pass row. The exit code, JSON, JUnit, HTML,
// Markdown and the table all call it.
func (rep *Report) Verdict() string {
	gated := false
	for _, r := range rep.Rows {
		if !r.MustPass {
			continue
		}
		gated = true
		if r.Failed() {
			return GateFail
		}
	}
	if !gated {
		return GateNotGated
	}
	return GatePass
}

// VerdictLine is the verdict in one line, as every output prints it.
func (rep *Report) VerdictLine() string {
	switch rep.Verdict() {
	case GateFail:
		var names []string
		for _, r := range rep.Rows {
			if r.MustPass && r.Failed() {
				names = append(names, r.Name())
			}
		}
		return "FAIL: must-pass rows failed: " + strings.Join(names, ", ")
	case GatePass:
		n := 0
		for _, r := range rep.Rows {
			if r.MustPass {
				n++
			}
		}
		return fmt.Sprintf("PASS: all %d must-pass rows passed (no pair failures, credentials, lost prekeys or store errors)", n)
	}
	return "NOT GATED: no must-pass pair (-must-pass none), no verdict"
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
}

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

// Failed is the row's verdict, the only one: a schedule failed (the
// harness's Result.Failed), or the row's counts show anything an output
// calls a failure: pair-blamed messages, regenerated credentials, a refused
// start, lost prekeys, store errors. Store failures and losses to a crash
// are shown beside it, not in it: the gate is the pair's.
func (r Row) Failed() bool {
	return r.FailedSchedules > 0 || r.Blamed > 0 || r.RegeneratedCreds > 0 || r.StartRefused > 0 ||
		r.LostPreKeys > 0 || r.StoreError > 0
}

// StoreCell is the store-blamed count, or "n/a" when not judged.
func (r Row) StoreCell() string {
	if r.StoreBlamed == nil {
		return "n/a"
	}
	return fmt.Sprint(*r.StoreBlamed)
}
