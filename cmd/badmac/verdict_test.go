package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/devices"
	"github.com/badmac/badmac/reports"
)

// outputs runs badmac with every report file and returns the exit code,
// the table, and the JSON, Markdown, JUnit and HTML of the same run.
type outputs struct {
	code                  int
	table, md, junit, htm string
	rep                   reports.Report
}

func runAll(t *testing.T, args ...string) outputs {
	t.Helper()
	dir := t.TempDir()
	files := []string{"-out", filepath.Join(dir, "f"), "-markdown", filepath.Join(dir, "r.md"),
		"-junit", filepath.Join(dir, "r.xml"), "-html", filepath.Join(dir, "r.html")}
	var o outputs
	var errs string
	o.code, o.table, errs = run(t, append(append([]string{"run"}, args...), files...)...)
	require.Empty(t, errs)
	code, js, _ := run(t, append(append([]string{"run"}, args...), append(files, "-json")...)...)
	require.Equal(t, o.code, code, "exit code differs with -json")
	require.NoError(t, json.Unmarshal([]byte(js), &o.rep))
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		return string(b)
	}
	o.md, o.junit, o.htm = read("r.md"), read("r.xml"), read("r.html")
	return o
}

type junitDoc struct {
	Suites []struct {
		Name       string `xml:"name,attr"`
		Failures   int    `xml:"failures,attr"`
		Properties []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Failure *struct{} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// failedCases lists the failed test cases of the must-pass suite.
func failedCases(t *testing.T, s string) (gated []string, gate string) {
	var d junitDoc
	require.NoError(t, xml.Unmarshal([]byte(s), &d))
	for _, su := range d.Suites {
		for _, p := range su.Properties {
			if p.Name == "gate" {
				gate = p.Value
			}
		}
		for _, c := range su.Cases {
			if c.Failure != nil && su.Name == reports.JUnitMustPass {
				gated = append(gated, c.Name)
			}
		}
	}
	return gated, gate
}

// Issue 8 §1: a must-pass row that prints FAIL (regenerated credentials,
// seed 4; lost prekeys, seed 16) fails the gate in every output; before,
// exit 1 came from blamed messages alone and both exited 0 with pass: true.
// The same run on files-atomic passes in every output.
func TestGateFailsEveryRowThatPrintsFAIL(t *testing.T) {
	for _, c := range []struct {
		seed, store, what string
	}{{"4", "files", "REGENERATED CREDENTIALS"}, {"16", "files", "UNUSED PREKEYS LOST"}} {
		o := runAll(t, "-disciplines", "locked", "-stores", c.store, "-scenarios", "torn", "-must-pass", "locked/"+c.store,
			"-schedules", "1", "-seed", c.seed)
		require.Equal(t, 1, o.code, o.table)
		require.Regexp(t, `(?m)^FAIL locked/files/torn: crash .*`+c.what, o.table)
		require.Regexp(t, `(?m)^FAIL: must-pass rows failed: locked/files/torn$`, o.table)
		require.NotContains(t, o.table, "PASS")
		require.False(t, o.rep.Pass)
		require.Equal(t, reports.GateFail, o.rep.Gate)
		require.Zero(t, o.rep.Rows[0].Blamed, "the case the old gate missed has no blamed message")
		require.Contains(t, o.md, "**FAIL**")
		gated, gate := failedCases(t, o.junit)
		require.Equal(t, []string{"locked/files/torn"}, gated)
		require.Equal(t, reports.GateFail, gate)
		require.Contains(t, o.htm, `<p class="verdict fail">`)
		require.NotContains(t, o.htm, `class="verdict pass"`)
	}
	o := runAll(t, "-disciplines", "locked", "-stores", "files-atomic", "-scenarios", "torn", "-must-pass", "locked/files-atomic",
		"-schedules", "1", "-seed", "4")
	require.Equal(t, 0, o.code, o.table)
	require.True(t, o.rep.Pass)
	require.Equal(t, reports.GatePass, o.rep.Gate)
	require.Regexp(t, `(?m)^PASS: all 1 must-pass rows passed`, o.table)
	require.NotContains(t, o.table, "FAIL")
	require.Contains(t, o.md, "**PASS**")
	gated, gate := failedCases(t, o.junit)
	require.Empty(t, gated)
	require.Equal(t, reports.GatePass, gate)
	require.Contains(t, o.htm, `<p class="verdict pass">`)
}

// Issue 8 §2: a gate that did not run is bad input, not a pass; no gate
// on purpose (-must-pass none) says so everywhere, in the user's words,
// never PASS, even over failing rows, and exits 0. Issue 16 §2, §8: the
// same with or without -device, a shard that runs no schedule earns no
// pass, and a row no gate judged is a measurement, never a FAIL line.
func TestGateMustHaveRun(t *testing.T) {
	for _, args := range [][]string{
		{"-stores", "reference", "-must-pass", "locked/sqlite"},
		{"-stores", "reference,mutexed", "-disciplines", "concurrent", "-must-pass", "locked/reference"},
		{"-stores", "files", "-disciplines", "locked"}, // the default gate has no pair in this run
		{"-device", "model", "-stores", "files", "-disciplines", "locked"},
		{"-shard", "2/2"}, // 1 schedule per row: shard 2 runs none (before: every row 0/0, PASS)
	} {
		code, out, errs := run(t, append([]string{"run", "-schedules", "1", "-scenarios", "burst", "-out", t.TempDir()}, args...)...)
		require.Equal(t, 2, code, "%v: %s", args, out)
		require.Empty(t, out)
		require.Equal(t, 1, strings.Count(errs, "\n"), errs)
		require.Regexp(t, `^badmac: .*(must-pass|gate)`, errs)
	}
	o := runAll(t, "-disciplines", "concurrent", "-stores", "mutexed", "-scenarios", "reply", "-schedules", "3", "-must-pass", "none")
	require.Equal(t, 0, o.code)
	require.NotContains(t, o.table, "FAIL")
	require.Contains(t, o.table, "gate: none (-must-pass none)\nmeasured, not gated: 1 row with failures")
	require.Regexp(t, `(?m)^  concurrent/mutexed/reply: 3/3 schedules failed, `, o.table)
	require.Regexp(t, `(?m)^NOT GATED: -must-pass none: `, o.table)
	require.NotContains(t, o.table, "PASS")
	require.False(t, o.rep.Pass)
	require.Equal(t, reports.GateNotGated, o.rep.Gate)
	require.Contains(t, o.md, "**NOT GATED**")
	require.NotContains(t, o.md, "PASS")
	_, gate := failedCases(t, o.junit)
	require.Equal(t, reports.GateNotGated, gate)
	require.Contains(t, o.htm, `<p class="verdict notgated">`)
	require.NotContains(t, o.htm, `class="verdict pass"`)
}

// Issue 8 §4: a crash between PutSession and the ack loses the message on
// any store (the client's decrypt→store→ack is not atomic): it is lost to
// the crash, not a pair failure (before: exit 1, "m1 lost [OldCounter]"),
// and the reference store's own attribution is n/a, never a test result.
func TestCrashLossOnReferenceIsLostToCrash(t *testing.T) {
	code, js, errs := run(t, "run", "-disciplines", "locked", "-stores", "reference", "-scenarios", "crash", "-schedules", "100",
		"-seed", "1", "-must-pass", "locked/reference", "-json", "-out", t.TempDir())
	require.Equal(t, 0, code, errs)
	var rep reports.Report
	require.NoError(t, json.Unmarshal([]byte(js), &rep))
	r := rep.Rows[0]
	require.Zero(t, r.Blamed)
	require.Positive(t, r.LostToCrash, "no crash landed between PutSession and the ack in 100 schedules")
	require.Nil(t, r.StoreBlamed)
	require.True(t, rep.Pass)
	require.Contains(t, js, `"store_blamed": null`)
	validate(t, js)
}

// runReport runs args with -json and returns the exit code, the report
// (checked against the schema) and stderr.
func runReport(t *testing.T, args ...string) (int, reports.Report, string) {
	t.Helper()
	code, js, errs := run(t, append(args, "-json")...)
	var rep reports.Report
	require.NoError(t, json.Unmarshal([]byte(js), &rep), errs)
	validate(t, js)
	return code, rep, errs
}

// validate checks a JSON report against the embedded schema.
func validate(t *testing.T, js string) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(js))
	require.NoError(t, err)
	require.NoError(t, schema(t).Validate(inst))
}

// schema compiles the embedded JSON schema.
func schema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(reports.Schema))
	require.NoError(t, err)
	require.NoError(t, c.AddResource("schema.json", doc))
	sch, err := c.Compile("schema.json")
	require.NoError(t, err)
	return sch
}

// Crash scenarios tell stores apart: debounced loses its buffered writes
// (store-blamed, the FAIL line names the crash point), files-atomic loses
// nothing the reference store keeps.
func TestCrashBlamesTheStoreThatLosesWrites(t *testing.T) {
	code, js, _ := run(t, "run", "-disciplines", "locked", "-stores", "debounced,files-atomic", "-scenarios", "crash",
		"-schedules", "30", "-seed", "1", "-must-pass", "locked/files-atomic", "-json", "-out", t.TempDir())
	require.Equal(t, 0, code)
	var rep reports.Report
	require.NoError(t, json.Unmarshal([]byte(js), &rep))
	deb, atomic := rep.Rows[0], rep.Rows[1]
	require.Equal(t, "debounced", deb.Store)
	require.NotNil(t, deb.StoreBlamed)
	require.Positive(t, *deb.StoreBlamed)
	require.Positive(t, deb.Blamed)
	require.Regexp(t, `^crash after \w+ [^,]*\(\w+, write \d+\), before [^:]+: `, deb.Summary)
	require.NotNil(t, atomic.StoreBlamed)
	require.Zero(t, *atomic.StoreBlamed)
	require.Zero(t, atomic.Blamed)

	code, out, _ := run(t, "run", "-disciplines", "locked", "-stores", "debounced", "-scenarios", "crash",
		"-schedules", "30", "-seed", "1", "-must-pass", "locked/debounced", "-out", t.TempDir())
	require.Equal(t, 1, code)
	require.Regexp(t, `(?m)^FAIL locked/debounced/crash: crash after \w+ [^,]*\(\w+, write \d+\), before `, out)
}

// The default table fits 120 columns; -wide has every column.
func TestTableWidth(t *testing.T) {
	_, out, _ := run(t, "run", "-disciplines", "concurrent,locked", "-stores", "files-atomic,reference", "-scenarios", "reinstall",
		"-schedules", "2", "-out", t.TempDir())
	for _, line := range strings.Split(out, "\n") {
		require.LessOrEqual(t, len([]rune(line)), 120, "%q", line)
	}
	_, wide, _ := run(t, "run", "-disciplines", "concurrent,locked", "-stores", "files-atomic,reference", "-scenarios", "reinstall",
		"-schedules", "2", "-out", t.TempDir(), "-wide")
	for _, c := range reports.Columns {
		require.Contains(t, wide, c)
	}
	require.Regexp(t, regexp.MustCompile(`│\s+concurrent\s+│\s+files-atomic\s+│\s+reinstall\s+│`), wide)
}

// procs is a preset of run -device procs+gates: run's table, gate and
// exit code, the run command on stderr. The crash rows must pass by
// default, the overlap rows are measured; -must-pass none says "not
// gated", never PASS, over the same rows. Both directions: the durable
// child passes; a child whose session writes wait in memory
// (-write-behind 4, run's procs-writebehind+gates) loses them at the
// SIGKILL and fails the gate, store-blamed, with a replay file.
func TestProcsGate(t *testing.T) {
	t.Setenv("BADMAC_CMD_CHILD", "1") // the test binary is the child `badmac device`
	code, out, errs := run(t, "procs", "-stores", "sqlite", "-seeds", "2", "-out", t.TempDir())
	require.Equal(t, 0, code, "%s\n%s", out, errs)
	require.Regexp(t, `(?m)^procs\+gates \*\s+sqlite\s+crash\s+2/0 `, out)
	require.Regexp(t, `(?m)^procs\+gates\s+sqlite\s+overlap\s+2/`, out)
	require.Regexp(t, `(?m)^PASS: `, out)
	require.Contains(t, out, "pair rate (95% CI)", "run's table")
	require.Regexp(t, `(?m)^badmac procs: a preset of \S+ run -device procs\+gates -stores sqlite -scenarios crash,overlap -schedules 2 -seed 1 -must-pass procs\+gates/sqlite/crash -out `, errs)

	// Seed 2 fails the write-behind child's crash row within 3 schedules.
	code, out, errs = run(t, "procs", "-stores", "sqlite", "-seeds", "3", "-seed", "2", "-write-behind", "4", "-must-pass", "kill/sqlite", "-out", t.TempDir())
	require.Equal(t, 1, code, "%s\n%s", out, errs)
	require.Regexp(t, `(?m)^FAIL procs-writebehind\+gates/sqlite/crash: crash \(SIGKILL\) `, out)
	require.Regexp(t, `(?m)^  replay: \S+ replay \S+procs-writebehind\+gates-sqlite-crash-seed\d+\.txt$`, out)
	require.Regexp(t, `(?m)^FAIL: `, out)

	code, out, errs = run(t, "procs", "-stores", "sqlite", "-seeds", "1", "-must-pass", "none", "-out", t.TempDir())
	require.Equal(t, 0, code, errs)
	require.Regexp(t, `(?m)^NOT GATED: `, out)
	require.NotContains(t, out, "PASS")
	require.NotRegexp(t, `\*`, strings.Split(out, "seed 1, mode")[0])
	require.Contains(t, errs, "-must-pass none")
}

// Issue 16 §1, verbatim: adding a crash hid a racy client (6/6 schedules
// failed in every row, 0 pair-blamed, PASS, exit 0). A crash now excuses
// only what it causes, so the concurrent client fails its gate in crash,
// torn and rollback on the reference store and on mutexed.
func TestCrashDoesNotHideTheClient(t *testing.T) {
	code, rep, errs := runReport(t, "run", "-disciplines", "concurrent", "-stores", "reference,mutexed", "-scenarios", "crash,torn,rollback",
		"-schedules", "6", "-must-pass", "concurrent/reference,concurrent/mutexed", "-shrink", "0", "-out", t.TempDir())
	require.Equal(t, 1, code, errs)
	require.Len(t, rep.Rows, 6)
	for _, r := range rep.Rows {
		require.Positive(t, r.Blamed, r.Name())
		require.Equal(t, r.Schedules, r.FailedSchedules, r.Name())
	}
	require.Equal(t, reports.GateFail, rep.Gate)
}

// Issue 16 §2: a must-pass pair the device refuses fails the gate as bad
// input: procs on sqlite and postgres with no database configured used
// to pass on sqlite alone.
func TestRefusedMustPassPairIsBadInput(t *testing.T) {
	t.Setenv("BADMAC_POSTGRES_DSN", "")
	code, out, errs := run(t, "run", "-device", "procs", "-stores", "sqlite,postgres", "-scenarios", "burst", "-schedules", "1", "-out", t.TempDir())
	require.Equal(t, 2, code, out)
	require.Empty(t, out)
	require.Regexp(t, `(?m)^badmac: procs/postgres/burst must pass by default, but the device refuses it: .*BADMAC_POSTGRES_DSN is unset`, errs)
}

// A plain run on whatsmeow's sqlstore holds the real client's default
// gate (client-inline/sqlite): before, the model's default gate (locked
// on reference and mutexed) was checked alone and the run was refused as
// "no must-pass row", though its error named client-inline on sqlite as
// gated. The legend names the real client's own baseline (before: "the
// whatsmeow model", which it is not: realclient.Device.Baseline).
func TestPlainRunGatesTheRealClient(t *testing.T) {
	code, out, errs := run(t, "run", "-stores", "sqlite", "-scenarios", "burst", "-schedules", "1", "-shrink", "0", "-out", t.TempDir())
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "gate (the default: client-inline/sqlite): 1 row, 0 failed\n")
	require.Regexp(t, `(?m)^PASS: all 1 must-pass rows passed`, out)
	require.Contains(t, out, "baseline of client-inline, client-async: "+devices.ClientBaseline[:40])
	require.NotContains(t, out, "whatsmeow model")
	// Without the real client's rows (-disciplines given) the gate is the
	// model's alone, and empty here.
	code, out, errs = run(t, "run", "-stores", "sqlite", "-disciplines", "locked", "-scenarios", "burst", "-schedules", "1", "-out", t.TempDir())
	require.Equal(t, 2, code, out)
	require.Regexp(t, `^badmac: no must-pass row in the run`, errs)
}
