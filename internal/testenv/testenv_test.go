package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Each case runs in a child test binary, so a skip and a failure are seen
// from outside, as go test reports them.
func TestMissingAndLong(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		switch os.Getenv("TESTENV_CASE") {
		case "missing":
			Missing(t, "no server: install it")
		case "long":
			NeedLong(t, "a sweep")
			t.Log("long ran")
		}
		return
	}
	for _, c := range []struct {
		name, kase string
		env        []string
		wantFail   bool
		wantOut    string
	}{
		{"missing skips", "missing", []string{"CI="}, false, "SKIP"},
		{"missing fails in CI", "missing", []string{"CI=true"}, true, "CI=true and no server: install it"},
		{"long skips by default", "long", []string{LongEnv + "="}, false, "set BADMAC_LONG=1"},
		{"long runs when asked", "long", []string{LongEnv + "=1"}, false, "long ran"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMissingAndLong$", "-test.v")
			cmd.Env = append(append(os.Environ(), "TESTENV_CHILD=1", "TESTENV_CASE="+c.kase), c.env...)
			out, err := cmd.CombinedOutput()
			if (err != nil) != c.wantFail {
				t.Fatalf("failed=%v, want %v:\n%s", err != nil, c.wantFail, out)
			}
			if !strings.Contains(string(out), c.wantOut) {
				t.Fatalf("output lacks %q:\n%s", c.wantOut, out)
			}
		})
	}
}

func TestSize(t *testing.T) {
	t.Setenv(LongEnv, "")
	if got := Size(3, 30); got != 3 {
		t.Errorf("default size %d, want 3", got)
	}
	t.Setenv(LongEnv, "1")
	if got := Size(3, 30); got != 30 {
		t.Errorf("long size %d, want 30", got)
	}
}

func TestFirstDiff(t *testing.T) {
	for _, c := range []struct {
		a, b []string
		want string
	}{
		{[]string{"x", "y"}, []string{"x", "y"}, "none"},
		{[]string{"x", "y"}, []string{"x", "z"}, `line 2: "y" | "z"`},
		{[]string{"x"}, []string{"x", "z"}, `line 2: "" | "z"`},
	} {
		if got := FirstDiff(c.a, c.b); got != c.want {
			t.Errorf("FirstDiff(%q, %q) = %s, want %s", c.a, c.b, got, c.want)
		}
	}
}
