package waweb

import (
	"testing"

	"github.com/badmac/badmac/endpoint"
)

// A child process registers its reply through a pipe the parent reads on
// its own goroutine, so the peer's decryption can be recorded first. The
// late registration must complete the entry: before, it stayed "unknown
// message" and Wait never settled (CI: TestSIGKILLContinuesConversation
// timed out on re-m4 under load).
func TestExpectAfterPeerAttempt(t *testing.T) {
	for _, c := range []struct {
		name      string
		got       string
		ok        bool
		wantWrong bool
		wantFails int
	}{
		{"same body", "reply m4", true, false, 0},
		{"other body", "reply m9", true, true, 0},
		{"failed", "", false, false, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := NewLedger()
			var class endpoint.Class
			if !c.ok {
				class = endpoint.BadMAC
			}
			l.Attempt("re-m4", c.ok, c.got, class, nil)
			if l.Settled() {
				t.Fatal("an attempt on an unregistered message settled the ledger")
			}
			l.Expect("re-m4", Out, "alice", "reply m4")
			m := l.Messages()[0]
			if m.Dir != Out || m.Peer != "alice" || m.Body != "reply m4" {
				t.Fatalf("entry not completed: %+v", m)
			}
			if m.Attempts[0].Wrong != c.wantWrong {
				t.Errorf("Wrong = %v, want %v", m.Attempts[0].Wrong, c.wantWrong)
			}
			if f := l.st["re-m4"].failures; f != c.wantFails {
				t.Errorf("failures = %d, want %d", f, c.wantFails)
			}
			if settled := l.Settled(); settled != c.ok {
				t.Errorf("Settled = %v, want %v", settled, c.ok)
			}
		})
	}
}

// Registered first (the in-process bot), the attempt is judged at once,
// as before.
func TestExpectBeforeAttempt(t *testing.T) {
	l := NewLedger()
	l.Expect("re-m4", Out, "alice", "reply m4")
	l.Attempt("re-m4", true, "reply m9", "", nil)
	if !l.Messages()[0].Attempts[0].Wrong {
		t.Error("a wrong body was not marked")
	}
	if !l.Settled() {
		t.Error("an accepted reply left the ledger unsettled")
	}
}
