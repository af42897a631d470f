package waweb

import (
	"slices"
	"strings"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
)

// Which public LID report a failure matches (docs/lid.md §3), from what
// the server saw: the envelope form of each message's first copy, and the
// form of the retry receipts for the device's messages.

// Envelope forms of a stanza from a contact.
const (
	formPN    = "pn"     // from the PN, no alternative (the device knows no LID from it)
	formPNLID = "pn+lid" // from the PN with sender_lid / participant_lid
	formLID   = "lid"    // from the LID (sender_pn / participant_pn)
)

// lidSeen is what Report reads, kept under cv.mu.
type lidSeen struct {
	first    map[string]string // inbound message id → form of its first copy
	order    []string          // inbound ids in first-copy order
	peerOf   map[string]string // inbound id → contact device name
	sentPN   map[string]bool   // outbound id: the device addressed it to a PN
	retryLID map[string]bool   // outbound id: a retry receipt for it came from a LID
	retryPN  map[string]bool   // outbound id: a retry receipt for it came from a PN
	resent   map[string]bool   // outbound id: the device sent it again after that receipt
	// outLID marks the entries of order that are the device's messages to
	// a contact's LID device ("out:" + id; peerOf names the contact).
	outLID map[string]bool
	// told: the contact users whose LID a devices notification gave the
	// device (Mapping).
	told map[string]bool
	// toPN: the device's messages to a PN, in the order they reached the
	// server.
	toPN []string
}

func formOf(n waBinary.Node) string {
	from, _ := n.Attrs["participant"].(types.JID)
	if from.IsEmpty() {
		from, _ = n.Attrs["from"].(types.JID)
	}
	switch {
	case from.Server == types.HiddenUserServer:
		return formLID
	case n.Attrs["sender_lid"] != nil || n.Attrs["participant_lid"] != nil:
		return formPNLID
	}
	return formPN
}

func (cv *Conversation) seen() *lidSeen {
	if cv.lid == nil {
		cv.lid = &lidSeen{first: map[string]string{}, peerOf: map[string]string{}, sentPN: map[string]bool{}, retryLID: map[string]bool{}, retryPN: map[string]bool{},
			resent: map[string]bool{}, outLID: map[string]bool{}, told: map[string]bool{}}
	}
	return cv.lid
}

// noteInLocked records the form of inbound message id's first copy.
func (cv *Conversation) noteInLocked(id, peer string, n waBinary.Node) {
	s := cv.seen()
	if _, ok := s.first[id]; ok {
		return
	}
	s.first[id], s.peerOf[id] = formOf(n), peer
	s.order = append(s.order, id)
}

// noteOutLocked records the address form the device sent its message id to
// and the form of a retry receipt for it.
func (cv *Conversation) noteOutLocked(id string, to types.JID, receipt bool) {
	s := cv.seen()
	switch {
	case receipt && to.Server == types.HiddenUserServer:
		s.retryLID[id] = true
	case receipt:
		s.retryPN[id] = true
	case s.retryLID[id] || s.retryPN[id]:
		s.resent[id] = true
	case !receipt && to.Server == types.DefaultUserServer:
		if !s.sentPN[id] {
			s.toPN = append(s.toPN, id)
		}
		s.sentPN[id] = true
	case !receipt && to.Server == types.HiddenUserServer:
		if p, ok := cv.peerAt(to); ok && !s.outLID["out:"+id] {
			s.outLID["out:"+id], s.peerOf["out:"+id] = true, p.Name
			s.order = append(s.order, "out:"+id)
		}
	}
}

// Report names the public report whose mechanism a failed message matches
// ("" for none). lost says the message was never accepted; classes are its
// failed attempts' classes.
//
//   - whatsmeow PR #1063: an inbound message first sent from the LID fails
//     with NoSession or InvalidPreKey (message.go:315 at the pinned
//     commit migrates PN senders only; the session is under the PN), or a
//     group message from a LID participant with NoSenderKey (the sender
//     key made under the PN is not migrated either).
//   - the stale-overwrite class of whatsapp-rust PR #475: an inbound
//     message from the PN with its LID known fails with Bad MAC or
//     InvalidPreKey after the same contact had a LID-addressed message
//     (MigratePNToLID copies the older PN session over the LID one,
//     sqlstore store.go:248-305).
//   - the same class after the account's LID migration: an inbound
//     message in either form fails with Bad MAC, InvalidPreKey or
//     NoSession (no state of the record matches) after the device sent
//     the same contact a message to its LID device. The switched send
//     (send.go:325-347) found no LID session and started one from a
//     bundle, migrating nothing; a PN stanza's MigratePNToLID then copies
//     the older PN session over it, or a stanza the contact encrypted on
//     its PN session before it read the new one arrives under the LID.
//   - whatsmeow #1027 (fixed upstream by PR #1216, 098bcf77): one contact
//     device's copy of the device's message to the contact's PN (id
//     "r1/alice.0", webledger's per-device split) is lost with no copy
//     ever sent to that device, while another listed device of the same
//     contact got one, and the device had been given the contact's LID
//     by a devices notification: encryptMessageForDevices
//     (send.go:1230-1313) mapped every device to LID device 0 on
//     GetManyLIDsForPNs' database path (store/sqlstore/lidmap.go:191-197)
//     and encrypted for one of them only. The next DM (cache path,
//     devices kept) encrypts that device on the session built from the
//     other device's bundle: its copy fails with Bad MAC or InvalidPreKey,
//     noted too (docs/lid.md §1.5, run X4b).
//   - whatsmeow #1062 (fixed upstream in 89be06b0): the device's message
//     to a PN is lost, a retry receipt for it came from the LID and the
//     device never sent it again; or, after the account's migration, a
//     message to a LID with a retry receipt from the PN (retry.go getMessageForRetry looks under
//     the receipt's chat only).
func (cv *Conversation) Report(id string, lost bool, classes []endpoint.Class) string {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	s := cv.seen()
	has := func(cs ...endpoint.Class) bool {
		return slices.ContainsFunc(classes, func(c endpoint.Class) bool { return slices.Contains(cs, c) })
	}
	if base, dev, split := strings.Cut(id, "/"); split {
		if lost && len(classes) == 0 && s.sentPN[base] && cv.L.CopiesTo(base, dev) == 0 && cv.otherCopyLocked(base, dev) {
			return "whatsmeow #1027 (fixed upstream by PR #1216, 098bcf77): a DM to the PN after a restart reached another device of the contact, none for this one (every device mapped to LID device 0)"
		}
		if has(endpoint.BadMAC, endpoint.InvalidPreKey) && s.sentPN[base] {
			for _, earlier := range s.toPN {
				if earlier == base {
					break
				}
				if cv.L.CopiesTo(earlier, dev) == 0 && cv.otherCopyLocked(earlier, dev) {
					return "whatsmeow #1027, the next DM: this device's copy encrypted on the session the collapsed send built from another device's bundle"
				}
			}
		}
		return ""
	}
	form, ok := s.first[id]
	if !ok {
		if lost && s.sentPN[id] && s.retryLID[id] && !s.resent[id] {
			return "whatsmeow #1062 (fixed upstream 89be06b0): a retry receipt from the LID for a message sent to the PN, never resent"
		}
		if lost && s.outLID["out:"+id] && s.retryPN[id] && !s.resent[id] {
			return "whatsmeow #1062 the other way round (89be06b0 not read for it): a retry receipt from the PN for a message sent to the LID, never resent"
		}
		return ""
	}
	if form == formLID && has(endpoint.NoSession, endpoint.InvalidPreKey) {
		return "whatsmeow PR #1063: a LID stanza decrypted under the LID, the session still under the PN"
	}
	if form == formLID && has(endpoint.NoSenderKey) {
		return "whatsmeow PR #1063 (group): a LID participant's sender key looked up under the LID, made under the PN"
	}
	// earlier: whether an entry of s.order before id, of the same
	// contact, matches.
	earlier := func(match func(other string) bool) bool {
		for _, other := range s.order {
			if other == id {
				return false
			}
			if s.peerOf[other] == s.peerOf[id] && match(other) {
				return true
			}
		}
		return false
	}
	if form == formPNLID && has(endpoint.BadMAC, endpoint.InvalidPreKey) && earlier(func(o string) bool { return s.first[o] == formLID }) {
		return "whatsapp-rust PR #475 class: MigratePNToLID copied the stale PN session over the LID one"
	}
	if has(endpoint.BadMAC, endpoint.InvalidPreKey, endpoint.NoSession) && earlier(func(o string) bool { return s.outLID[o] }) {
		return "whatsapp-rust PR #475 class after the LID migration: the switched send started a LID session next to the PN one, and this stanza met the other"
	}
	return ""
}

// otherCopyLocked reports whether the device's message id reached a
// device of dev's user other than dev, that user's LID having been given
// to the device (Mapping).
func (cv *Conversation) otherCopyLocked(id, dev string) bool {
	p, ok := cv.peerNamedLocked(dev)
	if !ok || !cv.seen().told[p.JID.User] {
		return false
	}
	for _, q := range cv.peers {
		if q.JID.User == p.JID.User && q.Name != dev && cv.L.CopiesTo(id, q.Name) > 0 {
			return true
		}
	}
	return false
}

func (cv *Conversation) peerNamedLocked(name string) (*fakeserver.Peer, bool) {
	for _, p := range cv.peers {
		if p.Name == name {
			return p, true
		}
	}
	return nil, false
}
