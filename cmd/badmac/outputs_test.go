package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/reports"
)

// runFailing is a small run with a failing must-pass pair and a passing
// one, with every report file.
func runFailing(t *testing.T, extra ...string) (dir string, code int, out, errs string) {
	t.Helper()
	dir = t.TempDir()
	args := append([]string{"run", "-schedules", "3", "-scenarios", "reply", "-disciplines", "concurrent,locked",
		"-stores", "mutexed", "-must-pass", "concurrent/mutexed,locked/mutexed", "-out", filepath.Join(dir, "failures"),
		"-markdown", filepath.Join(dir, "r.md"), "-junit", filepath.Join(dir, "r.xml"), "-html", filepath.Join(dir, "r.html")}, extra...)
	code, out, errs = run(t, args...)
	return dir, code, out, errs
}

// badmac run --json is the JSON document alone, valid against the
// embedded schema, and the same run's table says the same.
func TestJSONValidatesAgainstSchema(t *testing.T) {
	_, code, out, errs := runFailing(t, "-json")
	require.Equal(t, 1, code, errs)
	require.Empty(t, errs)
	require.True(t, strings.HasPrefix(out, "{"), "stdout is not only JSON: %.80q", out)

	validate(t, out)

	var rep reports.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Rows, 2)
	require.False(t, rep.Pass)
	failing := rep.Rows[0]
	require.Equal(t, "concurrent", failing.Discipline)
	require.Positive(t, failing.Blamed)
	require.NotEmpty(t, failing.History)
	require.Contains(t, failing.Replay, "badmac replay ")

	// The schema rejects what it should: a missing field, a wrong type.
	sch := schema(t)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &m))
	delete(m["rows"].([]any)[0].(map[string]any), "blamed")
	require.Error(t, sch.Validate(m))
	m["seed"] = "one"
	require.Error(t, sch.Validate(m))
}

// The report files: JUnit parses with one case per row and the failing
// row's replay command; Markdown is under the cap with the verdict; the
// HTML has the table and a timeline.
func TestReportFiles(t *testing.T) {
	dir, code, out, _ := runFailing(t)
	require.Equal(t, 1, code, out)

	b, err := os.ReadFile(filepath.Join(dir, "r.xml"))
	require.NoError(t, err)
	var ju struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(b, &ju))
	require.Equal(t, 2, ju.Tests)
	require.Equal(t, 1, ju.Failures)
	require.Len(t, ju.Suites, 1)
	require.Equal(t, reports.JUnitMustPass, ju.Suites[0].Name)
	cs := ju.Suites[0].Cases
	require.Equal(t, "concurrent/mutexed/reply", cs[0].Name)
	require.NotNil(t, cs[0].Failure)
	require.Regexp(t, `replay: badmac replay \S+concurrent-mutexed-reply-seed\d+\.txt`, cs[0].Failure.Text)
	sum := regexp.MustCompile(`FAIL concurrent/mutexed/reply: (.*)`).FindStringSubmatch(out)
	require.Equal(t, sum[1], cs[0].Failure.Message)
	require.Nil(t, cs[1].Failure)

	md, err := os.ReadFile(filepath.Join(dir, "r.md"))
	require.NoError(t, err)
	require.Less(t, len(md), reports.MarkdownLimit)
	require.Contains(t, string(md), "**FAIL**")
	require.Contains(t, string(md), `| concurrent \* | mutexed | reply |`)

	html, err := os.ReadFile(filepath.Join(dir, "r.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), `<table id="results">`)
	require.Contains(t, string(html), `class="timeline"`)
}

// A progress bar only when stderr is a terminal, never under --json, and
// stdout the same byte for byte either way.
func TestProgressOnlyOnATerminal(t *testing.T) {
	args := []string{"run", "-schedules", "2", "-scenarios", "burst", "-disciplines", "locked", "-stores", "reference", "-out", t.TempDir()}
	_, plain, errs := run(t, args...)
	require.Empty(t, errs)

	old := stderrIsTerminal
	t.Cleanup(func() { stderrIsTerminal = old })
	stderrIsTerminal = func(io.Writer) bool { return true }
	_, tty, errs := run(t, args...)
	require.Equal(t, plain, tty)
	require.Contains(t, errs, "schedules")
	require.Contains(t, errs, "/2)")

	_, js, errs := run(t, append(args, "-json")...)
	require.Empty(t, errs)
	require.True(t, strings.HasPrefix(js, "{"))
}

// A saved failure shrinks to a schedule that replays to the same failure;
// a corrupted one gives one line naming the line.
func TestShrinkSavedFailure(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := run(t, "run", "-schedules", "4", "-scenarios", "reply", "-disciplines", "concurrent", "-stores", "mutexed",
		"-must-pass", "concurrent/mutexed", "-shrink", "0", "-out", dir)
	require.Equal(t, 1, code)
	saved := regexp.MustCompile(`replay: badmac replay (\S+)`).FindStringSubmatch(out)[1]
	_, before, _ := run(t, "replay", saved)
	fail := regexp.MustCompile(`(?m)^FAIL: .*$`).FindString(before)
	require.NotEmpty(t, fail)

	small := filepath.Join(dir, "small.txt")
	code, sout, serr := run(t, "shrink", saved, "-o", small, "-budget", "60")
	require.Equal(t, 1, code, serr)
	require.Contains(t, sout, "replay: badmac replay "+small)
	n := regexp.MustCompile(`from (\d+) to (\d+) ops`).FindStringSubmatch(sout)
	require.NotNil(t, n, sout)
	require.NotEqual(t, n[1], n[2])

	code, after, _ := run(t, "replay", small)
	require.Equal(t, 1, code)
	require.Contains(t, after, "FAIL: ")
	// Replaying the shrunk file twice gives the same history.
	_, again, _ := run(t, "replay", small)
	require.Equal(t, after, again)

	// Corrupt the saved file on its 9th line.
	b, err := os.ReadFile(small)
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	lines[8] = "stepp m1"
	bad := filepath.Join(dir, "bad.txt")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o644))
	for _, cmd := range []string{"replay", "shrink"} {
		code, _, errs := run(t, cmd, bad)
		require.Equal(t, 2, code)
		require.Equal(t, 1, strings.Count(errs, "\n"), errs)
		require.Contains(t, errs, "line 9: unknown op \"stepp\"")
	}
	// A file from another format version names line 1.
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(b), "v1", "v2", 1)), 0o644))
	_, _, errs := run(t, "shrink", bad)
	require.Contains(t, errs, "schedule line 1: want \"badmac schedule v1\"")
	require.Equal(t, 1, strings.Count(errs, "\n"), errs)
}

// The HTML report in a real browser (Debian's chromium): the DOM it builds
// holds the table, the chart and a timeline with the failed attempt.
func TestHTMLInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is missing: install Debian's chromium package (.ci/run does)")
		}
		t.Skip("cmd/badmac: chromium not installed (Debian package chromium); skipping the browser test")
	}
	dir, _, _, _ := runFailing(t)
	page := filepath.Join(dir, "r.html")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+page)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	dom := stdout.String()
	require.Contains(t, dom, `<table id="results">`)
	require.Regexp(t, `<td>concurrent \*</td><td>mutexed</td><td>reply</td>`, dom)
	require.Contains(t, dom, `<svg id="chart"`)
	require.Regexp(t, `<section class="counterexample" id="tl-concurrent-mutexed-reply">`, dom)
	require.Regexp(t, `<tr class="event">`, dom)
	require.Regexp(t, `class="ev ev-attempt failed"`, dom)
}

// Shrinking a reinstall failure deletes the ops that recreated a session
// between a reply's ContainsSession and its Encrypt; libsignal's nil
// dereference there is a NoSession failure, not a crash of the run.
func TestReinstallShrinkDoesNotPanic(t *testing.T) {
	code, out, errs := run(t, "run", "-schedules", "3", "-scenarios", "reinstall", "-disciplines", "whatsmeow", "-stores", "reference",
		"-must-pass", "none", "-out", t.TempDir())
	require.Equal(t, 0, code, errs)
	require.Regexp(t, `(?m)^  whatsmeow/reference/reinstall: 3/3 schedules failed, `, out)
}

// The history a run reports for its counterexample (JSON) is what
// replaying the saved file prints, line for line, with the same summary.
func TestReplayMatchesReportedHistory(t *testing.T) {
	_, code, out, _ := runFailing(t, "-json")
	require.Equal(t, 1, code)
	var rep reports.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	row := rep.Rows[0]
	path := strings.TrimPrefix(row.Replay, "badmac replay ")
	saved, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, row.Counterexample, string(saved))

	code, rout, _ := run(t, "replay", path)
	require.Equal(t, 1, code)
	_, hist, ok := strings.Cut(rout, "\nhistory\n")
	require.True(t, ok)
	hist, _, _ = strings.Cut(hist, "\noutcome ")
	require.Equal(t, strings.Join(row.History, "\n"), hist)
	require.Contains(t, rout, "FAIL: "+row.Summary+"\n")
}

// bench prints a ratio against the raw loop per store and finds a broken
// pair's first failure (figures are not checked: they are times).
func TestBenchPrintsRatio(t *testing.T) {
	code, out, errs := run(t, "bench", "-stores", "reference", "-messages", "10", "-rounds", "1", "-schedules", "1",
		"-trials", "1", "-limit", "10", "-shrink", "10", "-broken", "concurrent/mutexed/reply", "-default-run=false", "-profile", "50ms")
	require.Equal(t, 0, code, errs)
	require.Regexp(t, `(?m)^\s+harness's own\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[-+][\d.]+\s*$`, out)
	require.Regexp(t, `(?m)^where the rest goes \(harness - raw loop, µs/msg, largest first\): .+$`, out)
	require.Regexp(t, `(?m)^\s+reference\s+\d+\s+\d+\.\d\d\s+(\d+\.\d\d|-)\s+\d+\s+\d+\.\d\d\s+(\d+\.\d\d|-)\s+[\d.]+\s+\d+\s+\d+\.\d+\s+\d+\.\d\d\s*$`, out)
	require.Regexp(t, `raw libsignal loop .*: \d+ msg/s`, out)
	require.Regexp(t, `(?m)^\s+concurrent/mutexed/reply\s+1/1\s+\d+\s+\S+\s+\d+\s+\d+\s*$`, out)
}
