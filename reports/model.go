// Package reports turns run results into what people and machines read:
// the terminal table, and machine-readable forms.
package reports

// Report is the outcome of one badmac invocation.
type Report struct {
	// Format names the JSON schema version (schema.json); it changes only
	// when a field changes meaning or goes away.
	Format    string `json:"format"`
	Seed      uint64 `json:"seed"`
	Mode      string `json:"mode"`
	Schedules int    `json:"schedules_per_row"`
	Rows      []Row  `json:"rows"`
	// Pass is false when a must-pass pair was blamed for a failure.
	Pass bool `json:"pass"`
	// Shard is "K/N" for a report of one slice of every row's schedules
	// (badmac run -shard); badmac merge combines all N. Empty otherwise.
	Shard string `json:"shard,omitempty"`
}

// Row is one (discipline, store, scenario) triple over many schedules.
type Row struct {
	Discipline string `json:"discipline"`
	Store      string `json:"store"`
	Scenario   string `json:"scenario"`
	MustPass   bool   `json:"must_pass"`
	Schedules  int    `json:"schedules"`
	// FailedSchedules counts schedules with at least one blamed message.
	FailedSchedules int `json:"failed_schedules"`
	Messages        int `json:"messages"`
	Delivered       int `json:"delivered"`
	Recovered       int `json:"recovered"`
	Duplicates      int `json:"duplicates"`
	Lost            int `json:"lost"`
	Wrong           int `json:"wrong_plaintext"`
	// Failed attempts by class (DESIGN §5).
	BadMAC            int `json:"bad_mac"`
	OldCounter        int `json:"old_counter"`
	NoSession         int `json:"no_session"`
	InvalidPreKey     int `json:"invalid_prekey"`
	UntrustedIdentity int `json:"untrusted_identity"`
	NoSenderKey       int `json:"no_sender_key"`
	StoreError        int `json:"store_error"`
	OtherError        int `json:"other_error"`
	// Crash and restart (DESIGN §7): crashes injected, and the schedules
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
	// Blamed counts messages whose outcome is worse than in the protocol
	// baseline; the failure rate is Blamed/Messages.
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
