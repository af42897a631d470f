package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/badmac/badmac/devices/baileys"
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
				"-timeout", c.timeout, "-schedules", "1", "-scenarios", "reply", "-out", t.TempDir()}, &stdout, &stderr)
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
	if err := os.WriteFile(bad, []byte("badmac device schedule v1\ndevice baileys@6.17.16\nvariant stock\nscenario reply\nseed 1\ncontacts alice\nstepp g1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-device", "baileys@5.0.0"}, `unknown device "baileys@5.0.0"`},
		{[]string{"run", "-device", "baileys@6.17.16", "-variants", "cached"}, `unknown variant "cached"`},
		{[]string{"run", "-device", "baileys@6.17.16", "-scenarios", "group"}, `unknown device scenario "group"`},
		{[]string{"run", "-device", "baileys@6.17.16", "-variants", "stock", "-must-pass", "locked"}, "-must-pass locked is not in the run"},
		{[]string{"replay", bad}, `schedule line 7: unknown op "stepp"`},
		{[]string{"run", "-device", "baileys@6.17.16", "-markdown", filepath.Join(dir, "missing", "x.md")}, "output " + filepath.Join(dir, "missing", "x.md")},
		{[]string{"run", "-device", "baileys@6.17.16", "-timeout", "0s"}, "-timeout must be positive"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), c.args, &stdout, &stderr)
		if code != 2 || !strings.HasPrefix(stderr.String(), "badmac: ") || strings.Count(stderr.String(), "\n") != 1 ||
			!strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line with %q", c.args, code, stderr.String(), c.want)
		}
	}
}

// The same seed gives the same table byte for byte, and each FAIL line's
// replay command reproduces that failure (exit 1, the same summary).
func TestDeviceRunDeterministicAndReplays(t *testing.T) {
	if _, err := baileys.AdapterDir(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the Baileys adapter is not usable: %v", err)
		}
		t.Skipf("Baileys adapter not usable (%v)", err)
	}
	out := t.TempDir()
	args := []string{"run", "-device", "baileys@6.17.16", "-variants", "stock,locked", "-scenarios", "reply",
		"-schedules", "5", "-seed", "1", "-out", out}
	var runs [2]bytes.Buffer
	for i := range runs {
		var stderr bytes.Buffer
		if code := Main(context.Background(), args, &runs[i], &stderr); code != 0 {
			t.Fatalf("exit %d: %s%s", code, runs[i].String(), stderr.String())
		}
	}
	if runs[0].String() != runs[1].String() {
		t.Fatalf("two runs with seed 1 differ:\n%s\n---\n%s", runs[0].String(), runs[1].String())
	}
	table := runs[0].String()
	m := regexp.MustCompile(`(?m)^FAIL (baileys@6\.17\.16/stock/reply): (.*)\n  replay: badmac replay (\S+)$`).FindStringSubmatch(table)
	if m == nil {
		t.Fatalf("no failing stock row with a replay command in:\n%s", table)
	}
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"replay", m[3]}, &stdout, &stderr); code != 1 {
		t.Fatalf("replay exit %d, want 1: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "FAIL: "+m[2]+"\n") {
		t.Fatalf("replay does not end in %q:\n%s", "FAIL: "+m[2], stdout.String())
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
