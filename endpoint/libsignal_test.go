package endpoint

import (
	"bytes"
	"testing"

	"go.mau.fi/libsignal/state/record"
)

// A libsignal finding, not a store's: go.mau.fi/libsignal v0.2.1,
// session/SessionCipher.go. DecryptWithRecord (line 247) first tries the
// current state with DecryptWithState (line 287), which calls
// getOrCreateChainKey (line 356) before VerifyMac (line 314). For a sender
// ratchet key the state has no receiver chain for, getOrCreateChainKey
// performs a DH ratchet step on the live state: a new receiver chain, a new
// root key, a new sending ratchet key pair (lines 365-389). When the MAC
// then fails, DecryptWithRecord goes on to the archived states; if one
// decrypts, PromoteState (line 272) archives the mutated current state and
// DecryptAndGetKey stores the record (line 193).
//
// So a late message on the old session, arriving after a retry rebuilt the
// session, decrypts fine but leaves the new session with a root and a
// sending chain its peer never derived. When the new session is promoted
// back (the contact's next message is on it), every reply the device sends
// on it is a Bad MAC at the contact. The store here is the reference store
// and the calls are serial: nothing but libsignal is involved.
func TestLateMessageCorruptsRebuiltSession(t *testing.T) {
	for _, late := range []bool{false, true} {
		w := newWorld(t)
		w.established() // session S1, acknowledged
		k2, m2 := w.send("m2")
		if !late {
			if _, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), k2, m2); err != nil {
				t.Fatalf("m2 in order: %v", err)
			}
		}
		// The contact rebuilds from a fresh bundle (a retry receipt's
		// keys) and sends on the new session S2.
		if err := w.peer.ProcessBundle(w.ctx, w.dev.Address(), w.dev.Bundle(w.pks[1])); err != nil {
			t.Fatal(err)
		}
		k3, m3 := w.send("m3")
		if _, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), k3, m3); err != nil {
			t.Fatalf("m3 on the rebuilt session: %v", err)
		}
		s2 := w.current(t)
		if late {
			if _, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), k2, m2); err != nil {
				t.Fatalf("late m2 on the old session: %v", err)
			}
			// m2 decrypted with the archived S1, now current again; S2 is
			// archived, and not as it was.
			rec := w.record(t)
			var after *record.State
			for _, st := range rec.PreviousSessionStates() {
				if bytes.Equal(st.SenderBaseKey(), s2.SenderBaseKey()) {
					after = st
				}
			}
			if after == nil {
				t.Fatal("the rebuilt session is not in the record after the late message")
			}
			if bytes.Equal(after.RootKey().Bytes(), s2.RootKey().Bytes()) ||
				bytes.Equal(after.SenderRatchetKey().Serialize(), s2.SenderRatchetKey().Serialize()) {
				t.Fatal("the failed MAC check left the rebuilt session as it was; the finding does not hold")
			}
		}
		// The contact's next message is on S2, which the device promotes
		// back; the device replies on it.
		k4, m4 := w.send("m4")
		if _, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), k4, m4); err != nil {
			t.Fatalf("m4: %v", err)
		}
		rk, rct, err := w.dev.Encrypt(w.ctx, w.peer.Address(), []byte("r5"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.peer.DecryptDM(w.ctx, w.dev.Address(), rk, rct)
		switch {
		case late && ClassOf(err) != BadMAC:
			t.Fatalf("late old-session message: reply got %v, want BadMAC", err)
		case !late && err != nil:
			t.Fatalf("in-order control: reply got %v, want ok", err)
		}
	}
}

func (w *world) record(t *testing.T) *record.Session {
	t.Helper()
	b, err := w.dev.Probe.Set.Sessions.GetSession(w.ctx, w.peer.Address().String())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := record.NewSessionFromBytes(b, pb.Session, pb.State)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func (w *world) current(t *testing.T) *record.State { return w.record(t).SessionState() }
