// Package webledger turns the loopback server's ledger into the oracle's
// messages. It sits above both so that neither knows the other: the fake
// server (fakeserver/waweb) knows nothing of schedules, and the harness
// nothing of sockets. Every device built on the server (the real whatsmeow
// Client, Baileys' socket) converts here.
package webledger

import (
	"fmt"
	"slices"

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
		if len(m.Copies) >= 2 {
			out = append(out, perDevice(m)...)
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

// perDevice splits the device's message to a contact with several devices
// (waweb.Ledger.ExpectCopies) into one message per contact device, "r1"
// into "r1/alice.0", "r1/alice.1", …, each with the attempts that device
// made (and those no device made, a failed send, which every copy shares),
// so that the oracle judges each copy: a listed device that never got one
// has no attempt and is lost. The listed devices come first, in the
// server's order, then any other device that decrypted a copy. Copies are
// named as deliveries are: the id, then id.2, id.3, …
func perDevice(m *waweb.Message) []*harness.Message {
	devs := append([]string(nil), m.Copies...)
	for _, d := range m.Of {
		if d != "" && !slices.Contains(devs, d) {
			devs = append(devs, d)
		}
	}
	var out []*harness.Message
	for _, d := range devs {
		id := m.ID + "/" + d
		hm := &harness.Message{ID: id, Dir: m.Dir, Peer: d, Body: m.Body}
		for i, a := range m.Attempts {
			if m.Of[i] != d && m.Of[i] != "" {
				continue
			}
			a.Delivery = id
			if n := len(hm.Attempts) + 1; n > 1 {
				a.Delivery = fmt.Sprintf("%s.%d", id, n)
			}
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
