package waweb

import (
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/fakeserver"
)

// Addressing. Every stanza the server writes names a contact through
// addressOf, and every JID the device writes is resolved through peerAt:
// a contact has one address today, its phone-number JID. When contacts get
// a LID too (WhatsApp addresses a user by either; whatsmeow migrates a
// contact's sessions from the PN to the LID, message.go decryptMessages),
// these two are where the second form goes: which form a stanza uses, and
// resolving either to the contact.

// addressOf is the JID the server names contact p by.
func addressOf(p *fakeserver.Peer) types.JID { return p.JID }

// peerAt is the contact the device addresses as jid (device-specific).
func (cv *Conversation) peerAt(jid types.JID) (*fakeserver.Peer, bool) {
	p, ok := cv.peers[jid.String()]
	return p, ok
}
