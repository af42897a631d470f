package baileys

import (
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/harness/webledger"
)

// LID addressing on the socket device (issue 20, docs/lid.md §6.6): the
// fake server speaks to Baileys as it speaks to whatsmeow
// (fakeserver/waweb/address.go): sender_lid on a PN stanza of a contact in
// phase mixed, from=LID with sender_pn on a LID one, <lid val> in a usync
// answer to a <lid/> query once the contact has left phase pn, LID device
// JIDs listed and their prekeys served, and <success lid> in a LID
// schedule. What Baileys does with them is its own code: 7.0.0-rc14's
// handleMessage stores the pair and calls migrateSession
// (Socket/messages-recv.js:1277-1292), its signal storage resolves a PN
// address to the LID (Signal/libsignal.js:329-344), its lid-mapping keys
// go through the auth state like any key; 6.17.16 has none of it and
// decrypts every stanza under its from (docs/lid.md §2.1).

// The socket device runs the LID ops but migrate (socketOps): the
// account's migration is a ProtocolMessage from the own phone that
// whatsmeow reads (docs/lid.md §1.4); what Baileys does with it is not
// read, and the socket device's own phone is a peer of its own (newRun),
// not the conversation's.

// socketLIDRefused is why the socket device refuses a LID scenario it
// cannot run, by name ("" for the ones it runs).
func socketLIDRefused(name string) string {
	switch name {
	case "lid-switch", "lid-switch-group":
		return "op migrate (the account's LID migration: whatsmeow's path, not read for Baileys)"
	}
	return ""
}

// ownLIDUser is the account's LID user in a LID schedule.
const ownLIDUser = "800042"

// applyLID runs a LID op on the server (webledger.ApplyLID); the bot
// syncs after a mapping notification the server sent.
func (r *sockRun) applyLID(op harness.Op) error {
	return webledger.ApplyLID(r.ctx, webledger.LIDServer{Conv: r.cv, Peers: r.peers, Down: r.down, Handle: r.sync},
		r.d.name, op)
}

// noteLIDReports names, on each failed message, the public Baileys report
// its mechanism matches (waweb.Conversation.BaileysReport).
func (r *sockRun) noteLIDReports(res *harness.Result) {
	for _, m := range res.Messages {
		classes, ok := webledger.FailureClasses(m)
		if !ok {
			continue
		}
		m.Note = r.cv.BaileysReport(r.d.version, m.ID, m.Outcome() == harness.Lost, classes)
	}
}
