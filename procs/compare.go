package procs

import (
	"fmt"
	"sort"
	"strings"

	"github.com/badmac/badmac/harness"
)

// Verdict judges one kill point: the real run against the model (the same
// conversation and failpoint, in process, on the in-memory reference store,
// where every write is durable the moment it returns) and the model against
// the run without a kill.
type Verdict struct {
	Outcomes map[harness.Outcome]int // the real run's messages
	// StoreBlamed: messages the real run ends worse than the model
	// (harness.Worse: outcome, then failure class): the database lost or
	// rolled back something the model kept.
	StoreBlamed []string
	// ClientBlamed: messages the model itself ends worse than without the
	// kill (harness.Worse): the client's non-atomic decrypt→store→ack,
	// not the store.
	ClientBlamed []string
	Regenerated  bool
}

// Judge compares real and model runs of one kill point with the unkilled run.
func Judge(real, model, base *Result) Verdict {
	v := Verdict{Outcomes: map[harness.Outcome]int{}, Regenerated: real.RegeneratedCreds}
	mo, bo := byID(model), byID(base)
	for _, m := range real.Messages {
		o := m.Outcome()
		v.Outcomes[o]++
		if mm := mo[m.ID]; harness.Worse(m, mm) {
			v.StoreBlamed = append(v.StoreBlamed, fmt.Sprintf("%s %s (model: %s)", m.ID, describe(m), describe(mm)))
		}
		if mm := mo[m.ID]; mm != nil && harness.Worse(mm, bo[m.ID]) {
			v.ClientBlamed = append(v.ClientBlamed, fmt.Sprintf("%s %s", m.ID, describe(mm)))
		}
	}
	return v
}

func byID(r *Result) map[string]*harness.Message {
	out := map[string]*harness.Message{}
	for _, m := range r.Messages {
		out[m.ID] = m
	}
	return out
}

// describe is a message's outcome and, when an attempt failed, the class
// of its first failure: "recovered (BadMAC)"; "none" for a message the
// run did not have.
func describe(m *harness.Message) string {
	if m == nil {
		return "none"
	}
	if f := m.Failures(); len(f) > 0 {
		return fmt.Sprintf("%s (%s)", m.Outcome(), f[0].Class)
	}
	return string(m.Outcome())
}

// String is one line: "delivered 14, recovered 1, lost 1; store-blamed 0; client 1 [m3 lost]".
func (v Verdict) String() string {
	var parts []string
	var os []string
	for o := range v.Outcomes {
		os = append(os, string(o))
	}
	sort.Strings(os)
	for _, o := range os {
		parts = append(parts, fmt.Sprintf("%s %d", o, v.Outcomes[harness.Outcome(o)]))
	}
	s := strings.Join(parts, ", ") + fmt.Sprintf("; store-blamed %d", len(v.StoreBlamed))
	if len(v.StoreBlamed) > 0 {
		s += " [" + strings.Join(v.StoreBlamed, ", ") + "]"
	}
	s += fmt.Sprintf("; client %d", len(v.ClientBlamed))
	if len(v.ClientBlamed) > 0 {
		s += " [" + strings.Join(v.ClientBlamed, ", ") + "]"
	}
	if v.Regenerated {
		s += "; CREDENTIALS REGENERATED"
	}
	return s
}
