package reports

import (
	"fmt"
	"io"
	"strings"
)

// MarkdownLimit is the default cap on WriteMarkdown's output: GitHub
// refuses a step summary over 1 MiB, so stay well under it.
const MarkdownLimit = 512 << 10

// MarkdownOptions tune WriteMarkdown.
type MarkdownOptions struct {
	// Limit caps the output in bytes (0: MarkdownLimit).
	Limit int
	// FullReport says where the whole report is (an artifact name, a
	// path); it is named when the output is truncated.
	FullReport string
}

// WriteMarkdown writes the report for a GitHub step summary: the verdict,
// the table, and per failing row its summary, replay command and
// counterexample. Past the limit it stops at a whole row and says where
// the full report is.
func WriteMarkdown(w io.Writer, rep *Report, opt MarkdownOptions) error {
	limit := opt.Limit
	if limit <= 0 {
		limit = MarkdownLimit
	}
	var b strings.Builder
	verdict, rest, _ := strings.Cut(rep.VerdictLine(), ": ")
	fmt.Fprintf(&b, "## badmac\n\n**%s**: %s\n\n%s  \n", verdict, rest, mdEscape(rep.GateLine()))
	if line := rep.MeasuredLine(); line != "" {
		fmt.Fprintf(&b, "%s  \n", mdEscape(line))
	}
	fmt.Fprintf(&b, "seed %d, mode %s, %d schedules per row; `*` = must pass\n\n%s\n\n",
		rep.Seed, rep.Mode, rep.Schedules, strings.ReplaceAll(strings.TrimSuffix(rep.Legend(), "\n"), "\n", "  \n"))
	head := b.String()

	var parts []string // each a whole row of the table or a whole failure
	var table strings.Builder
	table.WriteString("| " + strings.Join(Columns, " | ") + " |\n|")
	for range Columns {
		table.WriteString("---|")
	}
	table.WriteString("\n")
	parts = append(parts, table.String())
	for _, r := range rep.Rows {
		cells := r.Cells()
		for i, c := range cells {
			cells[i] = mdEscape(c)
		}
		parts = append(parts, "| "+strings.Join(cells, " | ")+" |\n")
	}
	parts = append(parts, "\n")
	block := func(title, replay, counterexample string) string {
		var f strings.Builder
		fmt.Fprintf(&f, "<details><summary>%s</summary>\n\n", htmlEscape(title))
		if replay != "" {
			fmt.Fprintf(&f, "```\n%s\n```\n\n", replay)
		}
		if counterexample != "" {
			fmt.Fprintf(&f, "```\n%s```\n\n", counterexample)
		}
		f.WriteString("</details>\n\n")
		return f.String()
	}
	for _, gated := range []bool{true, false} {
		for _, r := range rep.Rows {
			if !r.Failed() || r.MustPass != gated {
				continue
			}
			title := fmt.Sprintf("FAIL %s (must pass): %s", r.Name(), r.Summary)
			if !gated {
				title = fmt.Sprintf("measured, not gated: %s: %s", r.Name(), r.measurement())
			}
			parts = append(parts, block(title, r.Replay, r.Counterexample))
		}
	}
	first := true
	for _, r := range rep.Rows {
		if r.LibraryFailures == 0 {
			continue
		}
		if first {
			parts = append(parts, "### Baseline failures (the protocol's or libsignal's, never blamed)\n\n")
			first = false
		}
		title := fmt.Sprintf("BASELINE %s: %d messages", r.Name(), r.LibraryFailures)
		replay, ce := "", ""
		if r.Library != nil {
			title += ": " + r.Library.Summary
			replay, ce = r.Library.Replay, r.Library.Counterexample
		}
		parts = append(parts, block(title, replay, ce))
	}

	more := func(left int) string {
		where := opt.FullReport
		if where == "" {
			where = "`badmac run --json` or `--html`"
		}
		return fmt.Sprintf("\n\n**Truncated**: %d more parts (table rows or failures) left out to stay under %d bytes; the full report is in %s.\n", left, limit, where)
	}
	var out strings.Builder
	out.WriteString(head)
	for i, p := range parts {
		// Keep room for the truncation note.
		if out.Len()+len(p)+len(more(len(parts)-i)) > limit {
			out.WriteString(more(len(parts) - i))
			break
		}
		out.WriteString(p)
	}
	_, err := io.WriteString(w, out.String())
	return err
}

func mdEscape(s string) string { return strings.NewReplacer("|", `\|`, "*", `\*`).Replace(s) }

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
