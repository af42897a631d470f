package harness

import (
	"slices"
	"testing"

	"github.com/badmac/badmac/endpoint"
)

// Each line format reads back what its writer wrote, and not another
// format's lines.
func TestHistoryLineReaders(t *testing.T) {
	for _, op := range AllOps() {
		for _, line := range []string{op.String(), op.String() + ": what it did", drainPrefix + op.String(), deviceOpPrefix + op.String()} {
			got, _, drained, ok := ParseOpLine(line)
			if !ok || got != op || drained != (line == drainPrefix+op.String()) {
				t.Errorf("ParseOpLine(%q) = %v, %t, %t; want %v", line, got, drained, ok, op)
			}
		}
	}
	for line, want := range map[string]Op{
		crashLine("kdg", "killed [m1], 2 pending writes hit"): CrashOp{Mode: "kdg"},
		crashLine("", "killed []"):                            CrashOp{},
		restartRefused + ": unreadable creds":                 RestartOp{},
		crashWith + "recv: GetSession alice:0":                CrashOp{},
	} {
		if got, _, _, ok := ParseOpLine(line); !ok || got != want {
			t.Errorf("ParseOpLine(%q) = %v, %t; want %v", line, got, ok, want)
		}
	}
	attempts := []Attempt{{Delivery: "m1", OK: true}, {Delivery: "m1.2", OK: true, Wrong: true}}
	for _, c := range endpoint.Classes {
		attempts = append(attempts, Attempt{Delivery: "r3", Class: c, Err: "x (y)"})
	}
	for _, a := range attempts {
		if got, ok := ParseAttemptLine(AttemptLine(a)); !ok || got != a {
			t.Errorf("ParseAttemptLine(%q) = %+v, %t; want %+v", AttemptLine(a), got, ok, a)
		}
	}
	if !slices.Contains(StoreCalls(), "PutSession") || !slices.Contains(StoreCalls(), "GetOrGenPreKeys") || slices.Contains(StoreCalls(), "enter") {
		t.Errorf("StoreCalls = %q", StoreCalls())
	}
	for _, line := range []string{"m1: ok", "deliver m1", "alice.0: retry 1 of r2 to the device, resent as r2.2", "m1: send failed: x"} {
		if _, _, ok := ParseStoreCallLine(line); ok {
			t.Errorf("%q read as a store call", line)
		}
	}
	for _, line := range []string{"m1 GetSession alice:0", "m1: send failed: x", "deliver m1", "m1: Bad (x)", "m1: BadMAC x"} {
		if _, ok := ParseAttemptLine(line); ok {
			t.Errorf("%q read as an attempt", line)
		}
	}
	for _, line := range []string{"m1: ok", "m1 GetSession alice:0", "crash \"x: y", "restart now", "drain: m1"} {
		if op, _, _, ok := ParseOpLine(line); ok {
			t.Errorf("%q read as op %v", line, op)
		}
	}
	for _, m := range []Mode{Controlled, Free, Serial} {
		if d, got, ok := ParseModeLine(ModeLine("realclient", m)); !ok || d != "realclient" || got != m {
			t.Errorf("ParseModeLine(%q) = %q, %q, %t", ModeLine("realclient", m), d, got, ok)
		}
	}
	for _, line := range []string{"realclient: mode fast", "m1: ok", "real client: mode free", ": mode free", "deliver m1", "alice.0: retry 1 of r2"} {
		if _, _, ok := ParseModeLine(line); ok {
			t.Errorf("%q read as a mode line", line)
		}
	}
	for _, line := range []string{ConnectionClosed, StartRefusedLine(0), StartRefusedLine(12)} {
		if !ParseRunLine(line) {
			t.Errorf("%q not read as a run line", line)
		}
	}
	for _, line := range []string{"connection closed.", "start refused: run ended, x messages not judged", "start refused: run ended, 2 messages not judged!", "m1: ok"} {
		if ParseRunLine(line) {
			t.Errorf("%q read as a run line", line)
		}
	}
	for line, want := range map[string][3]string{
		"m1 get session alice.0":                         {"m1", "get session alice.0", ""},
		"drain: r1 set session alice.0, session bob.0":   {"r1", "set session alice.0, session bob.0", drainPrefix},
		"stop: m2 write session-alice.0.json (12 bytes)": {"m2", "write session-alice.0.json (12 bytes)", "stop: "},
		"login: login open pre-key-1.json (truncate)":    {"login", "open pre-key-1.json (truncate)", "login: "},
		"login~creds1 save creds":                        {"login~creds1", "save creds", ""},
		"m3 (set session alice.0: step 2 of 3)":          {"m3", "(set session alice.0: step 2 of 3)", ""},
	} {
		task, call, prefix, ok := ParseGateLine(line)
		if !ok || [3]string{task, call, prefix} != want {
			t.Errorf("ParseGateLine(%q) = %q, %q, %q, %t; want %q", line, task, call, prefix, ok, want)
		}
		if op, _, _, ok := ParseOpLine(line); ok {
			t.Errorf("gate line %q read as op %v", line, op)
		}
	}
	for _, line := range []string{"m1 GetSession alice:0", "deliver m1", "drain: deliver m4", "stop: clean shutdown", "restart: credentials intact", "m1: ok", "m1 fetch session alice.0", "m1 (get session)"} {
		if _, _, _, ok := ParseGateLine(line); ok {
			t.Errorf("%q read as a gate line", line)
		}
	}
}
