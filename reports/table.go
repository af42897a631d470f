package reports

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
)

// Columns are the wide table's headers (`-wide`, Markdown, HTML), in
// order; README explains each.
var Columns = []string{"discipline", "store", "scenario", "sched", "failed", "msgs", "delivered",
	"BadMAC", "OldCounter", "NoSession", "other err", "recovered", "lost", "dup", "crashes", "regen creds", "lost pk",
	"pair-blamed", "store-blamed", "crash-lost", "baseline", "library", "fail rate (95% CI)"}

// Cells returns a row's table cells in Columns order.
func (r Row) Cells() []string {
	return []string{r.label(), r.Store, r.Scenario,
		fmt.Sprint(r.Schedules), fmt.Sprint(r.FailedSchedules), fmt.Sprint(r.Messages), fmt.Sprint(r.Delivered),
		fmt.Sprint(r.BadMAC), fmt.Sprint(r.OldCounter), fmt.Sprint(r.NoSession), fmt.Sprint(r.OtherErrors()),
		fmt.Sprint(r.Recovered), fmt.Sprint(r.Lost), fmt.Sprint(r.Duplicates),
		fmt.Sprint(r.Crashes), regen(r), fmt.Sprint(r.LostPreKeys),
		fmt.Sprint(r.Blamed), r.StoreCell(), fmt.Sprint(r.LostToCrash), fmt.Sprint(r.BaselineFailures), fmt.Sprint(r.LibraryFailures),
		r.rateCell("%.2f%% [%.2f, %.2f]")}
}

// rateCell prints PairRate as percentages with format (three verbs).
func (r Row) rateCell(format string) string {
	p, lo, hi := r.PairRate()
	return fmt.Sprintf(format, 100*p, 100*lo, 100*hi)
}

func (r Row) label() string {
	if r.MustPass {
		return r.Discipline + " *"
	}
	return r.Discipline
}

// compact is the default table: the key columns, two header lines, fit in
// 120 columns for every built-in discipline, store and scenario name.
var compact = [2][]string{
	{"", "", "", "sched/", "", "pair", "store", "crash", "", ""},
	{"discipline", "store", "scenario", "failed", "msgs", "blamed", "blamed", "lost", "main failures", "pair rate (95% CI)"},
}

// failuresWidth bounds the "main failures" cell.
const failuresWidth = 20

func (r Row) compactCells() []string {
	p, lo, hi := r.PairRate()
	return []string{r.label(), r.Store, r.Scenario, fmt.Sprintf("%d/%d", r.Schedules, r.FailedSchedules),
		fmt.Sprint(r.Messages), fmt.Sprint(r.Blamed), r.StoreCell(), fmt.Sprint(r.LostToCrash), r.MainFailures(failuresWidth),
		fmt.Sprintf("%s%% [%s, %s]", pct(p), pct(lo), pct(hi))}
}

// pct is a percentage in at most 5 characters that keeps two significant
// digits of small rates (an interval's upper end of 0.04% is not 0.0%).
func pct(x float64) string {
	if 100*x < 10 {
		return fmt.Sprintf("%.2f", 100*x)
	}
	return fmt.Sprintf("%.1f", 100*x)
}

// MainFailures names the row's most frequent failures, most first, in at
// most width bytes ("BadMAC 12 OldCounter 3", "+" when some did not fit):
// failed attempts by class, regenerated credentials, refused starts, lost
// prekeys.
func (r Row) MainFailures(width int) string {
	type item struct {
		name string
		n    int
	}
	items := []item{{"regen", r.RegeneratedCreds}, {"refused", r.StartRefused}, {"lost-pk", r.LostPreKeys},
		{"StoreError", r.StoreError}, {"BadMAC", r.BadMAC}, {"OldCounter", r.OldCounter}, {"NoSession", r.NoSession},
		{"InvalidPreKey", r.InvalidPreKey}, {"Untrusted", r.UntrustedIdentity}, {"NoSenderKey", r.NoSenderKey},
		{"Other", r.OtherError}}
	// Credentials, prekeys and store errors first, whatever their count:
	// they fail a row on their own.
	sort.SliceStable(items[4:], func(i, j int) bool { return items[4+i].n > items[4+j].n })
	var out []string
	used := 0
	for _, it := range items {
		if it.n == 0 {
			continue
		}
		s := fmt.Sprintf("%s %d", it.name, it.n)
		if used+len(s)+1 > width {
			out = append(out, "+")
			break
		}
		out = append(out, s)
		used += len(s) + 1
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, " ")
}

// TableOptions tune WriteTable.
type TableOptions struct {
	// Wide prints every column (Columns) in a boxed table.
	Wide bool
}

// WriteTable prints the report as a terminal table (the key columns, in
// 120 columns; every column with Wide), then what the gate judged: the
// gate and a FAIL line per failing must-pass row; the rows with failures
// no gate judged, as measurements; the baseline's own failures; and the
// verdict.
func WriteTable(w io.Writer, rep *Report, opt TableOptions) error {
	if opt.Wide {
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
	} else {
		rows := [][]string{compact[0], compact[1]}
		for _, r := range rep.Rows {
			rows = append(rows, r.compactCells())
		}
		writeAligned(w, rows)
	}
	fmt.Fprintf(w, "seed %d, mode %s, %d schedules per row; * = must pass\n", rep.Seed, rep.Mode, rep.Schedules)
	fmt.Fprint(w, rep.Legend())
	fmt.Fprintln(w, rep.GateLine())
	for _, r := range rep.Rows {
		if r.MustPass && r.Failed() {
			fmt.Fprintf(w, "FAIL %s: %s\n", r.Name(), r.Summary)
			if r.Replay != "" {
				fmt.Fprintf(w, "  replay: %s\n", r.Replay)
			}
		}
	}
	if line := rep.MeasuredLine(); line != "" {
		fmt.Fprintln(w, line)
		for _, r := range rep.Rows {
			if !r.MustPass && r.Failed() {
				fmt.Fprintf(w, "  %s: %s\n", r.Name(), r.figures())
				if r.Summary != "" {
					fmt.Fprintf(w, "    %s\n", r.Summary)
				}
				if r.Replay != "" {
					fmt.Fprintf(w, "    replay: %s\n", r.Replay)
				}
			}
		}
	}
	for _, r := range rep.Rows {
		if r.LibraryFailures > 0 {
			fmt.Fprintf(w, "BASELINE %s: %d messages fail in the protocol baseline too (never blamed)\n", r.Name(), r.LibraryFailures)
			if r.Library != nil {
				writeWrapped(w, "  ", r.Library.Summary)
				if r.Library.Replay != "" {
					fmt.Fprintf(w, "  replay: %s\n", r.Library.Replay)
				}
			}
		}
	}
	fmt.Fprintln(w, rep.VerdictLine())
	return nil
}

// figures are how many schedules failed and the pair rate.
func (r Row) figures() string {
	return fmt.Sprintf("%d/%d schedules failed, %s pair-blamed", r.FailedSchedules, r.Schedules, r.rateCell("%.1f%% [%.1f, %.1f]"))
}

// measurement is a not-gated row's line: figures, then the first failing
// schedule's summary.
func (r Row) measurement() string { return r.figures() + ": " + r.Summary }

// Legend explains the attribution columns under every table (lines under
// 120 columns), naming each row's protocol baseline.
func (rep *Report) Legend() string {
	var b strings.Builder
	b.WriteString("pair blamed: worse than the row's protocol baseline (one task at a time, a store that loses nothing): the gate\n")
	var bases []string
	who := map[string][]string{}
	for _, r := range rep.Rows {
		base := r.Baseline
		if base == "" {
			base = ModelBaseline
		}
		if _, ok := who[base]; !ok {
			bases = append(bases, base)
		}
		if name, _, _ := strings.Cut(r.Discipline, ":"); !slices.Contains(who[base], name) {
			who[base] = append(who[base], name)
		}
	}
	for _, base := range bases {
		writeWrapped(&b, "  ", fmt.Sprintf("baseline of %s: %s", strings.Join(who[base], ", "), base))
	}
	b.WriteString("store blamed: worse than the reference store under the same client and interleaving (n/a: not judged)\n")
	if slices.ContainsFunc(rep.Rows, func(r Row) bool { return r.StoreJudged != nil }) {
		b.WriteString("  N (J/S): judged in J of S schedules only; the device judged no store where its reference run would not be exact\n")
	}
	b.WriteString("crash lost: killed between decrypt and ack, or lost as badly serially with the same backup restored\n" +
		"BASELINE: failed in the protocol baseline too, with a perfect store: the protocol's or libsignal's\n")
	return b.String()
}

// writeAligned prints rows right-aligned in columns two spaces apart (the
// first three left-aligned).
func writeAligned(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	for n, row := range rows {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			if i < 3 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if n == 1 {
			total := len(row)*2 - 2
			for _, x := range width {
				total += x
			}
			fmt.Fprintln(w, strings.Repeat("-", total))
		}
	}
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

// writeWrapped writes text in lines of at most 120 columns, each starting
// with indent, broken at spaces (a word longer than a line stands alone).
func writeWrapped(w io.Writer, indent, text string) {
	line := indent
	for _, word := range strings.Fields(text) {
		if line != indent && len([]rune(line))+1+len([]rune(word)) > 120 {
			fmt.Fprintln(w, line)
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	if line != indent {
		fmt.Fprintln(w, line)
	}
}
