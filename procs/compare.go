package procs

import (
	"fmt"
	"sort"
	"strings"

	"github.com/badmac/badmac/harness"
)

var rank = map[harness.Outcome]int{harness.Delivered: 0, harness.Recovered: 1, harness.Duplicate: 2, harness.Lost: 3, harness.Wrong: 4}

// Verdict judges one kill point: the real run against the model (the same
// conversation and failpoint, in process, on the in-memory reference store,
// where every write is durable the moment it returns) and the model against
// the run without a kill.
type Verdict struct {
	Outcomes map[harness.Outcome]int // the real run's messages
	// StoreBlamed: messages whose real outcome is worse than the model's:
	// the database lost or rolled back something the model kept.
	StoreBlamed []string
	// ClientBlamed: messages the model itself ends worse than without the
	// kill: the client's non-atomic decrypt→store→ack, not the store.
	ClientBlamed []string
	Regenerated  bool
}

// Judge compares real and model runs of one kill point with the unkilled run.
func Judge(real, model, base *Result) Verdict {
	v := Verdict{Outcomes: map[harness.Outcome]int{}, Regenerated: real.RegeneratedCreds}
	mo, bo := outcomes(model), outcomes(base)
	for _, m := range real.Messages {
		o := m.Outcome()
		v.Outcomes[o]++
		if rank[o] > rank[mo[m.ID]] {
			v.StoreBlamed = append(v.StoreBlamed, fmt.Sprintf("%s %s (model: %s)", m.ID, o, mo[m.ID]))
		}
		if rank[mo[m.ID]] > rank[bo[m.ID]] {
			v.ClientBlamed = append(v.ClientBlamed, fmt.Sprintf("%s %s", m.ID, mo[m.ID]))
		}
	}
	return v
}

func outcomes(r *Result) map[string]harness.Outcome {
	out := map[string]harness.Outcome{}
	for _, m := range r.Messages {
		out[m.ID] = m.Outcome()
	}
	return out
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
