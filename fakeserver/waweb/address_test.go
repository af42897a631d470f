package waweb

import (
	"fmt"
	"testing"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
)

// The envelope of a contact's stanza in each phase and form, as whatsmeow's
// parseMessageSource reads them (docs/lid.md §1.2, §1.9); the device's
// JIDs under either form reach the contact; a LID device's prekeys are its
// PN device's.
func TestAddressForms(t *testing.T) {
	srv, cv := withPeers(t, "bob.0", "alice.1")
	bob, _ := cv.Peer("bob.0")
	alice, _ := cv.Peer("alice.1")
	if got := cv.LIDOf(alice).String(); got != "900002:1@lid" {
		t.Fatalf("alice's LID = %s, want 900002:1@lid (LIDs in the order contacts are added)", got)
	}
	env := func(group string) string {
		a := waBinary.Attrs{}
		cv.envelope(a, alice, group)
		return fmt.Sprint(a)
	}
	steps := []struct {
		phase   Phase
		via     string
		dm, grp string
	}{
		{PhasePN, "", "map[from:alice:1@s.whatsapp.net]", "map[from:g@g.us participant:alice:1@s.whatsapp.net]"},
		{PhaseMixed, "", "map[from:alice:1@s.whatsapp.net sender_lid:900002@lid]",
			"map[from:g@g.us participant:alice:1@s.whatsapp.net participant_lid:900002:1@lid]"},
		{PhaseMixed, "lid", "map[from:900002:1@lid sender_pn:alice@s.whatsapp.net]",
			"map[addressing_mode:lid from:g@g.us participant:900002:1@lid participant_pn:alice:1@s.whatsapp.net]"},
		{PhaseLID, "", "map[from:900002:1@lid sender_pn:alice@s.whatsapp.net]",
			"map[addressing_mode:lid from:g@g.us participant:900002:1@lid participant_pn:alice:1@s.whatsapp.net]"},
		{PhaseLID, "pn", "map[from:alice:1@s.whatsapp.net sender_lid:900002@lid]",
			"map[from:g@g.us participant:alice:1@s.whatsapp.net participant_lid:900002:1@lid]"},
	}
	for _, st := range steps {
		cv.SetPhase("alice", st.phase)
		cv.SetVia(alice, st.via)
		if got := env(""); got != st.dm {
			t.Errorf("phase %s via %q: DM envelope %s, want %s", st.phase, st.via, got, st.dm)
		}
		if got := env("g"); got != st.grp {
			t.Errorf("phase %s via %q: group envelope %s, want %s", st.phase, st.via, got, st.grp)
		}
	}
	// bob stays PN only whatever alice does.
	a := waBinary.Attrs{}
	cv.envelope(a, bob, "")
	if got := fmt.Sprint(a); got != "map[from:bob@s.whatsapp.net]" {
		t.Errorf("bob's envelope %s", got)
	}
	lid := types.JID{User: "900002", Device: 1, Server: types.HiddenUserServer}
	cv.mu.Lock()
	p, ok := cv.peerAt(lid)
	cv.mu.Unlock()
	if !ok || p != alice {
		t.Errorf("peerAt(%s) = %v, %t, want alice.1", lid, p, ok)
	}
	if _, ok := cv.peerAt(types.JID{User: "900009", Device: 1, Server: types.HiddenUserServer}); ok {
		t.Error("peerAt resolved a LID no contact has")
	}
	if got, want := srv.prekeyAddress(lid).String(), alice.JID.SignalAddress().String(); got != want {
		t.Errorf("a LID device's prekeys are looked up at %s, want %s", got, want)
	}
	// Leaving PN only lists alice's devices under her LID for usync.
	srv.mu.Lock()
	devs := srv.users["900002"]
	srv.mu.Unlock()
	if len(devs) != 1 || devs[0] != 1 {
		t.Errorf("usync devices of alice's LID: %v, want [1]", devs)
	}
}
