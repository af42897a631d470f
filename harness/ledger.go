package harness

import "github.com/badmac/badmac/fakeserver/waweb"

// FromLedger is the fake WhatsApp server's ledger (fakeserver/waweb, which
// follows every message of a device that talks to it over a socket: the
// real whatsmeow client, Baileys' socket) as the oracle's messages, in the
// order the ledger registered them: those with a direction (In, Out), not
// the ids it saw only in a stray ack or receipt (LedgerStrays). waweb does
// not import the harness; every device built on it converts here.
func FromLedger(l *waweb.Ledger) []*Message {
	var out []*Message
	for _, m := range l.Messages() {
		if m.Dir != In && m.Dir != Out {
			continue
		}
		hm := &Message{ID: m.ID, Dir: m.Dir, Peer: m.Peer, Body: m.Body}
		for _, a := range m.Attempts {
			// waweb.Attempt is Attempt in shape: a field added to one
			// and not the other stops this conversion compiling.
			hm.Attempts = append(hm.Attempts, Attempt(a))
		}
		out = append(out, hm)
	}
	return out
}

// LedgerStrays are the ids the ledger noted without a direction: seen
// only in an ack or receipt, never sent by the schedule nor replied.
func LedgerStrays(l *waweb.Ledger) []string {
	var ids []string
	for _, m := range l.Messages() {
		if m.Dir != In && m.Dir != Out {
			ids = append(ids, m.ID)
		}
	}
	return ids
}
