package waweb

import (
	"context"
	"fmt"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb/weblog"
)

// holding is the conversation under a schedule (Hold): the server keeps
// what the peers send until a deliver op and what the device sends until a
// read op, as harness ops name them.
type holding struct {
	copyN map[string]int           // copies named so far per message id
	in    []heldCopy               // stanzas for the device, in queue order
	out   []heldCopy               // the device's messages for the peers
	taken []string                 // copies pushed to the device, in order
	nodes map[string]waBinary.Node // a pushed copy's stanza, for dup
}

type heldCopy struct {
	name, id string
	jid      types.JID // out: the peer device
	node     waBinary.Node
}

// Hold makes the conversation wait for ops, as harness schedules drive a
// device: Send only queues the peer's stanza until Deliver pushes it, and
// the device's messages wait at the server until Read hands one to its
// peer. What the server does by itself stays as it is: the copy a retry
// receipt asks for and the offline queue on login go at once, and a peer
// that cannot decrypt sends its retry receipt when it reads. Copies are
// named as harness names deliveries: the message id, then id.2, id.3, …
// Call Hold before the first Send.
func (cv *Conversation) Hold() {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	cv.hold = &holding{copyN: map[string]int{}, nodes: map[string]waBinary.Node{}}
}

func (h *holding) nextCopy(id string) string {
	h.copyN[id]++
	if n := h.copyN[id]; n > 1 {
		return fmt.Sprintf("%s.%d", id, n)
	}
	return id
}

func (cv *Conversation) holdInLocked(id string, n waBinary.Node) {
	name := cv.hold.nextCopy(id)
	cv.hold.in = append(cv.hold.in, heldCopy{name: name, id: id, node: n})
	cv.S.logLine(weblog.QueueHeld, name)
	cv.L.update(id, func(*flow) {})
}

// tookLocked names a copy pushed to the device (id itself without Hold).
func (cv *Conversation) tookLocked(id string, n waBinary.Node) string {
	if cv.hold == nil {
		return id
	}
	name := cv.hold.nextCopy(id)
	cv.hold.taken = append(cv.hold.taken, name)
	cv.hold.nodes[name] = n
	return name
}

// holdOut keeps the device's message for peer jid until a Read; false
// without Hold.
func (cv *Conversation) holdOut(id string, jid types.JID, enc waBinary.Node) bool {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.hold == nil {
		return false
	}
	p, ok := cv.peerAt(jid)
	if !ok {
		cv.S.logLine(weblog.ErrUnknownDevice, id, jid)
		return true
	}
	name := cv.hold.nextCopy(id)
	cv.hold.out = append(cv.hold.out, heldCopy{name: name, id: id, jid: jid, node: enc})
	cv.S.logLine(weblog.Hold, name, jid)
	cv.L.update(id, func(f *flow) { f.copies++; f.held++; f.toDevice(p.Name, true) })
	return true
}

func takeCopy(q *[]heldCopy, name string) (heldCopy, bool) {
	for i, c := range *q {
		if c.name == name {
			*q = append((*q)[:i:i], (*q)[i+1:]...)
			return c, true
		}
	}
	return heldCopy{}, false
}

// Deliver pushes the held stanza name to the device (or to the offline
// queue for its next login) and returns its message id. It reports false
// when nothing of that name is held.
func (cv *Conversation) Deliver(name string) (string, bool) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.hold == nil {
		return "", false
	}
	c, ok := takeCopy(&cv.hold.in, name)
	if !ok {
		return "", false
	}
	// tookLocked names it again: a dup keeps its name, a first copy its id.
	if name == c.id {
		cv.hold.copyN[c.id]--
	} else {
		cv.hold.taken = append(cv.hold.taken, name)
		cv.hold.nodes[name] = c.node
	}
	cv.pendingAddLocked(c.id)
	cv.pushNamedLocked(c.id, name, c.node, fmt.Sprint(c.node.GetChildByTag("enc").Attrs["type"]))
	return c.id, true
}

// pushNamedLocked is pushLocked for a held copy that already has its name.
func (cv *Conversation) pushNamedLocked(id, name string, n waBinary.Node, kind string) {
	if name == id {
		cv.pushLocked(id, n, kind, 0)
		return
	}
	if !cv.S.send(n) {
		cv.S.logLine(weblog.QueueOffline, name)
		cv.L.update(id, func(f *flow) { f.offline = true })
		return
	}
	cv.S.logLine(weblog.Deliver, name, kind, 0)
	cv.taken[id] = append(cv.taken[id], n)
	cv.L.update(id, func(f *flow) { f.copies++; f.offline = false })
}

// Handled reports whether the device has handled every copy of message id
// it was sent: decrypted it or failed to (an attempt each), none waiting
// for a login.
func (l *Ledger) Handled(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.msgs[id]
	if !ok {
		return true
	}
	f := l.st[id]
	return !f.offline && len(m.Attempts) >= f.copies
}

// Dup queues another copy of a stanza the device already took (the
// server redelivering after a lost ack), to go with a Deliver of the name
// it returns.
func (cv *Conversation) Dup(name string) (string, bool) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.hold == nil {
		return "", false
	}
	n, ok := cv.hold.nodes[name]
	if !ok {
		return "", false
	}
	id, _ := n.Attrs["id"].(string)
	c := cv.hold.nextCopy(id)
	cv.hold.in = append(cv.hold.in, heldCopy{name: c, id: id, node: n})
	cv.S.logLine(weblog.QueueAgain, name, c)
	cv.L.update(id, func(*flow) {})
	return c, true
}

// Read hands the held message name to its peer, which decrypts it (and
// sends a retry receipt when it cannot). It reports false when nothing of
// that name is held.
func (cv *Conversation) Read(ctx context.Context, name string) bool {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.hold == nil {
		return false
	}
	c, ok := takeCopy(&cv.hold.out, name)
	if !ok {
		return false
	}
	p, _ := cv.peerAt(c.jid)
	cv.L.update(c.id, func(f *flow) {
		f.held--
		if p != nil && f.devHeld[p.Name] > 0 {
			f.devHeld[p.Name]--
		}
	})
	cv.toPeerLocked(ctx, c.id, c.jid, c.node, false)
	return true
}

// Held lists the held copies: for the device and for the peers, in order.
func (cv *Conversation) Held() (in, out []string) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.hold == nil {
		return nil, nil
	}
	for _, c := range cv.hold.in {
		in = append(in, c.name)
	}
	for _, c := range cv.hold.out {
		out = append(out, c.name)
	}
	return in, out
}

// Taken lists the copies pushed to the device so far, in order.
func (cv *Conversation) Taken() []string {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.hold == nil {
		return nil
	}
	return append([]string(nil), cv.hold.taken...)
}

// Nudge sends the device a chat state from p (composing): a stanza with
// no encryption that whatsmeow dispatches as events.ChatPresence from its
// handler queue, in order with the messages around it. It reports false
// when the device is offline (the stanza is not kept).
func (cv *Conversation) Nudge(p *fakeserver.Peer) bool {
	ok := cv.S.send(waBinary.Node{Tag: "chatstate", Attrs: waBinary.Attrs{"from": cv.addressOf(p).ToNonAD()},
		Content: []waBinary.Node{{Tag: "composing"}}})
	if ok {
		cv.S.logLine(weblog.PeerChatstate, p.Name)
	}
	return ok
}

// Peer returns the contact device named name ("alice.0").
func (cv *Conversation) Peer(name string) (*fakeserver.Peer, bool) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	for _, p := range cv.peers {
		if p.Name == name {
			return p, true
		}
	}
	return nil, false
}

// Busy lists what the device still owes (empty: it is quiet): copies it
// was sent and has not decrypted or answered, copies waiting for its next
// login, and its messages (replies, the copies a retry receipt asked for)
// that have not reached the server. Copies the server holds for a Deliver
// or a Read are not the device's to finish.
func (l *Ledger) Busy() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.busyLocked()
}

func (l *Ledger) busyLocked() []string {
	var p []string
	for _, id := range l.order {
		m, f := l.msgs[id], l.st[id]
		switch m.Dir {
		case In:
			switch {
			case f.offline:
				p = append(p, id+" (waits for a login)")
			case len(m.Attempts) < f.copies:
				p = append(p, id+" (copy not yet decrypted)")
			case f.copies > 0 && !f.receipt && f.acks < MaxRetries:
				p = append(p, id+" (no receipt)")
			}
		case Out:
			switch {
			case f.sending:
				p = append(p, id+" (SendMessage has not returned)")
			case f.perDevice():
				for _, d := range f.devs {
					done, failures := f.devState(m, d)
					if f.devCopies[d] > 0 && !done && !f.sendErr && failures < MaxRetries && f.devHeld[d] == 0 {
						p = append(p, id+" (copy for "+d+" not at the server)")
					}
				}
			case !outDone(m) && !f.sendErr && f.failures < MaxRetries && f.held == 0:
				p = append(p, id+" (not at the server)")
			}
		}
	}
	return p
}

// WaitQuiet blocks until Busy is empty or ctx ends; then it returns what
// the device still owes.
func (l *Ledger) WaitQuiet(ctx context.Context) error {
	return l.waitEmpty(ctx, l.busyLocked, "device still busy")
}

// Sending records that the device's SendMessage for id started (on) or
// returned: until it returns the device is busy, though the server has the
// message (it waits for the server's ack, which a disconnect would cut off).
func (l *Ledger) Sending(id string, on bool) {
	l.update(id, func(f *flow) { f.sending = on })
}

// Changed is closed at the ledger's next change.
func (l *Ledger) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}
