package reports

import (
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
)

func TestCellsMatchColumns(t *testing.T) {
	r := Row{Discipline: "locked", Store: "files", Scenario: "crash", Crashes: 12, RegeneratedCreds: 8}
	cells := r.Cells()
	if len(cells) != len(Columns) {
		t.Fatalf("%d cells for %d columns", len(cells), len(Columns))
	}
	for i, c := range Columns {
		if c == "regen creds" && cells[i] != "8" || c == "crashes" && cells[i] != "12" {
			t.Errorf("column %s: %q", c, cells[i])
		}
	}
	var b strings.Builder
	if err := WriteTable(&b, &Report{Rows: []Row{r}}, TableOptions{Wide: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "regen creds") {
		t.Errorf("table lacks the regen creds column:\n%s", b.String())
	}
}

// The compact table fits 120 columns with the longest built-in names and
// large figures; MainFailures stays within its width.
func TestCompactTableFits(t *testing.T) {
	n := 17000
	r := Row{Discipline: "concurrent", MustPass: true, Store: "files-atomic", Scenario: "reinstall", Schedules: 10000, FailedSchedules: 10000,
		Messages: 170000, Blamed: 169999, StoreBlamed: &n, LostToCrash: 12345, BadMAC: 123456, OldCounter: 99999, RegeneratedCreds: 10000}
	var b strings.Builder
	if err := WriteTable(&b, &Report{Rows: []Row{r}}, TableOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if len([]rune(line)) > 120 {
			t.Errorf("%d columns: %q", len([]rune(line)), line)
		}
	}
	if got := r.MainFailures(failuresWidth); len(got) > failuresWidth || !strings.HasPrefix(got, "regen 10000") {
		t.Errorf("main failures %q", got)
	}
}

// One verdict: Row.Failed for every failure kind, Report.Verdict over the
// must-pass rows, and the four gate states.
func TestVerdict(t *testing.T) {
	ran := Row{MustPass: true, Schedules: 1, Messages: 1}
	for name, r := range map[string]Row{
		"blamed": {Blamed: 1}, "failed schedule": {FailedSchedules: 1}, "regenerated": {RegeneratedCreds: 1},
		"refused": {StartRefused: 1}, "lost prekeys": {LostPreKeys: 1}, "store error": {StoreError: 1},
	} {
		r.Schedules = 1
		if !r.Failed() {
			t.Errorf("%s: row passes", name)
		}
		r.MustPass = true
		rep := &Report{Rows: []Row{ran, r}}
		if rep.Verdict() != GateFail || !strings.HasPrefix(rep.VerdictLine(), "FAIL") {
			t.Errorf("%s: verdict %s", name, rep.Verdict())
		}
		r.MustPass = false
		rep = &Report{Rows: []Row{ran, r}}
		if rep.Verdict() != GatePass {
			t.Errorf("%s not gated: verdict %s", name, rep.Verdict())
		}
		var b strings.Builder
		if err := WriteTable(&b, rep, TableOptions{}); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(b.String(), "FAIL") || !strings.Contains(b.String(), "measured, not gated: 1 row with failures") {
			t.Errorf("%s not gated: a FAIL line, or no measurement:\n%s", name, b.String())
		}
		// No gate: only on purpose, and said in the user's words.
		rep = &Report{Rows: []Row{r}, MustPass: "none"}
		if rep.Verdict() != GateNotGated || strings.Contains(rep.VerdictLine(), "PASS") || !strings.Contains(rep.VerdictLine(), "-must-pass none") {
			t.Errorf("%s, -must-pass none: %s", name, rep.VerdictLine())
		}
		// A gate that holds no row, or a row that ran nothing, earns no
		// pass (before: NOT GATED, "(-must-pass none)", exit 0).
		for _, rep := range []*Report{{Rows: []Row{r}}, {Rows: []Row{r, {MustPass: true}}}, {Rows: []Row{r, {MustPass: true, Schedules: 3}}}} {
			if rep.Verdict() != GateUnearned || !strings.HasPrefix(rep.VerdictLine(), "NO VERDICT") {
				t.Errorf("%s, no gate earned: %s", name, rep.VerdictLine())
			}
		}
	}
	// Store failures and losses to a crash are shown, not gated.
	n := 3
	if (Row{StoreBlamed: &n, LostToCrash: 2, LibraryFailures: 1}).Failed() {
		t.Error("store-blamed alone fails the row")
	}
}

// A row judged in some of its schedules only says so in its cell and the
// legend; a row judged in all or none reads as before.
func TestStoreJudgedInSome(t *testing.T) {
	two := 2
	all := CountsRow(harness.Counts{StoreBlamed: 1}, 5, 0)
	if all.StoreJudged != nil || all.StoreCell() != "1" {
		t.Errorf("judged in all: cell %q, judged %v", all.StoreCell(), all.StoreJudged)
	}
	none := CountsRow(harness.Counts{StoreNA: 5}, 5, 0)
	if none.StoreBlamed != nil || none.StoreCell() != "n/a" {
		t.Errorf("judged in none: cell %q", none.StoreCell())
	}
	some := CountsRow(harness.Counts{StoreBlamed: 0, StoreNA: 3}, 5, 0)
	if some.StoreJudged == nil || *some.StoreJudged != two || some.StoreCell() != "0 (2/5)" {
		t.Errorf("judged in 2 of 5: cell %q", some.StoreCell())
	}
	rep := &Report{Rows: []Row{all}}
	if strings.Contains(rep.Legend(), "(J/S)") {
		t.Error("the legend explains a partial judgement no row has")
	}
	rep.Rows = append(rep.Rows, some)
	if !strings.Contains(rep.Legend(), "N (J/S): judged in J of S schedules only") {
		t.Errorf("legend without the partial judgement:\n%s", rep.Legend())
	}
}
