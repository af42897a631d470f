package waweb

import (
	"reflect"
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

// copyTo is the server receiving a copy of the device's message id for
// contact device dev (onMessage, or holdOut when held).
func copyTo(l *Ledger, id, dev string, held bool) {
	l.update(id, func(f *flow) {
		f.copies++
		if held {
			f.held++
		}
		f.toDevice(dev, held)
	})
}

// The device's message to a contact with two devices expects one copy per
// listed device (whatsmeow #1027, docs/lid.md §6.3). A listed device that
// was never sent a copy is a lost copy: the ledger settles without it and
// Messages names the devices of every attempt, so the copy that arrived is
// delivered and the other lost, not the whole message delivered. Both
// copies decrypted are two deliveries, not a duplicate; a copy sent and
// not yet decrypted keeps the ledger unsettled.
func TestExpectCopiesPerDevice(t *testing.T) {
	devs := []string{"alice.0", "alice.1"}
	t.Run("a copy missing is lost, not pending", func(t *testing.T) {
		l := NewLedger()
		l.Expect("r1", Out, "alice.0", "reply r1")
		l.ExpectCopies("r1", devs)
		copyTo(l, "r1", "alice.1", true)
		if l.Settled() {
			t.Fatal("settled with alice.1's copy held at the server")
		}
		if b := l.Busy(); len(b) != 0 {
			t.Errorf("Busy = %q: a held copy is the server's, and a copy never sent is not owed", b)
		}
		l.AttemptBy("r1", "alice.1", true, "reply r1", "", nil)
		if !l.Settled() {
			t.Fatalf("not settled: %q: it waits for alice.0's copy, which the device never sent", l.pendingLocked())
		}
		m := l.Messages()[0]
		if !reflect.DeepEqual(m.Copies, devs) || !reflect.DeepEqual(m.Of, []string{"alice.1"}) {
			t.Errorf("Copies %q Of %q, want %q and [alice.1]", m.Copies, m.Of, devs)
		}
		if l.CopiesTo("r1", "alice.0") != 0 || l.CopiesTo("r1", "alice.1") != 1 {
			t.Errorf("CopiesTo alice.0 %d alice.1 %d, want 0 and 1", l.CopiesTo("r1", "alice.0"), l.CopiesTo("r1", "alice.1"))
		}
	})
	t.Run("both copies delivered", func(t *testing.T) {
		l := NewLedger()
		l.Expect("r1", Out, "alice.0", "reply r1")
		l.ExpectCopies("r1", devs)
		copyTo(l, "r1", "alice.0", false)
		copyTo(l, "r1", "alice.1", false)
		l.AttemptBy("r1", "alice.1", true, "reply r1", "", nil)
		if l.Settled() {
			t.Fatal("settled before alice.0 decrypted the copy it was sent")
		}
		l.AttemptBy("r1", "alice.0", true, "reply r1", "", nil)
		if !l.Settled() {
			t.Fatalf("not settled: %q", l.pendingLocked())
		}
		if m := l.Messages()[0]; !reflect.DeepEqual(m.Of, []string{"alice.1", "alice.0"}) {
			t.Errorf("Of = %q, want [alice.1 alice.0]", m.Of)
		}
	})
	t.Run("a device's failures are its own", func(t *testing.T) {
		l := NewLedger()
		l.Expect("r1", Out, "alice.0", "reply r1")
		l.ExpectCopies("r1", devs)
		copyTo(l, "r1", "alice.0", false)
		copyTo(l, "r1", "alice.1", false)
		l.AttemptBy("r1", "alice.1", true, "reply r1", "", nil)
		l.AttemptBy("r1", "alice.0", false, "", endpoint.BadMAC, nil)
		if got := l.outFailures("r1", "alice.0"); got != 1 {
			t.Errorf("alice.0's failures = %d, want 1", got)
		}
		if got := l.outFailures("r1", "alice.1"); got != 0 {
			t.Errorf("alice.1's failures = %d, want 0 (its retry count is its own)", got)
		}
		if l.Settled() {
			t.Error("settled while alice.0 waits for the resend its retry receipt asked for (alice.1 accepted, alice.0 did not)")
		}
	})
	t.Run("one device: the message is whole", func(t *testing.T) {
		l := NewLedger()
		l.Expect("r1", Out, "alice.0", "reply r1")
		l.ExpectCopies("r1", devs[:1])
		copyTo(l, "r1", "alice.0", false)
		l.AttemptBy("r1", "alice.0", true, "reply r1", "", nil)
		if m := l.Messages()[0]; m.Copies != nil || m.Of != nil {
			t.Errorf("one device: Copies %q Of %q, want none (judged whole, as before)", m.Copies, m.Of)
		}
		if !l.Settled() {
			t.Error("not settled")
		}
	})
}
