package reports

import (
	"fmt"
	"io"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
)

// Columns are the table's headers, in order; README explains each.
var Columns = []string{"discipline", "store", "scenario", "sched", "failed", "msgs", "delivered",
	"BadMAC", "OldCounter", "NoSession", "other err", "recovered", "lost", "dup", "crashes", "regen creds", "lost pk", "blamed", "fail rate (95% CI)"}

// Cells returns a row's table cells in Columns order.
func (r Row) Cells() []string {
	name := r.Discipline
	if r.MustPass {
		name += " *"
	}
	return []string{name, r.Store, r.Scenario,
		fmt.Sprint(r.Schedules), fmt.Sprint(r.FailedSchedules), fmt.Sprint(r.Messages), fmt.Sprint(r.Delivered),
		fmt.Sprint(r.BadMAC), fmt.Sprint(r.OldCounter), fmt.Sprint(r.NoSession), fmt.Sprint(r.OtherErrors()),
		fmt.Sprint(r.Recovered), fmt.Sprint(r.Lost), fmt.Sprint(r.Duplicates),
		fmt.Sprint(r.Crashes), regen(r), fmt.Sprint(r.LostPreKeys), fmt.Sprint(r.Blamed),
		fmt.Sprintf("%.2f%% [%.2f, %.2f]", 100*r.Rate, 100*r.RateLo, 100*r.RateHi)}
}

// WriteTable prints the report as a terminal table, then one replay
// command per failing row.
func WriteTable(w io.Writer, rep *Report) error {
	t := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithRowAlignment(tw.AlignRight),
	)
	t.Header(anySlice(Columns)...)
	for _, r := range rep.Rows {
		if err := t.Append(anySlice(r.Cells())...); err != nil {
			return err
		}
	}
	if err := t.Render(); err != nil {
		return err
	}
	fmt.Fprintf(w, "seed %d, mode %s, %d schedules per row; * = must pass\n", rep.Seed, rep.Mode, rep.Schedules)
	for _, r := range rep.Rows {
		if r.Replay != "" {
			fmt.Fprintf(w, "FAIL %s/%s/%s: %s\n  replay: %s\n", r.Discipline, r.Store, r.Scenario, r.Summary, r.Replay)
		}
	}
	if rep.Pass {
		fmt.Fprintln(w, "PASS: every must-pass pair had zero blamed failures")
	} else {
		fmt.Fprintln(w, "FAIL: a must-pass pair was blamed for a failure")
	}
	return nil
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// regen shows regenerated credentials, and refused starts after a slash.
func regen(r Row) string {
	if r.StartRefused > 0 {
		return fmt.Sprintf("%d/%d refused", r.RegeneratedCreds, r.StartRefused)
	}
	return fmt.Sprint(r.RegeneratedCreds)
}
