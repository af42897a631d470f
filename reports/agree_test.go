package reports

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// One set of numbers (issue 16 §5): the wide table, JSON, JUnit, Markdown
// and HTML each render the report, and every row's figures read back from
// each are the same: schedules, failed schedules, messages, pair-blamed,
// store-blamed, crash-lost and the pair rate with its interval, and the
// verdict line. Rows are built as a caller would, with counts only (the
// HTML timeline of a storetest replay read "0.00% [0.00, 0.00]" for 1 of 5
// messages pair-blamed, its rate fields never set).
func TestOutputsAgree(t *testing.T) {
	three := 3
	rep := &Report{Seed: 9, Mode: "controlled", Schedules: 5, MustPass: "locked/reference", Rows: []Row{
		{Discipline: "locked", Store: "reference", Scenario: "reply", MustPass: true, Schedules: 5, Messages: 70, Delivered: 70},
		{Discipline: "concurrent", Store: "mutexed", Scenario: "reply", Schedules: 5, FailedSchedules: 4, Messages: 81, Delivered: 60,
			Blamed: 25, StoreBlamed: &three, OldCounter: 17, Summary: "r2 lost [OldCounter]", Replay: "badmac replay a.txt",
			Counterexample: "badmac schedule v1\nseed 1\nops\n", History: []string{"r2: OldCounter (old counter)"}},
		{Discipline: "locked", Store: "mutexed", Scenario: "crash", Schedules: 1, FailedSchedules: 1, Messages: 5, Delivered: 4,
			Blamed: 1, LostToCrash: 2, BadMAC: 1, Summary: "m3 lost [BadMAC]", Replay: "BADMAC_REPLAY=x go test", History: []string{"m3: BadMAC (no valid sessions)"}},
	}}
	type figures struct{ sched, failed, msgs, blamed, store, crash, rate string }
	want := map[string]figures{}
	for _, r := range rep.Rows {
		want[r.Name()] = figures{fmt.Sprint(r.Schedules), fmt.Sprint(r.FailedSchedules), fmt.Sprint(r.Messages), fmt.Sprint(r.Blamed),
			r.StoreCell(), fmt.Sprint(r.LostToCrash), r.rateCell("%.2f%% [%.2f, %.2f]")}
	}
	if got := want["locked/mutexed/crash"].rate; got != "20.00% [3.62, 62.45]" {
		t.Fatalf("1 of 5 pair-blamed reads %q", got)
	}
	col := func(name string) int {
		for i, c := range Columns {
			if c == name {
				return i
			}
		}
		t.Fatalf("no column %q", name)
		return -1
	}
	fromCells := func(cells []string) (string, figures) {
		name := strings.TrimSuffix(strings.TrimSpace(cells[0]), " *") + "/" + strings.TrimSpace(cells[1]) + "/" + strings.TrimSpace(cells[2])
		c := func(n string) string { return strings.TrimSpace(cells[col(n)]) }
		return name, figures{c("sched"), c("failed"), c("msgs"), c("pair-blamed"), c("store-blamed"), c("crash-lost"), c("fail rate (95% CI)")}
	}
	got := map[string]map[string]figures{}
	verdicts := map[string]string{}
	add := func(out, name string, f figures) {
		if got[out] == nil {
			got[out] = map[string]figures{}
		}
		got[out][name] = f
	}

	var tb strings.Builder
	if err := WriteTable(&tb, rep, TableOptions{Wide: true}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(tb.String(), "\n") {
		if cells := strings.Split(strings.Trim(line, "│"), "│"); len(cells) == len(Columns) && !strings.Contains(line, "discipline") {
			name, f := fromCells(cells)
			add("table", name, f)
		}
	}
	verdicts["table"] = lastLine(tb.String())

	var js strings.Builder
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil {
		t.Fatal(err)
	}
	for _, r := range back.Rows {
		// JSON carries fractions; the cell is the same function of them.
		add("json", r.Name(), figures{fmt.Sprint(r.Schedules), fmt.Sprint(r.FailedSchedules), fmt.Sprint(r.Messages), fmt.Sprint(r.Blamed),
			r.StoreCell(), fmt.Sprint(r.LostToCrash), fmt.Sprintf("%.2f%% [%.2f, %.2f]", 100*r.Rate, 100*r.RateLo, 100*r.RateHi)})
	}
	verdicts["json"] = (&Report{Rows: back.Rows, MustPass: back.MustPass}).VerdictLine()
	if back.Gate != rep.Verdict() || back.Pass != (rep.Verdict() == GatePass) {
		t.Errorf("json gate %q pass %v, verdict %q", back.Gate, back.Pass, rep.Verdict())
	}

	var md strings.Builder
	if err := WriteMarkdown(&md, rep, MarkdownOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(md.String(), "\n") {
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) == len(Columns) && !strings.Contains(line, "discipline") && !strings.HasPrefix(line, "|---") {
			for i := range cells {
				cells[i] = strings.NewReplacer(`\*`, "*", `\|`, "|").Replace(cells[i])
			}
			name, f := fromCells(cells)
			add("markdown", name, f)
		}
	}
	verdicts["markdown"] = strings.NewReplacer("**", "").Replace(strings.Split(md.String(), "\n")[2])

	var ht strings.Builder
	if err := WriteHTML(&ht, rep); err != nil {
		t.Fatal(err)
	}
	tr := regexp.MustCompile(`<tr class="[^"]*">((?:<td>[^<]*</td>)+)</tr>`)
	td := regexp.MustCompile(`<td>([^<]*)</td>`)
	for _, m := range tr.FindAllStringSubmatch(ht.String(), -1) {
		var cells []string
		for _, c := range td.FindAllStringSubmatch(m[1], -1) {
			cells = append(cells, c[1])
		}
		name, f := fromCells(cells)
		add("html", name, f)
	}
	verdicts["html"] = regexp.MustCompile(`<p class="verdict [a-z]+">([^<]*)</p>`).FindStringSubmatch(ht.String())[1]

	_, suites := junitOf(t, rep)
	stats := regexp.MustCompile(`(\d+)/(\d+) schedules failed; (\d+)/(\d+) messages pair-blamed \(([^)]*)\); store-blamed (\S+); crash-lost (\d+);`)
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			m := stats.FindStringSubmatch(c.SystemOut)
			if m == nil {
				t.Fatalf("junit %s: no figures in %q", c.Name, c.SystemOut)
			}
			add("junit", c.Name, figures{m[2], m[1], m[4], m[3], m[6], m[7], m[5]})
		}
		for _, p := range s.Properties {
			if p.Name == "gate" && p.Value != rep.Verdict() {
				t.Errorf("junit gate %q, verdict %q", p.Value, rep.Verdict())
			}
		}
	}

	for _, out := range []string{"table", "json", "markdown", "html", "junit"} {
		if len(got[out]) != len(want) {
			t.Errorf("%s: %d rows read back, want %d", out, len(got[out]), len(want))
		}
		for name, w := range want {
			if got[out][name] != w {
				t.Errorf("%s %s: %+v, want %+v", out, name, got[out][name], w)
			}
		}
	}
	for out, v := range verdicts {
		if v != rep.VerdictLine() {
			t.Errorf("%s verdict %q, want %q", out, v, rep.VerdictLine())
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
