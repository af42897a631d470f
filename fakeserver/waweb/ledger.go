package waweb

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/badmac/badmac/endpoint"
)

// MaxRetries is where whatsmeow stops: sendRetryReceipt sends no receipt
// once its count reaches 5 (retry.go at the pinned commit), so a message
// gets at most 5 decryption attempts and 4 retry receipts.
const MaxRetries = 5

// Directions of a message (the oracle's, In and Out).
const (
	In  = "in"  // from a peer to the device
	Out = "out" // from the device to a peer
)

// Message is one message the ledger follows, with every attempt to
// decrypt a copy of it: the oracle's message (Message) in shape;
// the server does not depend on the harness (realclient converts).
type Message struct {
	ID, Dir, Peer, Body string
	Attempts            []Attempt
	// Copies and Of, for the device's message to a contact user with two
	// or more devices (ExpectCopies): the contact devices the server
	// listed, one copy expected each, and for each attempt the device
	// whose decryption it was ("" for none: a failed send). Both are nil
	// for any other message, which is judged whole.
	Copies, Of []string
}

// Attempt is one decryption of one copy (Attempt in shape).
type Attempt struct {
	Delivery string
	OK       bool
	Wrong    bool
	Class    endpoint.Class
	Err      string
}

// Ledger follows every message both ways for the oracle: the copies the
// server sent, what the device made of each (reported by the device side,
// which sees whatsmeow's events and log), the peers' decryptions of the
// device's replies, and the receipts. It also tells when nothing is in
// flight any more (Settled).
type Ledger struct {
	mu      sync.Mutex
	msgs    map[string]*Message
	order   []string
	st      map[string]*flow
	changed chan struct{}
	// copySeq numbers the copies the server sends, in order; inAttempts
	// counts the device's attempts (InProgress, InAttempts).
	copySeq, inAttempts int
}

type flow struct {
	copies   int   // copies the server sent (in) or received (out)
	receipt  bool  // in: a normal receipt came back
	awaiting int   // in: copies accepted whose normal receipt has not come
	acks     int   // in: failures the server saw (acks without receipt)
	failures int   // out: the peer's failed decryptions
	retries  int   // retry receipts (in: from the device; out: from the peer)
	sendErr  bool  // out: the device's SendMessage failed
	offline  bool  // in: the last copy waits in the offline queue for a login
	held     int   // out: copies the server holds until a peer reads them (Hold)
	sending  bool  // out: the device's SendMessage has not returned yet
	seqs     []int // in: each copy's number in the server's sending order (copySeq)
	// early: bodies of the accepted attempts recorded before the message
	// was registered (Dir "?"), by attempt index, so Expect can judge them.
	early map[int]string
	// out, to a contact user with several devices (ExpectCopies): the
	// devices listed, the copies each was sent and the server holds for
	// it, and the device of each attempt, by attempt index.
	devs      []string
	devCopies map[string]int
	devHeld   map[string]int
	attDev    map[int]string
}

// perDevice reports whether the message is followed device by device.
func (f *flow) perDevice() bool { return len(f.devs) >= 2 }

// toDevice counts a copy the server got for contact device dev, held
// until a Read or not.
func (f *flow) toDevice(dev string, held bool) {
	if f.devCopies == nil {
		f.devCopies, f.devHeld = map[string]int{}, map[string]int{}
	}
	f.devCopies[dev]++
	if held {
		f.devHeld[dev]++
	}
}

// devState is what contact device dev made of its copies of m: done (it
// accepted one, or dropped the last as an old counter, as outDone) and
// its failed attempts.
func (f *flow) devState(m *Message, dev string) (done bool, failures int) {
	var last *Attempt
	for i := range m.Attempts {
		if f.attDev[i] != dev {
			continue
		}
		a := &m.Attempts[i]
		if a.OK {
			done = true
		} else {
			failures++
		}
		last = a
	}
	return done || (last != nil && last.Class == endpoint.OldCounter), failures
}

// ExpectCopies records the contact devices the server listed for the
// recipient user of the device's message id when it arrived: each is
// expected to get a copy (whatsmeow encrypts a DM for every device of the
// user, send.go sendDM). With two or more, the message is followed device
// by device: Settled and Busy wait for each device that was sent a copy,
// a listed device with none is a lost copy (never waited for), and
// Messages carries Copies and Of so that each (message, device) can be
// judged on its own. One device (or none) leaves the message as it was.
// The first arrival decides; a resend does not change it.
func (l *Ledger) ExpectCopies(id string, devs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, f := l.msg(id, "?", "", "")
	if len(f.devs) > 0 || len(devs) < 2 {
		return
	}
	f.devs = append([]string(nil), devs...)
	l.touch()
}

// CopiesTo is the number of copies of the device's message id the server
// got for contact device dev (0 unless id is followed by device).
func (l *Ledger) CopiesTo(id, dev string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.st[id]; ok {
		return f.devCopies[dev]
	}
	return 0
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{msgs: map[string]*Message{}, st: map[string]*flow{}, changed: make(chan struct{})}
}

func (l *Ledger) touch() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *Ledger) msg(id, dir, peer, body string) (*Message, *flow) {
	m, ok := l.msgs[id]
	if !ok {
		m = &Message{ID: id, Dir: dir, Peer: peer, Body: body}
		l.msgs[id] = m
		l.st[id] = &flow{}
		l.order = append(l.order, id)
	}
	return m, l.st[id]
}

// Expect registers a message before its first copy: inbound by the server,
// a reply by the device before it calls SendMessage. A child process
// registers its replies through a pipe the parent reads on its own, so
// the peer may have decrypted a reply before its registration arrives:
// Expect then completes the entry its attempts opened (Dir "?"), judging
// those attempts as Attempt would have.
func (l *Ledger) Expect(id, dir, peer, body string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, f := l.msg(id, dir, peer, body)
	if m.Dir == "?" {
		m.Dir, m.Peer, m.Body = dir, peer, body
		for i := range m.Attempts {
			a := &m.Attempts[i]
			if b, ok := f.early[i]; ok && a.OK {
				a.Wrong = b != body
			}
			if !a.OK && dir == Out {
				f.failures++
			}
			if dir == In {
				l.inAttempts++
			}
		}
		f.early = nil
	}
	l.touch()
}

// Known reports whether id was registered.
func (l *Ledger) Known(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.msgs[id]
	return ok
}

// Body is the plaintext sent as id.
func (l *Ledger) Body(id string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.msgs[id]
	if !ok {
		return "", false
	}
	return m.Body, true
}

func copyName(id string, n int) string {
	if n <= 1 {
		return id
	}
	return fmt.Sprintf("%s.%d", id, n)
}

// Attempt records one decryption of id: by the device (inbound) or by a
// peer (a reply). Attempts are numbered in the order they are recorded,
// which for one message is the order of its copies (whatsmeow handles one
// stanza at a time; a peer is driven under the conversation's lock).
func (l *Ledger) Attempt(id string, ok bool, body string, class endpoint.Class, err error) {
	l.AttemptBy(id, "", ok, body, class, err)
}

// AttemptBy is Attempt made by contact device dev (a peer decrypting the
// device's message; "" for the device's own attempts).
func (l *Ledger) AttemptBy(id, dev string, ok bool, body string, class endpoint.Class, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, f := l.msg(id, "?", "", "")
	if dev != "" {
		if f.attDev == nil {
			f.attDev = map[int]string{}
		}
		f.attDev[len(m.Attempts)] = dev
	}
	a := Attempt{Delivery: copyName(id, len(m.Attempts)+1), OK: ok, Class: class}
	if ok && m.Dir == "?" {
		if f.early == nil {
			f.early = map[int]string{}
		}
		f.early[len(m.Attempts)] = body
	} else if ok && body != m.Body {
		a.Wrong = true
	}
	if err != nil {
		a.Err = err.Error()
	}
	m.Attempts = append(m.Attempts, a)
	if !ok && m.Dir == Out {
		f.failures++
	}
	if m.Dir == In {
		l.inAttempts++
	}
	l.touch()
}

func (l *Ledger) update(id string, fn func(*flow)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, f := l.msg(id, "?", "", "")
	before := f.copies
	fn(f)
	if f.copies > before {
		f.seqs = f.seqs[:min(before, len(f.seqs))]
		for range f.copies - before {
			l.copySeq++
			f.seqs = append(f.seqs, l.copySeq)
		}
	}
	l.touch()
}

// InAttempts is the number of attempts the device has made on inbound
// copies so far: a store write made while it is unchanged belongs to a
// copy whose handling has not ended (realclient's killed receives).
func (l *Ledger) InAttempts() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inAttempts
}

// InProgress is the inbound message whose copy the device is handling: of
// the copies it was sent and has not yet attempted (and that are not
// waiting for a login), the one sent first. whatsmeow handles message
// stanzas one at a time, in the order they arrive (its handler queue).
func (l *Ledger) InProgress() (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	best, seq := "", 0
	for _, id := range l.order {
		m, f := l.msgs[id], l.st[id]
		n := len(m.Attempts)
		if m.Dir != In || f.offline || n >= f.copies || n >= len(f.seqs) {
			continue
		}
		if best == "" || f.seqs[n] < seq {
			best, seq = id, f.seqs[n]
		}
	}
	return best, best != ""
}

// Messages returns the messages in the order they were registered.
func (l *Ledger) Messages() []*Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Message, 0, len(l.order))
	for _, id := range l.order {
		m := *l.msgs[id]
		m.Attempts = append([]Attempt(nil), m.Attempts...)
		if f := l.st[id]; f.perDevice() {
			m.Copies = append([]string(nil), f.devs...)
			m.Of = make([]string, len(m.Attempts))
			for i := range m.Of {
				m.Of[i] = f.attDev[i]
			}
		}
		out = append(out, &m)
	}
	return out
}

// Retries returns the retry receipts seen, by direction.
func (l *Ledger) Retries() (in, out int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, f := range l.st {
		if l.msgs[id].Dir == Out {
			out += f.retries
		} else {
			in += f.retries
		}
	}
	return
}

// outDone reports whether the peer is done with the device's message m:
// it accepted a copy, or dropped the last one as an old counter (silently,
// no retry receipt: final).
func outDone(m *Message) bool {
	for _, a := range m.Attempts {
		if a.OK {
			return true
		}
	}
	return len(m.Attempts) > 0 && m.Attempts[len(m.Attempts)-1].Class == endpoint.OldCounter
}

// pendingLocked lists the messages still in flight and why.
func (l *Ledger) pendingLocked() []string {
	var p []string
	for _, id := range l.order {
		m, f := l.msgs[id], l.st[id]
		switch m.Dir {
		case In:
			if len(m.Attempts) < f.copies {
				p = append(p, id+" (copy not yet decrypted)")
			} else if !f.receipt && f.acks < MaxRetries {
				p = append(p, id+" (no receipt)")
			}
		case Out:
			if f.perDevice() {
				// A listed device the device sent no copy is a lost copy,
				// not one in flight.
				for _, d := range f.devs {
					done, failures := f.devState(m, d)
					if f.devCopies[d] > 0 && !done && !f.sendErr && failures < MaxRetries {
						p = append(p, id+" (not accepted by "+d+")")
					}
				}
			} else if !outDone(m) && !f.sendErr && f.failures < MaxRetries {
				p = append(p, id+" (not accepted by the peer)")
			}
		default:
			p = append(p, id+" (unknown message)")
		}
	}
	return p
}

// Settled reports whether nothing is in flight: every inbound copy was
// decrypted (or failed) by the device and answered with a receipt or the
// last retry, and every reply was accepted by its peer, failed MaxRetries
// times, was dropped as an old counter or failed to send.
func (l *Ledger) Settled() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pendingLocked()) == 0
}

// Wait blocks until Settled or ctx ends; then it returns what is still in
// flight.
func (l *Ledger) Wait(ctx context.Context) error {
	return l.waitEmpty(ctx, l.pendingLocked, "still in flight")
}

// waitEmpty blocks until list (called with l.mu held) is empty or ctx
// ends; then it returns what is left, under what.
func (l *Ledger) waitEmpty(ctx context.Context, list func() []string, what string) error {
	for {
		l.mu.Lock()
		p := list()
		ch := l.changed
		l.mu.Unlock()
		if len(p) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			sort.Strings(p)
			return fmt.Errorf("%s: %s: %w", what, strings.Join(p, ", "), ctx.Err())
		}
	}
}

// SendFailed records that the device's SendMessage for reply id failed: the
// reply is lost, with the error as its one attempt.
func (l *Ledger) SendFailed(id string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, f := l.msg(id, Out, "", "")
	f.sendErr = true
	m.Attempts = append(m.Attempts, Attempt{Delivery: id, Class: endpoint.Other, Err: "send: " + err.Error()})
	l.touch()
}

// Ignored is the attempt a normal receipt stands for when no event came
// with it: whatsmeow drops an old counter, and an event its buffer already
// processed, with a normal receipt and no event.
const Ignored = "acknowledged without an event: whatsmeow ignored the copy (an old counter, or an event already processed)"

// Accepted records that the device accepted a copy of inbound id with
// body (events.Message).
func (l *Ledger) Accepted(id, body string) {
	l.Attempt(id, true, body, "", nil)
	l.update(id, func(f *flow) { f.awaiting++ })
}

// Receipt records a normal receipt for inbound id. whatsmeow sends one for
// every copy its handler accepted or ignored, never for one it failed
// (message.go decryptMessages at the pinned commit: a decrypt error sends a
// retry receipt and an ack and returns; ErrOldCounter and
// EventAlreadyProcessed `continue` to the receipt after the loop without
// dispatching anything). An accepted copy's events.Message is dispatched
// before its receipt is sent, so a receipt that no accepted copy awaits is
// a copy whatsmeow ignored: one failed attempt, OldCounter (the class both
// of those errors have, endpoint.ClassOf). A connection that closes
// forgets the receipts it still owed (a killed client never sends them).
// It reports whether it recorded an ignored copy.
func (l *Ledger) Receipt(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.touch()
	m, f := l.msg(id, "?", "", "")
	f.receipt = true
	if f.awaiting > 0 {
		f.awaiting--
		return false
	}
	m.Attempts = append(m.Attempts, Attempt{Delivery: copyName(id, len(m.Attempts)+1), Class: endpoint.OldCounter, Err: Ignored})
	return true
}

// GaveUp records that the device will send no copy of its message id
// again (it could not answer a retry receipt): a run stops waiting for
// one. Nothing is recorded as an attempt: what the peer made of the copies
// it got is the message's outcome.
func (l *Ledger) GaveUp(id string) {
	l.update(id, func(f *flow) { f.sendErr = true })
}

// disconnected forgets the receipts the closed connection owed.
func (l *Ledger) disconnected() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.st {
		f.awaiting = 0
	}
	l.touch()
}

// orphan forgets copies of id the device did not attempt.
func (l *Ledger) orphan(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m, ok := l.msgs[id]; ok && l.st[id].copies > len(m.Attempts) {
		l.st[id].copies = len(m.Attempts)
		l.touch()
	}
}

// Abandon ends the replies the device registered but never got to the
// server (it was killed before or during SendMessage): each is lost, with
// reason as its one attempt.
func (l *Ledger) Abandon(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range l.order {
		m, f := l.msgs[id], l.st[id]
		if m.Dir == Out && f.copies == 0 && !f.sendErr {
			f.sendErr = true
			m.Attempts = append(m.Attempts, Attempt{Delivery: id, Class: endpoint.Other, Err: reason})
		}
	}
	l.touch()
}

// outFailures is the failed decryptions of the device's message id so far
// by contact device dev, whose retry receipts count them (retry.go
// sendRetryReceipt counts per message on each device); for a message
// judged whole, by any device.
func (l *Ledger) outFailures(id, dev string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.touch()
	m, f := l.msg(id, "?", "", "")
	if !f.perDevice() {
		return f.failures
	}
	_, n := f.devState(m, dev)
	return n
}
