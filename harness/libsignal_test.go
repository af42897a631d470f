package harness

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/badmac/badmac/endpoint"
)

// libsignal's own failure, pinned (docs/design.md §3): go.mau.fi/libsignal
// v0.2.1 session/SessionCipher.go, Cipher.DecryptWithRecord (line 247)
// tries the current state first; DecryptWithState (line 287) calls
// getOrCreateChainKey (line 356), which ratchets the live state for an
// unknown sender key (new root key and sending chain, lines 365-389)
// before VerifyMac (line 314) fails; an archived state then decrypts and
// PromoteState (line 272) archives the mutated state, which
// DecryptAndGetKey stores (line 193). endpoint's
// TestLateMessageCorruptsRebuiltSession shows the mutation on the record.
//
// The schedule: the device starts a session with alice (r1); alice's m2 on
// it stays in flight; alice's group message g4 arrives before the one
// carrying her sender key, fails with NoSenderKey and, as whatsmeow does
// for a skmsg with no DM part, the first retry receipt carries keys:
// alice rebuilds and resends g4 on a new session. Then the late m2
// decrypts with the archived old session and corrupts the new one, which
// alice's m5 promotes back; the device's reply r6 on it is a Bad MAC at
// alice. Reference store, locked client: the serial protocol baseline
// fails the same way, so it is the library's failure and no store is
// blamed. Shrunk by deleting ops while the baseline kept the Bad MAC
// (the run ops are kept so that the controlled replay reads in order).
func TestLibsignalLateOldSession(t *testing.T) {
	s := parseFile(t, "testdata/libsignal-late-old-session.txt")
	ctx := context.Background()

	res, err := Replay(ctx, s, Controlled)
	if err != nil {
		t.Fatal(err)
	}
	base, err := Baseline(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*Result{"locked/reference": res, "baseline": base} {
		if got := failedClasses(r, "r6"); got != "BadMAC" {
			t.Errorf("%s: r6 failed with %q, want BadMAC\n%s", name, got, r.HistoryText())
		}
	}
	if len(res.Blamed) != 0 {
		t.Errorf("blamed %v: the baseline fails the same way, so the store must not be blamed", res.Blamed)
	}
	// The report names it as the library's: a Bad MAC in the baseline is
	// a library failure even though a retry recovered the message.
	if !slices.Equal(res.LibraryFailures, []string{"r6"}) {
		t.Errorf("library failures %v, want [r6]", res.LibraryFailures)
	}
	if !strings.Contains(res.LibrarySummary(), "r6 recovered [BadMAC") {
		t.Errorf("library summary %q does not name r6's Bad MAC", res.LibrarySummary())
	}

	// Control: the same ops with m2 delivered before the rebuild, not
	// late. Nothing fails but g4's missing sender key.
	ctl := s.Clone()
	var ops, m2 []Op
	for _, op := range s.Ops {
		if op == Op(DeliverOp{ID: "m2"}) || op == Op(RunOp{Task: "m2"}) {
			m2 = append(m2, op)
			continue
		}
		ops = append(ops, op)
	}
	for i, op := range ops {
		if op == Op(DeliverOp{ID: "g4"}) {
			ctl.Ops = append(append(append([]Op(nil), ops[:i]...), m2...), ops[i:]...)
			break
		}
	}
	if len(m2) != 2 || len(ctl.Ops) != len(s.Ops) {
		t.Fatalf("control: could not move m2 (%d ops)", len(m2))
	}
	cb, err := Baseline(ctx, ctl)
	if err != nil {
		t.Fatal(err)
	}
	// And the control names no library failure: g4's missing sender key
	// is the protocol's ordering, recovered by a retry.
	if cres, err := Replay(ctx, ctl, Controlled); err != nil {
		t.Fatal(err)
	} else if len(cres.LibraryFailures) != 0 {
		t.Errorf("control: library failures %v, want none", cres.LibraryFailures)
	}
	for _, m := range cb.Messages {
		want := ""
		if m.ID == "g4" {
			want = string(endpoint.NoSenderKey)
		}
		if got := failedClasses(cb, m.ID); got != want {
			t.Errorf("control, m2 in order: %s failed with %q, want %q\n%s", m.ID, got, want, cb.HistoryText())
		}
	}
}

func parseFile(t *testing.T, path string) *Schedule {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	s, err := Parse(fh)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// failedClasses lists the classes of a message's failed attempts, in order.
func failedClasses(r *Result, id string) string {
	var out []string
	for _, m := range r.Messages {
		if m.ID != id {
			continue
		}
		seen := map[endpoint.Class]bool{}
		for _, a := range m.Failures() {
			if !seen[a.Class] {
				seen[a.Class] = true
				out = append(out, string(a.Class))
			}
		}
	}
	return strings.Join(out, " ")
}
