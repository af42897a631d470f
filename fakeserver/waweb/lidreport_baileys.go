package waweb

import (
	"slices"
	"strings"

	"github.com/badmac/badmac/endpoint"
)

// BaileysReport names the public Baileys report whose mechanism a failed
// message matches ("" for none), from what the server saw (lidSeen), for
// the socket device (devices/baileys) running Baileys version version.
// lost says the message was never accepted; classes are its failed
// attempts' classes. docs/lid.md §2 and §3.4-§3.6:
//
//   - 7.x, Baileys #2331 / PR #2763, the skipped migration: an inbound
//     message whose first copy came with its LID (from the LID, or from
//     the PN with sender_lid) fails NoSession or InvalidPreKey and no
//     earlier message of the contact carried its LID:
//     handleMessage stored the pair and called migrateSession, which moves
//     nothing without the contact's device-list key (Signal/libsignal.js
//     7.0.0-rc14 215-217, written only when the bot sends,
//     Socket/messages-send.js 252-262), and the decrypt resolved to the
//     empty LID address.
//   - 7.x, Baileys #2331, the stale overwrite: the same failures (or Bad
//     MAC, or Other: "No matching sessions found" with "Over 2000 messages
//     into the future" inside) after an earlier message of the contact
//     that carried its LID (a LID session exists): migrateSession copies
//     a PN session over the LID one unconditionally once the contact's
//     device-list key exists (Signal/libsignal.js 284-288).
//   - 7.x, Baileys PR #2372 cause 2: a PN stanza without sender_lid fails
//     NoSession after a message of the contact that carried its LID: the
//     PN session was migrated away and the PN address no longer resolves
//     to the LID (the lid-mapping key is gone: an auth state that does not
//     keep it; on one that does, libsignal.js 329-344 resolves it).
//   - 6.x, PR #2763 on 6.x: a message fails whose from is the other form
//     than the contact's stanza before it (6.17.16 ignores sender_lid and
//     keeps one session per address form, lib/Signal/libsignal.js 95-98).
func (cv *Conversation) BaileysReport(version, id string, lost bool, classes []endpoint.Class) string {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	s := cv.seen()
	form, ok := s.first[id]
	if !ok || (!lost && len(classes) == 0) {
		return ""
	}
	has := func(cs ...endpoint.Class) bool {
		return slices.ContainsFunc(classes, func(c endpoint.Class) bool { return slices.Contains(cs, c) })
	}
	// earlier: whether an inbound message of the same contact before id
	// came in a form other(its form) accepts.
	earlier := func(other func(string) bool) bool {
		for _, o := range s.order {
			if o == id {
				return false
			}
			if !strings.HasPrefix(o, "out:") && s.peerOf[o] == s.peerOf[id] && other(s.first[o]) {
				return true
			}
		}
		return false
	}
	if strings.HasPrefix(version, "6.") {
		prev := "" // the contact's stanza before this one
		for _, o := range s.order {
			if o == id {
				break
			}
			if !strings.HasPrefix(o, "out:") && s.peerOf[o] == s.peerOf[id] {
				prev = s.first[o]
			}
		}
		if prev != "" && (prev == formLID) != (form == formLID) {
			return "Baileys PR #2763 on 6.x: one session per address form, this stanza's form had none or a stale one (docs/lid.md §2.1)"
		}
		return ""
	}
	switch {
	case form != formPN && has(endpoint.NoSession, endpoint.InvalidPreKey, endpoint.BadMAC, endpoint.Other) && earlier(func(o string) bool { return o != formPN }):
		return "Baileys #2331 (stale overwrite): migrateSession copied the older PN session over the LID one"
	case form != formPN && has(endpoint.NoSession, endpoint.InvalidPreKey):
		return "Baileys #2331 / PR #2763: the pair stored, migrateSession moved nothing (no device-list yet), decrypted under the empty LID address"
	case form == formPN && has(endpoint.NoSession) && earlier(func(o string) bool { return o != formPN }):
		return "Baileys PR #2372 cause 2: a PN stanza after the migration moved its session, the PN not resolved to the LID (lid-mapping key gone)"
	}
	return ""
}
