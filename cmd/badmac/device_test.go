package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A malformed reply, a crashed device and a silent device each end
// `badmac run -device` with one line on stderr and exit 2 (within the
// request timeout, which only the silent device waits for).
func TestDeviceMisbehavesExit2(t *testing.T) {
	for _, c := range []struct{ script, want string }{
		{"malformed.sh", "malformed reply to request 1 (reset)"},
		{"crash.sh", "exit status 3 before answering request 1 (reset)"},
		{"silent.sh", "silent for 1s after request 1 (reset)"},
	} {
		t.Run(c.script, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			script := filepath.Join("..", "..", "devproto", "testdata", c.script)
			code := Main(context.Background(), []string{"run", "-device", "baileys@6.17.16", "-adapter", "sh " + script,
				"-timeout", "1s", "-schedules", "1", "-scenarios", "reply", "-out", t.TempDir()}, &stdout, &stderr)
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
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), c.args, &stdout, &stderr)
		if code != 2 || !strings.HasPrefix(stderr.String(), "badmac: ") || strings.Count(stderr.String(), "\n") != 1 ||
			!strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line with %q", c.args, code, stderr.String(), c.want)
		}
	}
}
