// Package webledger turns the loopback server's ledger into the oracle's
// messages. It sits above both so that neither knows the other: the fake
// server (fakeserver/waweb) knows nothing of schedules, and the harness
// nothing of sockets. Every device built on the server (the real whatsmeow
// Client, Baileys' socket) converts here.
package webledger

import (
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
)

// Messages is the fake WhatsApp server's ledger (fakeserver/waweb, which
// follows every message of a device that talks to it over a socket: the
// real whatsmeow client, Baileys' socket) as the oracle's messages, in the
// order the ledger registered them: those with a direction (In, Out), not
// the ids it saw only in a stray ack or receipt (Strays).
func Messages(l *waweb.Ledger) []*harness.Message {
	var out []*harness.Message
	for _, m := range l.Messages() {
		if m.Dir != harness.In && m.Dir != harness.Out {
			continue
		}
		hm := &harness.Message{ID: m.ID, Dir: m.Dir, Peer: m.Peer, Body: m.Body}
		for _, a := range m.Attempts {
			// waweb.Attempt is harness.Attempt in shape: a field added to one
			// and not the other stops this conversion compiling.
			hm.Attempts = append(hm.Attempts, harness.Attempt(a))
		}
		out = append(out, hm)
	}
	return out
}

// Strays are the ids the ledger noted without a direction: seen
// only in an ack or receipt, never sent by the schedule nor replied.
func Strays(l *waweb.Ledger) []string {
	var ids []string
	for _, m := range l.Messages() {
		if m.Dir != harness.In && m.Dir != harness.Out {
			ids = append(ids, m.ID)
		}
	}
	return ids
}
