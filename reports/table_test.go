package reports

import (
	"strings"
	"testing"
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
	if err := WriteTable(&b, &Report{Rows: []Row{r}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "regen creds") {
		t.Errorf("table lacks the regen creds column:\n%s", b.String())
	}
}
