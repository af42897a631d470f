package harness

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
)

// Contacts is the harness side of a run, the same whatever the device under
// test: the fake server, the contacts' devices (fakeserver.Peer) set up
// from the schedule, the messages the oracle follows with every attempt at
// them, the copies the device took (for dup), the receives completed per
// contact (the View's HeardFrom) and the history. The model (Run), the
// child process and the Baileys adapter hold one each and keep only their
// device side: how a delivery is decrypted, a reply encrypted, a retry
// receipt counted and keyed, a task stepped, a crash and a restart
// (docs/design.md §4.1).
//
// Its methods may be called from several goroutines (the model's free
// mode): they lock what they touch. The peers themselves are driven from
// the run's goroutine only.
type Contacts struct {
	rules  ContactRules
	srv    *fakeserver.Server
	device *protocol.SignalAddress // where the contacts send
	peers  map[string]*fakeserver.Peer
	names  []string // peer names in the schedule's contact order
	byAddr map[string]*fakeserver.Peer

	mu    sync.Mutex // guards what follows
	msgs  map[string]*Message
	order []string
	// copies are the inbound deliveries the device took, by id (for dup);
	// taken their ids in the order first taken.
	copies map[string]*fakeserver.Delivery
	taken  []string
	// received counts completed receives per peer address, for generators
	// that only reply to contacts the bot has heard from.
	received map[string]int
	history  []string
}

// ContactRules are where a device's harness side deliberately differs from
// the model's. The zero value is the model's (whatsmeow's rules).
type ContactRules struct {
	// ContactOrder lists Peers in the schedule's contact order rather
	// than sorted.
	ContactOrder bool
	// DeliveredAsTaken lists as Delivered every delivery the device took,
	// once, as it took it, rather than the attempts completed: a device
	// whose receives park mid-task can be sent a dup of one still running.
	DeliveredAsTaken bool
	// Receipts is the retry-receipt rule of the contacts.
	Receipts ReceiptRule
}

// ReceiptRule is how the contacts send retry receipts for what they cannot
// decrypt, and how their answers to the device's receipts are logged.
type ReceiptRule int

const (
	// WhatsmeowReceipts: whatsmeow's sendRetryReceipt (retry.go), counted
	// per message by the contact's RetryCounter, none from MaxRetries,
	// keys from count 2; every answer to the device's receipts is logged.
	WhatsmeowReceipts ReceiptRule = iota
	// FreshBundleReceipts: the Baileys adapter's contacts: the count is
	// the delivery's retry + 1, none once it reached MaxRetries, always
	// with a fresh bundle; only an answer that queues a resend is logged.
	FreshBundleReceipts
)

// NewContacts makes the harness side of a run with its fake server; the
// peers come later (AddPeers), once the device is registered, so the
// peers' keys are drawn after the device's from the run's random stream.
func NewContacts(rules ContactRules) *Contacts {
	return &Contacts{rules: rules, srv: fakeserver.New(), peers: map[string]*fakeserver.Peer{},
		byAddr: map[string]*fakeserver.Peer{}, msgs: map[string]*Message{},
		copies: map[string]*fakeserver.Delivery{}, received: map[string]int{}}
}

// Server is the run's fake server.
func (c *Contacts) Server() *fakeserver.Server { return c.srv }

// AddPeers sets up the contacts' devices, in order, sending to device.
func (c *Contacts) AddPeers(ctx context.Context, device *protocol.SignalAddress, contacts []Contact) error {
	c.device = device
	for _, ct := range contacts {
		for dev := range ct.Devices {
			p, err := fakeserver.NewPeer(ctx, c.srv, ct.User, uint16(dev))
			if err != nil {
				return fmt.Errorf("peer %s: %w", ct.User, err)
			}
			c.peers[p.Name] = p
			c.names = append(c.names, p.Name)
			c.byAddr[p.Address().String()] = p
		}
	}
	return nil
}

// Peer is the contact device named name ("alice.0").
func (c *Contacts) Peer(name string) (*fakeserver.Peer, bool) {
	p, ok := c.peers[name]
	return p, ok
}

// PeerAt is the contact device at addr, nil for none.
func (c *Contacts) PeerAt(addr *protocol.SignalAddress) *fakeserver.Peer {
	return c.byAddr[addr.String()]
}

// Peers returns the peer names, sorted (or in contact order, by the rules).
func (c *Contacts) Peers() []string {
	if c.rules.ContactOrder {
		return append([]string(nil), c.names...)
	}
	var out []string
	for n := range c.peers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// HeardFrom reports how many receives from peer have completed.
func (c *Contacts) HeardFrom(peer string) int {
	p, ok := c.peers[peer]
	if !ok {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.received[p.Address().String()]
}

// Pending are the queued deliveries both ways.
func (c *Contacts) Pending() (inbound, outbound []string) { return c.srv.Pending() }

// Delivered lists the inbound deliveries the device took so far (for dup):
// the attempts completed, by message (or as taken, by the rules).
func (c *Contacts) Delivered() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rules.DeliveredAsTaken {
		return append([]string(nil), c.taken...)
	}
	var out []string
	for _, id := range c.order {
		m := c.msgs[id]
		if m.Dir == In {
			for _, a := range m.Attempts {
				out = append(out, a.Delivery)
			}
		}
	}
	return out
}

// Logf appends a history line.
func (c *Contacts) Logf(format string, a ...any) { c.LogLine(fmt.Sprintf(format, a...)) }

// LogLine appends a history line; the model's store-call trace, the
// hottest caller, builds its line by concatenation rather than fmt.
func (c *Contacts) LogLine(line string) {
	c.mu.Lock()
	c.history = append(c.history, line)
	c.mu.Unlock()
}

func (c *Contacts) log(format string, a ...any) { c.Logf(format, a...) }
func (c *Contacts) logLine(line string)         { c.LogLine(line) }

// Send applies a send or group op (SendOp, GroupOp): the contact encrypts
// the op's message to the device and the server queues it (group: in the
// schedule's group, "group" when it names none). An unknown contact, a
// message id already used or another op does nothing; an error is the
// contact's.
func (c *Contacts) Send(ctx context.Context, op Op, group string) error {
	var peer, msg string
	isGroup := false
	switch o := op.(type) {
	case SendOp:
		peer, msg = o.Peer, o.Msg
	case GroupOp:
		peer, msg, isGroup = o.Peer, o.Msg, true
	default:
		return nil
	}
	p, ok := c.peers[peer]
	if !ok {
		return nil
	}
	if c.Message(msg) != nil {
		return nil
	}
	body := "hello " + msg
	var d *fakeserver.Delivery
	var err error
	if isGroup {
		if group == "" {
			group = "group"
		}
		d, err = p.SendGroup(ctx, c.device, group, msg, body)
	} else {
		d, err = p.Send(ctx, c.device, msg, body)
	}
	if err != nil {
		return err
	}
	c.addMessage(&Message{ID: msg, Dir: In, Peer: p.Name, Body: body})
	c.log("%s: %s %s", op, d.Kind, d.ID)
	return nil
}

// Reply applies the harness side of a reply op (the device checks first
// that it is up and has the op's instance): the message is added and gets
// its first delivery id, for the device to encrypt body to p. ok is false
// when the op does not apply (an unknown contact, a message id in use).
func (c *Contacts) Reply(op ReplyOp) (p *fakeserver.Peer, msg, id, body string, ok bool) {
	p, ok = c.peers[op.Peer]
	if !ok {
		return nil, "", "", "", false
	}
	msg = op.Msg
	if c.Message(msg) != nil {
		return nil, "", "", "", false
	}
	body = "reply " + msg
	c.addMessage(&Message{ID: msg, Dir: Out, Peer: p.Name, Body: body})
	id, _ = c.srv.NextCopy(msg)
	c.log("%s", op)
	return p, msg, id, body, true
}

// Dup applies a dup op: a delivery the device took is queued again.
func (c *Contacts) Dup(op DupOp) {
	c.mu.Lock()
	d := c.copies[op.ID]
	c.mu.Unlock()
	if d == nil {
		return
	}
	cp := c.srv.Redeliver(d)
	c.log("%s: queued %s", op, cp.ID)
}

// Reinstall applies a reinstall op: the contact comes back with a new
// identity and registration id. An error is the contact's.
func (c *Contacts) Reinstall(ctx context.Context, op ReinstallOp) error {
	p, ok := c.peers[op.Peer]
	if !ok {
		return nil
	}
	if err := p.Reinstall(ctx); err != nil {
		return err
	}
	c.byAddr[p.Address().String()] = p
	c.log("%s: new identity and registration id", op)
	return nil
}

// Rekey applies a rekey op: the contact starts a new session with the
// device from a fresh bundle, same identity. An error is the contact's.
func (c *Contacts) Rekey(ctx context.Context, op RekeyOp) error {
	p, ok := c.peers[op.Peer]
	if !ok {
		return nil
	}
	if err := p.Rekey(ctx, c.device); err != nil {
		return err
	}
	c.log("%s: new session from a fresh bundle, same identity", op)
	return nil
}

// Inbound takes from the server the delivery to the device a deliver op
// names and logs the op; nil when it is not queued (the op does nothing).
func (c *Contacts) Inbound(op DeliverOp) *fakeserver.Delivery {
	d := c.srv.TakeInbound(op.ID)
	if d != nil {
		c.log("%s", op)
	}
	return d
}

// Outbound takes from the server the delivery to a contact a read op
// names and logs the op; nil when it is not queued (the op does nothing).
func (c *Contacts) Outbound(op ReadOp) *fakeserver.Delivery {
	d := c.srv.TakeOutbound(op.ID)
	if d != nil {
		c.log("%s", op)
	}
	return d
}

// DrainStep is one step of a drain's deliveries, logged: the first queued
// to the device goes to take (unless the device is down), else the first
// queued to a contact to read. done is true when nothing was left for it.
func (c *Contacts) DrainStep(down bool, take, read func(*fakeserver.Delivery) error) (done bool, err error) {
	ins, outs := c.srv.Pending()
	switch {
	case len(ins) > 0 && !down:
		d := c.srv.TakeInbound(ins[0])
		c.logLine(drainPrefix + DeliverOp{ID: d.ID}.String())
		return false, take(d)
	case len(outs) > 0:
		d := c.srv.TakeOutbound(outs[0])
		c.logLine(drainPrefix + ReadOp{ID: d.ID}.String())
		return false, read(d)
	}
	return true, nil
}

// Message is the message with id, nil for none.
func (c *Contacts) Message(id string) *Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs[id]
}

func (c *Contacts) addMessage(m *Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs[m.ID] = m
	c.order = append(c.order, m.ID)
}

// Took notes that the device took delivery d (for dup).
func (c *Contacts) Took(d *fakeserver.Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.copies[d.ID] == nil {
		c.taken = append(c.taken, d.ID)
	}
	c.copies[d.ID] = d
}

// Received records the device's attempt a at delivery d. When a.OK, pl is
// the plaintext: it is wrong unless it is the message sent (a.Wrong already
// set stays: a plaintext that did not decode), and the contact was heard
// from.
func (c *Contacts) Received(d *fakeserver.Delivery, a Attempt, pl fakeserver.Payload) {
	if a.OK {
		m := c.Message(d.Msg)
		a.Wrong = a.Wrong || pl.ID != d.Msg || pl.Body != m.Body
		c.mu.Lock()
		c.received[d.From.String()]++
		c.mu.Unlock()
	}
	c.record(d.Msg, a)
}

// Decrypted records a device's answer from another process to delivery d
// (Received): ok with plaintext pt, wrong when it does not decode; or
// failed with class and message. It returns the attempt.
func (c *Contacts) Decrypted(d *fakeserver.Delivery, ok bool, pt []byte, class endpoint.Class, msg string) Attempt {
	a := Attempt{Delivery: d.ID, OK: ok}
	var pl fakeserver.Payload
	if ok {
		var err error
		pl, err = fakeserver.DecodePayload(pt)
		a.Wrong = err != nil
	} else {
		a.Class, a.Err = class, msg
	}
	c.Received(d, a, pl)
	return a
}

func (c *Contacts) record(msg string, a Attempt) {
	c.mu.Lock()
	m := c.msgs[msg]
	m.Attempts = append(m.Attempts, a)
	c.mu.Unlock()
	c.logLine(AttemptLine(a))
}

// PeerReceipt is a contact's retry receipt for a delivery from the device
// it could not decrypt: the device handles it (re-encrypts Msg's Body to
// Peer, from Bundle when there is one) as the delivery ID.
type PeerReceipt struct {
	Peer      *fakeserver.Peer
	Msg, Body string
	ID        string
	Count     int
	Bundle    *prekey.Bundle
}

// Read is the contact taking delivery d from the device; the attempt is
// recorded. A failure other than old counter gives a retry receipt by the
// rules (nil when none goes out); an error is the contact's.
func (c *Contacts) Read(ctx context.Context, d *fakeserver.Delivery) (*PeerReceipt, error) {
	p := c.byAddr[d.To.String()]
	pl, err := p.Read(ctx, d)
	m := c.Message(d.Msg)
	a := Attempt{Delivery: d.ID, OK: err == nil}
	if err != nil {
		a.Class, a.Err = endpoint.ClassOf(err), err.Error()
	} else {
		a.Wrong = pl.ID != d.Msg || pl.Body != m.Body
	}
	c.record(d.Msg, a)
	if err == nil || a.Class == endpoint.OldCounter {
		return nil, nil
	}
	rc := &PeerReceipt{Peer: p, Msg: d.Msg, Body: m.Body}
	keys := false
	switch c.rules.Receipts {
	case FreshBundleReceipts:
		if d.Retry >= fakeserver.MaxRetries {
			return nil, nil
		}
		rc.Count, keys = d.Retry+1, true
	default:
		rc.Count = p.Retries.Next(d.Msg, d.Retry)
		if rc.Count >= fakeserver.MaxRetries {
			c.log("%s: no retry receipt for %s (count %d)", p.Name, d.ID, rc.Count)
			return nil, nil
		}
		keys = fakeserver.WantsKeys(rc.Count, false)
	}
	if keys {
		if rc.Bundle, err = p.FreshBundle(ctx); err != nil {
			return nil, fmt.Errorf("peer %s: fresh bundle: %w", p.Name, err)
		}
	}
	rc.ID, _ = c.srv.NextCopy(d.Msg)
	note := ""
	if rc.Bundle != nil && c.rules.Receipts == WhatsmeowReceipts {
		note = " with keys"
	}
	c.log("%s: retry %d of %s to the device%s, resent as %s", p.Name, rc.Count, d.Msg, note, rc.ID)
	return rc, nil
}

// Answer is the contact at peer answering the device's retry receipt for
// msg (count, keys b) as whatsmeow's handleRetryReceipt does
// (fakeserver.Peer.Retry): the resend is queued to the device.
func (c *Contacts) Answer(ctx context.Context, peer *protocol.SignalAddress, msg string, count int, b *prekey.Bundle) error {
	p := c.byAddr[peer.String()]
	d, err := p.Retry(ctx, c.device, msg, count, b)
	if err != nil {
		return fmt.Errorf("peer %s answering retry %d of %s: %w", p.Name, count, msg, err)
	}
	switch {
	case c.rules.Receipts == FreshBundleReceipts:
		if d != nil {
			c.log("%s: retry %d of %s queued as %s (%s)", p.Name, count, msg, d.ID, d.Kind)
		}
	case d == nil:
		c.log("%s: drops retry %d of %s", p.Name, count, msg)
	case d.Rebuilt != "":
		c.log("%s: retry %d of %s queued as %s (%s, %s)", p.Name, count, msg, d.ID, d.Kind, d.Rebuilt)
	default:
		c.log("%s: retry %d of %s queued as %s (%s)", p.Name, count, msg, d.ID, d.Kind)
	}
	return nil
}

// ToPeer queues a delivery the device encrypted for p (kind, ct) as id; a
// delivery id "r3.2" is copy 2.
func (c *Contacts) ToPeer(p *fakeserver.Peer, msg, id string, retry int, kind string, ct []byte) {
	c.srv.ToPeer(&fakeserver.Delivery{ID: id, Msg: msg, Copy: copyOf(id), Retry: retry, From: c.device, To: p.Address(), Kind: kind, CT: ct})
}

// copyOf is the copy number of a delivery id ("r3.2": 2; "r3": 1).
func copyOf(id string) int {
	n := 1
	if i := strings.LastIndexByte(id, '.'); i >= 0 {
		fmt.Sscanf(id[i+1:], "%d", &n)
	}
	return n
}

// Result is the run's history and messages, in the order they were added;
// the device adds its crash and restart outcomes.
func (c *Contacts) Result() *Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := &Result{History: append([]string(nil), c.history...)}
	for _, id := range c.order {
		res.Messages = append(res.Messages, c.msgs[id])
	}
	return res
}
