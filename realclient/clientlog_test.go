package realclient

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The lines clientLog acts on are whatsmeow's own, word for word, at the
// pinned version (a reworded line would silently stop the guard), and the
// two that end a controlled run's guarantee of one stanza at a time break
// the run, while any other warning leaves it alone.
func TestClientLogLines(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.mau.fi/whatsmeow").Output()
	if err != nil {
		t.Fatalf("go list -m go.mau.fi/whatsmeow: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	var src strings.Builder
	for _, f := range []string{"client.go", "receipt.go"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	for _, line := range []string{logBackground, logQueueFull, logRetryGave} {
		if !strings.Contains(src.String(), `"`+line+`"`) {
			t.Errorf("whatsmeow (%s) has no line %q", dir, line)
		}
	}

	for _, c := range []struct {
		msg    string
		args   []any
		breaks bool
	}{
		{logBackground, []any{"<message/>"}, true},
		{logQueueFull, nil, true},
		{"Node handling is taking long for %s (started %s ago)", []any{"<message/>", time.Second}, false},
		{"Received stream end frame", nil, false},
	} {
		c2 := newCtl(nil, time.Second)
		l := &clientLog{b: &Bot{ctl: c2}}
		l.Warnf(c.msg, c.args...)
		if got := c2.broken != nil; got != c.breaks {
			t.Errorf("Warnf(%q): run broken %v, want %v", c.msg, got, c.breaks)
		}
	}
}
