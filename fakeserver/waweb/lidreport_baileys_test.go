package waweb

import (
	"strings"
	"testing"

	waBinary "go.mau.fi/whatsmeow/binary"

	"github.com/badmac/badmac/endpoint"
)

// BaileysReport names a failure from the envelopes the server sent: the
// first LID-carrying stanza of a contact failing is the skipped migration
// (#2331 / #2763), a later one the stale overwrite, a PN stanza after a
// LID-carrying one PR #2372's second cause; 6.x a stanza whose form is not
// its predecessor's; a delivered message or an outbound one nothing.
func TestBaileysReport(t *testing.T) {
	_, cv := withPeers(t, "alice.0")
	alice, _ := cv.Peer("alice.0")
	note := func(id string, ph Phase, via string) {
		cv.SetPhase("alice", ph)
		cv.SetVia(alice, via)
		a := waBinary.Attrs{}
		cv.envelope(a, alice, "")
		cv.mu.Lock()
		cv.noteInLocked(id, alice.Name, waBinary.Node{Tag: "message", Attrs: a})
		cv.mu.Unlock()
	}
	note("m1", PhasePN, "")
	note("m2", PhaseMixed, "lid")
	note("m3", PhaseMixed, "lid")
	note("m4", PhasePN, "")
	for _, c := range []struct {
		version, id string
		classes     []endpoint.Class
		want        string
	}{
		{"7.0.0-rc14", "m1", []endpoint.Class{endpoint.NoSession}, ""},
		{"7.0.0-rc14", "m2", []endpoint.Class{endpoint.InvalidPreKey}, "migrateSession moved nothing"},
		{"7.0.0-rc14", "m2", nil, ""},
		{"7.0.0-rc14", "m3", []endpoint.Class{endpoint.Other}, "stale overwrite"},
		{"7.0.0-rc14", "m4", []endpoint.Class{endpoint.NoSession}, "PR #2372 cause 2"},
		{"7.0.0-rc14", "r1", []endpoint.Class{endpoint.NoSession}, ""},
		{"6.17.16", "m1", []endpoint.Class{endpoint.NoSession}, ""},
		{"6.17.16", "m2", []endpoint.Class{endpoint.InvalidPreKey}, "PR #2763 on 6.x"},
		{"6.17.16", "m3", []endpoint.Class{endpoint.BadMAC}, ""},
		{"6.17.16", "m4", []endpoint.Class{endpoint.BadMAC}, "PR #2763 on 6.x"},
	} {
		got := cv.BaileysReport(c.version, c.id, false, c.classes)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s %s %v: %q, want %q", c.version, c.id, c.classes, got, c.want)
		}
	}
}
