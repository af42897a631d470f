package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/badmac/badmac/devices/baileys"
	"github.com/badmac/badmac/internal/testenv"
)

// A malformed reply, a crashed device and a silent device each end
// `badmac run -device` with one line on stderr and exit 2 (within the
// request timeout, which only the silent device waits for).
func TestDeviceMisbehavesExit2(t *testing.T) {
	for _, c := range []struct{ script, timeout, want string }{
		// Only the silent device gets a short timeout: it is silent at any
		// speed, and a slow start of the others never reads as silence.
		{"malformed.sh", "1m", "malformed reply to request 1 (reset)"},
		{"crash.sh", "1m", "exit status 3 before answering request 1 (reset)"},
		{"silent.sh", "1s", "silent for 1s after request 1 (reset)"},
	} {
		t.Run(c.script, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			script := filepath.Join("..", "..", "devproto", "testdata", c.script)
			code := Main(context.Background(), []string{"run", "-device", "baileys@6.17.16", "-adapter", "sh " + script,
				"-timeout", c.timeout, "-schedules", "1", "-scenarios", "reply", "-stores", "stock", "-must-pass", "none", "-out", t.TempDir()}, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr.String())
			}
			line := stderr.String()
			if !strings.HasPrefix(line, "badmac: ") || strings.Count(line, "\n") != 1 || !strings.Contains(line, c.want) {
				t.Fatalf("stderr %q: want one line \"badmac: …%s…\"", line, c.want)
			}
			if stdout.Len() != 0 {
				t.Fatalf("stdout not empty: %q", stdout.String())
			}
		})
	}
}

func TestDeviceBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("badmac schedule v1\ndevice baileys@6.17.16\nseed 1\nscenario reply\ndiscipline locked\nstore stock\ncontacts alice:1\nops\nstepp m1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A device that greets: enough to plan the rows (Check is the
	// device's own), never asked to run anything here.
	fake := "sh " + filepath.Join("..", "..", "devproto", "testdata", "malformed.sh")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-device", "baileys@5.0.0"}, `unknown device "baileys@5.0.0"`},
		{[]string{"run", "-device", "nosuch"}, `unknown device "nosuch" (known: model, client-inline|client-async[+buffer], procs-writebehind[+gates], procs[+gates], baileys-socket@VERSION, baileys@VERSION)`},
		{[]string{"run", "-device", "baileys@6.17.16", "-scenarios", "nosuch"}, `unknown scenario "nosuch"`},
		{[]string{"run", "-device", "baileys@6.17.16", "-adapter", fake, "-stores", "cached"}, "nothing to run: every pair was skipped"},
		{[]string{"run", "-device", "baileys@6.17.16", "-adapter", fake, "-stores", "stock", "-must-pass", "baileys@6.17.16/locked"},
			"-must-pass baileys@6.17.16/locked is not in the run"},
		// Every gate is earned (issue 16 §2): a must-pass pair the device
		// refuses, named or gated by default and named in a flag, is bad
		// input (before: skipped on stderr, the gate passed without it);
		// so is a run whose gate holds no row (before: "NOT GATED: …
		// (-must-pass none)", a flag nobody gave, exit 0).
		{[]string{"run", "-device", "baileys@6.17.16", "-adapter", fake, "-scenarios", "reply,group", "-must-pass", "baileys@6.17.16/locked/group"},
			"-must-pass baileys@6.17.16/locked/group: the device refuses baileys@6.17.16/locked/group: device baileys@6.17.16 cannot run group messages"},
		{[]string{"run", "-device", "baileys@6.17.16", "-adapter", fake, "-scenarios", "group,rollback,burst", "-must-pass", "baileys@6.17.16/locked"},
			"-must-pass baileys@6.17.16/locked: the device refuses baileys@6.17.16/locked/group"},
		{[]string{"run", "-device", "client-inline", "-scenarios", "burst,multi", "-stores", "reference"},
			"client-inline/reference/multi must pass by default, but the device refuses it"},
		{[]string{"run", "-device", "baileys@6.17.16", "-adapter", fake, "-scenarios", "burst,group", "-stores", "locked"},
			"no must-pass row in the run"}, // the adapter's locked is gated only when named
		{[]string{"run", "-device", "baileys@6.17.16", "-adapter", fake, "-stores", "stock"}, "no must-pass row in the run"},
		{[]string{"run", "-device", "model", "-stores", "files", "-disciplines", "locked", "-scenarios", "crash"}, "no must-pass row in the run"},
		{[]string{"run", "-device", "baileys@6.17.16", "-adapter", fake, "-must-pass", "locked"}, `-must-pass wants DISCIPLINE/STORE`},
		{[]string{"replay", bad}, `schedule line 9: unknown op "stepp"`},
		{[]string{"run", "-device", "baileys@6.17.16", "-markdown", filepath.Join(dir, "missing", "x.md")}, "output " + filepath.Join(dir, "missing", "x.md")},
		{[]string{"run", "-device", "baileys@6.17.16", "-timeout", "0s"}, "-timeout must be positive"},
		{[]string{"run", "-device", "model,model"}, "-device model is given twice"},
		{[]string{"run", "-auth", "auth.mjs"}, `-auth "auth.mjs": want MODULE#FUNCTION`},
		{[]string{"run", "-auth", filepath.Join(dir, "nosuch.mjs") + "#useMyAuthState"}, "nosuch.mjs: no such file"},
		{[]string{"run", "-device", "baileys-socket@5.0.0"}, `unknown device "baileys-socket@5.0.0"`},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), c.args, &stdout, &stderr)
		// Pairs the device refuses are listed first, one "skipped:" line
		// each; the error is the last line.
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		last := lines[len(lines)-1]
		for _, l := range lines[:len(lines)-1] {
			if !strings.HasPrefix(l, "skipped: ") {
				t.Errorf("%v: stderr line %q is neither a skipped pair nor the error", c.args, l)
			}
		}
		if code != 2 || !strings.HasPrefix(last, "badmac: ") || !strings.Contains(last, c.want) || stdout.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a last line with %q", c.args, code, stderr.String(), c.want)
		}
	}
}

// -device model is the model's run, byte for byte, through the same path
// (a plain run with -disciplines runs the model alone; without, it adds the
// real client's rows, TestDefaultRunHasRealClientRows).
func TestDeviceModelSameAsRun(t *testing.T) {
	args := []string{"-schedules", "2", "-scenarios", "reply,burst", "-stores", "reference,cached", "-disciplines", "concurrent,whatsmeow,locked",
		"-shrink", "5", "-out", t.TempDir()}
	var plain, dev, stderr bytes.Buffer
	if code := Main(context.Background(), append([]string{"run"}, args...), &plain, &stderr); code > 1 {
		t.Fatalf("run: exit %d: %s", code, stderr.String())
	}
	if code := Main(context.Background(), append([]string{"run", "-device", "model"}, args...), &dev, &stderr); code > 1 {
		t.Fatalf("run -device model: exit %d: %s", code, stderr.String())
	}
	if plain.String() != dev.String() {
		t.Fatalf("run and run -device model differ:\n%s\n---\n%s", plain.String(), dev.String())
	}
}

// The same seed gives the same table byte for byte; the harness's
// scenarios run on the device and the model in one table; each failing
// row's replay command, verbatim, reproduces that failure (exit 1, the
// same summary) on the device the schedule names; locked passes the gate.
// The gate is named: by default it would hold baileys@6.17.16/locked/group,
// which the device refuses (bad input, TestDeviceBadInput).
func TestDeviceRunDeterministicAndReplays(t *testing.T) {
	testenv.NeedBaileys(t) // installs the adapter's packages on first use
	if _, err := baileys.AdapterDir(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the Baileys adapter is not usable: %v", err)
		}
		t.Skipf("Baileys adapter not usable (%v)", err)
	}
	out := t.TempDir()
	// Seed 1's first schedule already fails seedfix/reply: 1 schedule a
	// row by default, 4 under BADMAC_LONG (CI's long step).
	n := testenv.Size(1, 4)
	args := []string{"run", "-device", "baileys@6.17.16,model", "-stores", "seedfix,locked,reference", "-disciplines", "locked",
		"-scenarios", "reply,group", "-schedules", strconv.Itoa(n), "-seed", "1", "-out", out, "-must-pass", "baileys@6.17.16/locked/reply,locked/reference"} // locked: the named proposed fix, not gated by default
	var runs [2]bytes.Buffer
	var stderr bytes.Buffer
	for i := range runs {
		stderr.Reset()
		if code := Main(context.Background(), args, &runs[i], &stderr); code != 0 {
			t.Fatalf("exit %d: %s%s", code, runs[i].String(), stderr.String())
		}
	}
	if runs[0].String() != runs[1].String() {
		t.Fatalf("two runs with seed 1 differ:\n%s\n---\n%s", runs[0].String(), runs[1].String())
	}
	for _, skip := range []string{"skipped: baileys@6.17.16/reference/reply: device baileys@6.17.16 cannot run store \"reference\"",
		"skipped: baileys@6.17.16/locked/group: device baileys@6.17.16 cannot run group messages",
		"skipped: locked/seedfix/reply: the model cannot run store \"seedfix\""} {
		if !strings.Contains(stderr.String(), skip+"") {
			t.Errorf("stderr lacks %q:\n%s", skip, stderr.String())
		}
	}
	table := runs[0].String()
	for _, r := range []string{"baileys@6.17.16 *  locked     reply", "locked *           reference  reply", "locked *           reference  group"} {
		if !strings.Contains(table, r) {
			t.Errorf("no row %q (must pass) in:\n%s", r, table)
		}
	}
	m := regexp.MustCompile(`(?m)^  (baileys@6\.17\.16/seedfix/reply): \d+/` + strconv.Itoa(n) + ` schedules failed, .*\n    (.*)\n    replay: (badmac replay \S+)$`).FindStringSubmatch(table)
	if m == nil {
		t.Fatalf("no failing seedfix row with a replay command in:\n%s", table)
	}
	var stdout bytes.Buffer
	stderr.Reset()
	if code := Main(context.Background(), strings.Fields(m[3])[1:], &stdout, &stderr); code != 1 {
		t.Fatalf("%s: exit %d, want 1: %s", m[3], code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "FAIL: "+m[2]+"\n") || !strings.HasPrefix(stdout.String(), "badmac schedule v1\ndevice baileys@6.17.16\n") {
		t.Fatalf("replay does not name the device and end in %q:\n%s", "FAIL: "+m[2], stdout.String())
	}
	if strings.Contains(table, "FAIL baileys@6.17.16/locked") {
		t.Fatalf("the locked variant failed:\n%s", table)
	}
	// -json: the same report, valid against the schema.
	var js bytes.Buffer
	stderr.Reset()
	if code := Main(context.Background(), append(args, "-json"), &js, &stderr); code != 0 {
		t.Fatalf("-json exit %d: %s", code, stderr.String())
	}
	validate(t, js.String())
	if !strings.Contains(js.String(), `"discipline": "baileys@6.17.16"`) {
		t.Fatalf("JSON rows not named for the version:\n%.500s", js.String())
	}
}

// The child process on SQLite is gated by default and passes; the broken
// child (session writes behind in memory) fails the same gate when named,
// and its printed replay command fails again on the real child.
func TestProcsDeviceGate(t *testing.T) {
	t.Setenv("BADMAC_CMD_CHILD", "1") // the test binary is `badmac device`
	code, out, errs := run(t, "run", "-device", "procs", "-scenarios", "reply,crash", "-schedules", "3", "-out", t.TempDir())
	if code != 0 || !strings.Contains(out, "procs *") {
		t.Fatalf("exit %d, want 0 with gated procs rows:\n%s%s", code, out, errs)
	}
	// Seed 1 fails procs-writebehind's crash within 5 schedules (1 of 5, 2
	// of 10): 5 by default, 20 under BADMAC_LONG (CI's long step).
	code, out, errs = run(t, "run", "-device", "procs,procs-writebehind", "-scenarios", "crash", "-schedules", strconv.Itoa(testenv.Size(5, 20)),
		"-must-pass", "procs/sqlite,procs-writebehind/sqlite", "-out", t.TempDir())
	if code != 1 {
		t.Fatalf("exit %d, want 1 (procs-writebehind loses writes in a SIGKILL):\n%s%s", code, out, errs)
	}
	m := regexp.MustCompile(`(?m)^FAIL procs-writebehind/sqlite/crash: .*\n  replay: (badmac replay \S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no failing procs-writebehind row with a replay command:\n%s", out)
	}
	if strings.Contains(out, "FAIL procs/") {
		t.Fatalf("the durable child failed:\n%s", out)
	}
	if rc, rout, rerr := run(t, strings.Fields(m[1])[1:]...); rc != 1 {
		t.Fatalf("%s: exit %d, want 1:\n%s%s", m[1], rc, rout, rerr)
	}
}

// A plain run adds the real whatsmeow Client's rows in controlled mode,
// client-inline gated and passing, client-async (whatsmeow's own
// send/receive race) judged and not gated: TestSameSeedSameOutput's plain
// run shows it. Gated by name, a failing client-async row fails the run,
// and its replay command, verbatim, fails again with the same summary and
// the same history on every replay.
func TestDefaultRunHasRealClientRows(t *testing.T) {
	// Seed 1 fails client-async/sqlite/reply in 1 of its first 2
	// schedules: 2 by default, 4 under BADMAC_LONG (CI's long step).
	code, out, errs := run(t, "run", "-device", "client-async", "-stores", "sqlite", "-scenarios", "reply", "-schedules", strconv.Itoa(testenv.Size(2, 4)),
		"-must-pass", "client-async/sqlite/reply", "-out", t.TempDir())
	if code != 1 {
		t.Fatalf("gated client-async/sqlite/reply: exit %d, want 1\n%s\n%s", code, out, errs)
	}
	m := regexp.MustCompile(`FAIL client-async/sqlite/reply: (.*)\n  replay: badmac replay (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no FAIL line with a replay command:\n%s", out)
	}
	var hist string
	for i := range 3 {
		rc, rout, rerr := run(t, "replay", m[2])
		if rc != 1 || !strings.Contains(rout, "FAIL: "+m[1]) {
			t.Fatalf("replay %d: exit %d, want 1 and FAIL: %s\n%s%s", i, rc, m[1], rout, rerr)
		}
		h := rout[strings.Index(rout, "\nhistory\n"):]
		if i > 0 && h != hist {
			t.Fatalf("replay %d printed another history than the first", i)
		}
		hist = h
	}
}

// badmac shrink takes a real-client schedule and shrinks it on the real
// client (controlled): it still fails, and is no longer.
func TestShrinkRealClientSchedule(t *testing.T) {
	code, out, errs := run(t, "shrink", "-budget", "10", "../../realclient/testdata/async-reply-oldcounter-sqlite.txt")
	if code != 1 || !strings.Contains(out, "# shrunk from 13 to ") || !strings.Contains(out, "device client-async") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

// The default gate: Baileys' own socket in burst, on any store (a bot's
// or Baileys' own, cached or not); the adapter's locked fix only when
// named; procs always, procs+gates but in overlap.
func TestDefaultDeviceGate(t *testing.T) {
	for _, c := range []struct {
		device, store, scenario string
		want                    bool
	}{
		{"baileys-socket@7.0.0-rc14", "multifile", "burst", true},
		{"baileys-socket@6.17.16", "./auth.mjs:useMyAuthState+cache", "burst", true},
		{"baileys-socket@6.17.16", "multifile", "reply", false},
		{"baileys@6.17.16", "locked", "reply", false},
		{"baileys@7.0.0-rc14", "locked", "burst", false},
		{"procs", "sqlite", "crash", true},
		{"procs+gates", "postgres", "crash", true},
		{"procs+gates", "sqlite", "overlap", false},
		{"procs+gates", "sqlite", "overlap:messages=4", false},
		{"procs-writebehind+gates", "sqlite", "crash", false},
		{"client-inline", "sqlite", "reply", true},
		{"client-inline", "sqlite", "reinstall", false},
		{"client-async", "sqlite", "reply", false},
	} {
		if got := defaultDeviceGate(c.device, c.store, c.scenario); got != c.want {
			t.Errorf("defaultDeviceGate(%s, %s, %s) = %v, want %v", c.device, c.store, c.scenario, got, c.want)
		}
	}
}

// TestDeviceStoreName: -stores MODULE#FUNCTION on the socket device is
// named MODULE:FUNCTION in rows and schedule files (a schedule reads # as
// a comment); other devices' store names are left alone.
func TestDeviceStoreName(t *testing.T) {
	for _, c := range []struct{ device, in, want string }{
		{"baileys-socket@7.0.0-rc14", "./auth.mjs#useMyAuthState", "./auth.mjs:useMyAuthState"},
		{"baileys-socket@6.17.16", "./auth.mjs#useMyAuthState+cache", "./auth.mjs:useMyAuthState+cache"},
		{"baileys-socket@6.17.16", "./auth.mjs:useMyAuthState", "./auth.mjs:useMyAuthState"},
		{"baileys-socket@6.17.16", "multifile+cache", "multifile+cache"},
		{"baileys@6.17.16", "stock", "stock"},
		{"procs", "a.mjs#f", "a.mjs#f"},
	} {
		if got := deviceStoreName(c.device, c.in); got != c.want {
			t.Errorf("deviceStoreName(%q, %q) = %q, want %q", c.device, c.in, got, c.want)
		}
	}
}
