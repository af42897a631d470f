package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/badmac/badmac/reports"
)

// checkWritable fails early, before a long run, when an output file's
// directory does not exist.
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output %s: %s is not a directory", path, dir)
	}
	return nil
}

// writeOutputs writes the optional report files.
func writeOutputs(rep *reports.Report, md, junit, html string) error {
	full := "the JSON report (`badmac run --json`)"
	if html != "" {
		full = "the HTML report " + filepath.Base(html)
	}
	files := []struct {
		path  string
		write func(w io.Writer) error
	}{
		{md, func(w io.Writer) error {
			return reports.WriteMarkdown(w, rep, reports.MarkdownOptions{FullReport: full})
		}},
		{junit, func(w io.Writer) error { return reports.WriteJUnit(w, rep) }},
		{html, func(w io.Writer) error { return reports.WriteHTML(w, rep) }},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		var b bytes.Buffer
		if err := f.write(&b); err != nil {
			return fmt.Errorf("report %s: %w", f.path, err)
		}
		if err := os.WriteFile(f.path, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("report %s: %w", f.path, err)
		}
	}
	return nil
}

// stderrIsTerminal decides whether a progress bar is drawn; a variable so
// tests can pretend.
var stderrIsTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// newProgress is the schedule counter drawn on stderr during a run.
func newProgress(w io.Writer, total int) *progressbar.ProgressBar {
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("schedules"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(true),
	)
}

// newShrinkProgress is the candidate-run counter badmac shrink draws on
// stderr, with the current length in its description.
func newShrinkProgress(w io.Writer, budget int) *progressbar.ProgressBar {
	return progressbar.NewOptions(budget,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("shrink"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}
