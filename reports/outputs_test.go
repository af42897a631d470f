package reports

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func sampleReport(failing int) *Report {
	rep := &Report{Seed: 7, Mode: "controlled", Schedules: 4}
	for i := range failing + 2 {
		r := Row{Discipline: "concurrent", Store: fmt.Sprintf("store%d", i), Scenario: "reply", Schedules: 4, Messages: 40, Delivered: 40}
		if i < failing {
			r.MustPass = i == 0
			r.FailedSchedules, r.Blamed, r.Delivered, r.BadMAC = 2, 5, 35, 5
			r.Summary = "r2 lost [BadMAC]"
			r.Replay = fmt.Sprintf("badmac replay f%d.txt", i)
			r.Counterexample = "badmac schedule v1\nseed 1\nops\n" + strings.Repeat("step m1\n", 200)
			r.History = []string{"send alice.0 m1: pkmsg m1", "deliver m1", "m1 GetSession alice:0", "m1: ok", "r2: BadMAC (no valid sessions)"}
		}
		rep.Rows = append(rep.Rows, r)
	}
	return rep
}

// JUnit: one case per row, in a must-pass suite and a not-gated suite;
// failures only where the gate judged a row that failed, with the replay

// junitOf writes rep as JUnit and parses it back.
func junitOf(t *testing.T, rep *Report) (string, junitSuites) {
	t.Helper()
	var b strings.Builder
	if err := WriteJUnit(&b, rep); err != nil {
		t.Fatal(err)
	}
	var got junitSuites
	if err := xml.Unmarshal([]byte(b.String()), &got); err != nil {
		t.Fatalf("junit does not parse: %v\n%s", err, b.String())
	}
	return b.String(), got
}

// command; a not-gated row with failures is a measurement, not a failure.
func TestJUnitCounts(t *testing.T) {
	rep := sampleReport(3)
	_, got := junitOf(t, rep)
	if got.Tests != 5 || got.Failures != 1 || len(got.Suites) != 2 {
		t.Fatalf("tests=%d failures=%d suites=%d, want 5, 1, 2", got.Tests, got.Failures, len(got.Suites))
	}
	g, o := got.Suites[0], got.Suites[1]
	if g.Name != JUnitMustPass || g.Tests != 1 || g.Failures != 1 || o.Tests != 4 || o.Failures != 0 {
		t.Fatalf("suites: %+v / %+v", g, o)
	}
	if m := o.Cases[0].SystemOut; !strings.HasPrefix(m, "measured, not gated: 2/4 schedules failed, 12.5% [5.5, 26.1] pair-blamed") || !strings.Contains(m, "replay: badmac replay f1.txt") {
		t.Fatalf("not-gated row with failures: %q", m)
	}
	f := g.Cases[0].Failure
	if f == nil || !strings.Contains(f.Text, "replay: badmac replay f0.txt") || f.Message != "r2 lost [BadMAC]" || f.Type != "BadMAC" {
		t.Fatalf("failure: %+v", f)
	}
	if g.Cases[0].Name != "concurrent/store0/reply" {
		t.Fatalf("case name %q", g.Cases[0].Name)
	}
}

// A gate that earned no verdict (exit 2) is no green JUnit build: a
// passing must-pass row that judged no message, and the report has one
// failed case, "gate"; the same row with messages has none.
func TestJUnitNoVerdictFails(t *testing.T) {
	for _, msgs := range []int{0, 40} {
		rep := sampleReport(0)
		rep.Rows[0].MustPass, rep.Rows[0].Messages, rep.Rows[0].Delivered = true, msgs, msgs
		out, got := junitOf(t, rep)
		want := 0
		if msgs == 0 {
			want = 1
		}
		if got.Failures != want || (want == 1 && !strings.Contains(out, "NO VERDICT")) {
			t.Errorf("%d messages, verdict %s: %d failures, want %d\n%s", msgs, rep.Verdict(), got.Failures, want, out)
		}
	}
}

// Markdown stays under its limit, cuts at a whole part and says where the
// full report is; uncapped, everything is there.
func TestMarkdownCap(t *testing.T) {
	rep := sampleReport(40)
	var full strings.Builder
	if err := WriteMarkdown(&full, rep, MarkdownOptions{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(full.String(), "Truncated") || strings.Count(full.String(), "<details>") != 40 {
		t.Fatalf("uncapped output is not whole (%d bytes)", full.Len())
	}
	const limit = 20000
	if full.Len() <= limit {
		t.Fatalf("sample too small to test the cap: %d bytes", full.Len())
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, rep, MarkdownOptions{Limit: limit, FullReport: "artifact badmac-report"}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if len(out) > limit {
		t.Fatalf("%d bytes over the %d limit", len(out), limit)
	}
	if !strings.Contains(out, "Truncated") || !strings.Contains(out, "artifact badmac-report") {
		t.Fatalf("no truncation note:\n%s", out[len(out)-300:])
	}
	if strings.Count(out, "<details>") != strings.Count(out, "</details>") || strings.Count(out, "```")%2 != 0 {
		t.Fatal("cut inside a failure block")
	}
	if !strings.HasPrefix(out, "## badmac\n\n**FAIL**") {
		t.Fatalf("no verdict first: %q", out[:40])
	}
}

func TestTimelineLanes(t *testing.T) {
	h := []string{"send alice.0 m1: pkmsg m1", "deliver m1", "m1 GetSession alice:0", "m1@1 PutSession alice:0",
		"m1: ok", "r2: BadMAC (no valid sessions)", `crash "": killed [m3], 2 pending writes hit`, "restart: credentials intact",
		"alice.0: retry 1 of r2 to the device, resent as r2.2", "drain: read r2", "reply alice.0 r3 @1", "drain: deliver m4",
		"dup m1: queued m1.2", "r3: send failed: store: boom", "alice.0: gives up on m2 after 5 retries",
		"m5: retry receipt without keys: store: boom", "stop: clean shutdown", "rekey alice.0: new session from a fresh bundle, same identity",
		"m6: no retry receipt (count 5)",
		"realclient: mode controlled", "deliver m7 pkmsg count=1", "peer alice.0: r8 msg count=0 failed: BadMAC",
		"peer bob.0: r8 pkmsg count=0 ok", "receipt r8 from alice.0", "server: retry m7: boom", "phase alice mixed",
		"m9 get session alice.0", "stop: m9 write session-alice.0.json (12 bytes)", "r9: sent (msg)", "r9: sendMessage failed: x",
		"connection closed"}
	want := []struct {
		lane   Lane
		task   string
		failed bool
	}{{LanePeer, "", false}, {LaneDevice, "m1", false}, {LaneStore, "m1", false}, {LaneStore, "m1@1", false},
		{LaneAttempt, "m1", false}, {LaneAttempt, "r2", true}, {LaneCrash, "", false}, {LaneCrash, "", false},
		{LanePeer, "alice.0", false}, {LanePeer, "", false}, {LaneDevice, "r3", false}, {LaneDevice, "m4", false},
		{LaneServer, "", false}, {LaneDevice, "r3", true}, {LanePeer, "alice.0", false}, {LaneDevice, "m5", false}, {LaneCrash, "", false}, {LaneCrash, "", false},
		{LaneDevice, "m6", false},
		{LaneDevice, "", false}, {LaneServer, "m7", false}, {LaneAttempt, "r8", true},
		{LaneAttempt, "r8", false}, {LanePeer, "alice.0", false}, {LaneServer, "m7", false}, {LaneServer, "", false},
		{LaneStore, "m9", false}, {LaneStore, "m9", false}, {LaneDevice, "r9", false}, {LaneDevice, "r9", true},
		{LaneDevice, "", false}}
	if len(want) != len(h) {
		t.Fatalf("%d lines, %d wanted", len(h), len(want))
	}
	for i, e := range Timeline(h) {
		if e.Lane != want[i].lane || e.Task != want[i].task || e.Failed != want[i].failed {
			t.Errorf("%q: got %+v, want %+v", h[i], e, want[i])
		}
	}
}

// The HTML page holds the table, one bar per (store, discipline) and a
// timeline per failing row with its failed attempt marked.
func TestHTMLStructure(t *testing.T) {
	var b strings.Builder
	if err := WriteHTML(&b, sampleReport(2)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{`<table id="results">`, `<svg id="chart"`, `class="counterexample" id="tl-concurrent-store1-reply"`, `class="ev ev-attempt failed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	if n := strings.Count(out, "<rect "); n != 4 {
		t.Errorf("%d bars, want 4", n)
	}
	if strings.Contains(out, "http://") && !strings.Contains(out, `xmlns="http://www.w3.org/2000/svg"`) || strings.Contains(out, "https://") || strings.Contains(out, "src=") {
		t.Error("page refers to the network")
	}
}

// A free-mode failure has a replay hint but no history: no empty timeline.
func TestHTMLFreeModeFailure(t *testing.T) {
	rep := sampleReport(1)
	rep.Rows[0].History, rep.Rows[0].Counterexample = nil, ""
	var b strings.Builder
	if err := WriteHTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "No replayed history") || strings.Contains(b.String(), `class="timeline"`) {
		t.Error("free-mode failure rendered as an empty timeline")
	}
}

// Baseline (library) failures have their own section in every output:
// the table, Markdown, HTML and JSON, with their replay command.
func TestLibrarySection(t *testing.T) {
	rep := sampleReport(0)
	rep.Rows[1].LibraryFailures = 2
	rep.Rows[1].Library = &Finding{Replay: "badmac replay lib.txt", Summary: "in the protocol baseline: m3 lost [BadMAC]",
		Counterexample: "badmac schedule v1\nseed 1\nops\n"}
	var tb, md, ht, js strings.Builder
	if err := WriteTable(&tb, rep, TableOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(&md, rep, MarkdownOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&ht, rep); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"table": tb.String(), "markdown": md.String(), "html": ht.String(), "json": js.String()} {
		if !strings.Contains(out, "m3 lost [BadMAC]") || !strings.Contains(out, "badmac replay lib.txt") {
			t.Errorf("%s lacks the baseline failure:\n%s", name, out)
		}
	}
	if !strings.Contains(tb.String(), "BASELINE concurrent/store1/reply: 2 messages") {
		t.Errorf("table:\n%s", tb.String())
	}
	if !strings.Contains(js.String(), `"library_failures": 2`) {
		t.Error("json lacks library_failures")
	}
	c := jsonschema.NewCompiler()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(js.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("a report with a library finding does not validate: %v", err)
	}
}
