package reports

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// JUnit XML, the subset CI systems read: testsuites > testsuite > testcase
// with an optional failure.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"`
}

// JUnit suite names: the gate's pairs, and the rest.
const (
	JUnitMustPass = "badmac must-pass"
	JUnitOther    = "badmac not gated"
)

// WriteJUnit writes one test case per (discipline, store, scenario) row,
// named discipline/store/scenario. Must-pass rows (the gate: exit code 1)
// go in the suite "badmac must-pass"; one that failed (Row.Failed) is a
// failed test case whose failure carries the summary, the replay command
// and the counterexample. The other rows go in "badmac not gated": they
// are measurements, never failed test cases; one with failures says so in
// its output ("measured, not gated: …"), with its replay command. A gate
// that earned no verdict is one more failed case, "gate".
func WriteJUnit(w io.Writer, rep *Report) error {
	gated := junitSuite{Name: JUnitMustPass}
	other := junitSuite{Name: JUnitOther}
	for _, r := range rep.Rows {
		s := &other
		if r.MustPass {
			s = &gated
		}
		c := junitCase{Name: fmt.Sprintf("%s/%s/%s", r.Discipline, r.Store, r.Scenario), Classname: "badmac." + r.Discipline}
		stats := fmt.Sprintf("%d/%d schedules failed; %d/%d messages pair-blamed (%s); store-blamed %s; crash-lost %d; baseline (library) failures %d",
			r.FailedSchedules, r.Schedules, r.Blamed, r.Messages, r.rateCell("%.2f%% [%.2f, %.2f]"), r.StoreCell(), r.LostToCrash, r.LibraryFailures)
		if r.Library != nil {
			stats += "\nbaseline: " + r.Library.Summary
			if r.Library.Replay != "" {
				stats += "\n  replay: " + r.Library.Replay
			}
		}
		switch {
		case r.MustPass && r.Failed():
			var text strings.Builder
			fmt.Fprintf(&text, "%s\n%s\n", r.Summary, stats)
			if r.Replay != "" {
				fmt.Fprintf(&text, "replay: %s\n", r.Replay)
			}
			if r.Counterexample != "" {
				fmt.Fprintf(&text, "\n%s", r.Counterexample)
			}
			c.Failure = &junitFailure{Message: r.Summary, Type: failureType(r), Text: text.String()}
			s.Failures++
		case r.Failed():
			stats = "measured, not gated: " + r.measurement() + "\n" + stats
			if r.Replay != "" {
				stats += "\nreplay: " + r.Replay
			}
		}
		c.SystemOut = stats
		s.Tests++
		s.Cases = append(s.Cases, c)
	}
	if rep.Verdict() == GateUnearned {
		// A gate that earned nothing (exit 2) is no green build: one
		// failed case says why.
		gated.Cases = append(gated.Cases, junitCase{Name: "gate", Classname: "badmac",
			Failure: &junitFailure{Message: rep.VerdictLine(), Type: "NoVerdict", Text: rep.VerdictLine() + "\n"}})
		gated.Tests++
		gated.Failures++
	}
	root := junitSuites{Name: "badmac"}
	for _, s := range []junitSuite{gated, other} {
		if s.Tests == 0 {
			continue
		}
		s.Properties = []junitProperty{{"seed", fmt.Sprint(rep.Seed)}, {"mode", rep.Mode}, {"schedules_per_row", fmt.Sprint(rep.Schedules)},
			{"gate", rep.Verdict()}}
		root.Tests += s.Tests
		root.Failures += s.Failures
		root.Suites = append(root.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(root); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// failureType is the worst class the row saw, as the failure's type.
func failureType(r Row) string {
	switch {
	case r.RegeneratedCreds > 0:
		return "RegeneratedCreds"
	case r.StoreError > 0:
		return "StoreError"
	case r.BadMAC > 0:
		return "BadMAC"
	case r.OldCounter > 0:
		return "OldCounter"
	case r.NoSession > 0:
		return "NoSession"
	case r.OtherErrors() > 0:
		return "OtherError"
	case r.StartRefused > 0:
		return "StartRefused"
	case r.LostPreKeys > 0:
		return "LostPreKeys"
	}
	return "Blamed"
}
