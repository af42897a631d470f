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
}
