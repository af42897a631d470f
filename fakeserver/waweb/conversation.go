package waweb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/signalerror"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb/weblog"
)

// Conversation is the fake contacts on a Server: peers that send the device
// messages as WhatsApp delivers them (<message><enc type=pkmsg|msg>), keep
// each stanza until the device acknowledges it and redeliver it on the next
// login, answer the device's retry receipts as whatsmeow's
// handleRetryReceipt does, decrypt the device's replies and send retry
// receipts when they cannot. Every message and attempt goes to Ledger.
type Conversation struct {
	S *Server
	L *Ledger
	// SilentReinstall: a contact's reinstall is not notified to the device
	// (the model's contacts reinstall without a notification; the
	// comparison test measures what the notification changes).
	SilentReinstall bool

	mu        sync.Mutex // peers are not safe for concurrent use
	peers     map[string]*fakeserver.Peer
	inbound   map[string]*inbound
	pending   []string // inbound ids not yet acknowledged, in send order
	recreated map[string]bool
	receipts  []queuedReceipt // the peers' retry receipts for an offline device
	seq       int64
	hold      *holding // nil: every stanza goes at once (see Hold)
	// taken are the copies of each inbound message the device's
	// connection took and has not handled yet, oldest first (TakeCopy).
	taken map[string][]waBinary.Node
	// skdmSent are the peers whose sender key the device was sent.
	skdmSent map[string]bool
	// lowSent: the device was told it is low on prekeys (events.go).
	lowSent   bool
	notifySeq int
	addr      *addressing // PN and LID of each contact (address.go)
	lid       *lidSeen    // the forms seen, for Report (lidreport.go)
	// The account's own phone (migration.go): its stanzas' ids, those
	// waiting for the device's next login.
	phone      *fakeserver.Peer
	phoneSeq   int
	phoneIDs   map[string]bool
	phoneQueue []phoneStanza
}

type inbound struct {
	peer  *fakeserver.Peer
	body  string
	t     int64
	group string        // the group JID for a group message, else ""
	node  waBinary.Node // the latest copy
}

// NewConversation attaches a conversation to s.
func NewConversation(s *Server) *Conversation {
	cv := &Conversation{S: s, L: NewLedger(), peers: map[string]*fakeserver.Peer{},
		inbound: map[string]*inbound{}, recreated: map[string]bool{}, taken: map[string][]waBinary.Node{},
		addr: newAddressing(), phoneIDs: map[string]bool{}}
	s.mu.Lock()
	s.alias = cv.pnOf
	s.lidFor = cv.lidFor
	s.onNode = cv.onNode
	s.onLogin = cv.redeliver
	s.onClose = cv.disconnected
	s.mu.Unlock()
	return cv
}

// AddPeer creates a contact device with its own identity on a reference
// store, uploads its prekeys and lists it in usync answers.
func (cv *Conversation) AddPeer(ctx context.Context, user string, device uint16) (*fakeserver.Peer, error) {
	p, err := fakeserver.NewPeer(ctx, cv.S.Core, user, device)
	if err != nil {
		return nil, fmt.Errorf("waweb: peer %s.%d: %w", user, device, err)
	}
	cv.mu.Lock()
	cv.peers[p.JID.String()] = p
	cv.mu.Unlock()
	cv.LIDOf(p) // LIDs numbered in the order contacts are added
	cv.S.AddUser(p.JID)
	return p, nil
}

func (cv *Conversation) device() *protocol.SignalAddress { return cv.S.Device().SignalAddress() }

// Text is the plaintext of a text message as a WhatsApp client sends it.
func Text(body string) []byte {
	b, _ := proto.Marshal(&waE2E.Message{Conversation: proto.String(body)})
	return b
}

// Send encrypts body from p to the device as message id and delivers it
// (or keeps it for the next login when the device is offline).
func (cv *Conversation) Send(ctx context.Context, p *fakeserver.Peer, id, body string) error {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	in, err := cv.newInboundLocked(ctx, p, id, body)
	if err != nil {
		return err
	}
	return cv.deliverLocked(ctx, id, in, 0)
}

// newInboundLocked registers message id from p, with a session with the
// device (from a fetched bundle, as a WhatsApp client starts one).
func (cv *Conversation) newInboundLocked(ctx context.Context, p *fakeserver.Peer, id, body string) (*inbound, error) {
	if _, dup := cv.inbound[id]; dup || cv.L.Known(id) {
		return nil, fmt.Errorf("waweb: message id %s used twice", id)
	}
	dev := cv.device()
	has, err := p.Device.ContainsSession(ctx, dev)
	if err != nil {
		return nil, fmt.Errorf("waweb: %s: session with %s: %w", p.Name, dev, err)
	}
	if !has {
		b, err := cv.fetchDeviceBundleLocked()
		if err != nil {
			return nil, fmt.Errorf("waweb: %s: bundle of %s: %w", p.Name, dev, err)
		}
		if err := p.ProcessBundle(ctx, dev, b); err != nil {
			return nil, fmt.Errorf("waweb: %s: process bundle of %s: %w", p.Name, dev, err)
		}
	}
	cv.L.Expect(id, In, p.Name, body)
	cv.seq++
	in := &inbound{peer: p, body: body, t: time.Now().Unix()}
	cv.inbound[id] = in
	return in, nil
}

// deliverLocked encrypts the body again on the peer's session and sends it
// (a retry when count > 0).
func (cv *Conversation) deliverLocked(ctx context.Context, id string, in *inbound, count int) error {
	pt := Text(in.body)
	if in.group != "" {
		// The resend of a group message is a DM carrying the text and the
		// sender key distribution (retry.go handleRetryReceipt).
		var err error
		if pt, err = cv.skdmLocked(ctx, in, in.body); err != nil {
			return err
		}
	}
	kind, ct, err := in.peer.Encrypt(ctx, cv.device(), pt)
	if err != nil {
		return fmt.Errorf("waweb: %s: encrypt %s: %w", in.peer.Name, id, err)
	}
	enc := waBinary.Attrs{"v": "2", "type": kind}
	if count > 0 {
		enc["count"] = count
	}
	in.node = waBinary.Node{Tag: "message", Attrs: cv.attrs(id, in), Content: []waBinary.Node{{Tag: "enc", Attrs: enc, Content: ct}}}
	cv.noteInLocked(id, in.peer.Name, in.node)
	if cv.hold != nil && count == 0 {
		cv.holdInLocked(id, in.node)
		return nil
	}
	cv.pendingAddLocked(id)
	cv.pushLocked(id, in.node, kind, count)
	return nil
}

func (cv *Conversation) pendingAddLocked(id string) {
	for _, p := range cv.pending {
		if p == id {
			return
		}
	}
	cv.pending = append(cv.pending, id)
}

func (cv *Conversation) pendingDropLocked(id string) {
	for i, p := range cv.pending {
		if p == id {
			cv.pending = append(cv.pending[:i:i], cv.pending[i+1:]...)
			return
		}
	}
}

// pushLocked sends one copy; when no client is logged in the copy waits
// in the offline queue and counts when it is sent.
func (cv *Conversation) pushLocked(id string, n waBinary.Node, kind string, count int) {
	if !cv.S.send(n) {
		cv.S.logLine(weblog.QueueOffline, id)
		cv.L.update(id, func(f *flow) { f.offline = true })
		return
	}
	cv.S.logLine(weblog.Deliver, cv.tookLocked(id, n), kind, count)
	cv.taken[id] = append(cv.taken[id], n)
	cv.L.update(id, func(f *flow) { f.copies++; f.offline = false })
}

// TakeCopy returns the oldest copy of inbound message id the device's
// connection took and has not handled yet, and marks it handled: the
// stanza (its ciphertext) behind a failure the device reports. whatsmeow
// handles the stanzas of a connection one at a time in the order they came
// (client.go handlerQueueLoop), so the k-th copy of id it handles is the
// k-th it took.
func (cv *Conversation) TakeCopy(id string) (waBinary.Node, bool) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	return cv.takeCopyLocked(id)
}

func (cv *Conversation) takeCopyLocked(id string) (waBinary.Node, bool) {
	q := cv.taken[id]
	if len(q) == 0 {
		return waBinary.Node{}, false
	}
	cv.taken[id] = q[1:]
	return q[0], true
}

// redeliver is the offline queue on login: every stanza not acknowledged
// yet goes again, in order (the same ciphertext: the server does not know
// whether the device decrypted it).
func (cv *Conversation) redeliver() {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	for _, id := range cv.pending {
		in := cv.inbound[id]
		cv.pushLocked(id, in.node, fmt.Sprint(in.node.GetChildByTag("enc").Attrs["type"]), 0)
	}
	rs := cv.receipts
	cv.receipts = nil
	for i, r := range rs {
		if !cv.S.send(r.node) {
			cv.receipts = append(cv.receipts, rs[i:]...)
			return
		}
		cv.sentReceipt(r)
	}
	cv.offlineDoneLocked(len(cv.pending) + len(rs) + cv.redeliverPhoneLocked())
}

// disconnected: copies the device had not answered when its connection
// went are no longer expected to be (a killed device never will); they stay
// in the offline queue and go again on the next login.
func (cv *Conversation) disconnected() {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	for _, id := range cv.pending {
		cv.L.orphan(id)
	}
	clear(cv.taken) // never handled: they go again on the next login
	cv.L.disconnected()
	cv.S.logLine(weblog.Disconnected, len(cv.pending))
}

func (cv *Conversation) onNode(c *conn, n *waBinary.Node) bool {
	ctx := context.Background()
	switch n.Tag {
	case "receipt":
		cv.onReceipt(ctx, n)
	case "ack":
		id, _ := n.Attrs["id"].(string)
		class, _ := n.Attrs["class"].(string)
		if class == "receipt" || class == "notification" {
			// The device acknowledging a peer's receipt or a
			// notification: nothing for the server to do.
			if class == "receipt" {
				cv.S.logLine(weblog.AckReceipt, id)
			} else {
				cv.S.logLine(weblog.AckNotification, id)
			}
			return true
		}
		if class != "message" {
			return false
		}
		cv.mu.Lock()
		if cv.phoneStanzaLocked(id) {
			cv.mu.Unlock()
			cv.S.logLine(weblog.AckPhone, id)
			return true
		}
		if _, ok := cv.inbound[id]; ok {
			cv.pendingDropLocked(id)
		}
		cv.mu.Unlock()
		cv.S.logLine(weblog.Ack, id, n.Attrs["error"])
		cv.L.update(id, func(f *flow) { f.acks++ })
	case "message":
		cv.onMessage(ctx, c, n)
	case "presence", "chatstate":
		cv.S.logLine(weblog.FromDevice, n.Tag)
	default:
		return false
	}
	return true
}

func (cv *Conversation) onReceipt(ctx context.Context, n *waBinary.Node) {
	id, _ := n.Attrs["id"].(string)
	typ, _ := n.Attrs["type"].(string)
	cv.mu.Lock()
	phone := cv.phoneStanzaLocked(id)
	cv.mu.Unlock()
	if phone {
		// The own phone's stanza: not a message of the conversation. A
		// retry receipt for it is not answered (the phone is not modelled
		// past its one sync message).
		cv.S.logLine(weblog.ReceiptPhone, id, typ)
		return
	}
	if typ != "retry" {
		cv.mu.Lock()
		defer cv.mu.Unlock()
		cv.pendingDropLocked(id)
		if _, in := cv.inbound[id]; !in {
			cv.S.logLine(weblog.Receipt, id, typ)
			cv.L.update(id, func(f *flow) { f.receipt = true })
			return
		}
		if cv.L.Receipt(id) {
			cv.S.logLine(weblog.ReceiptIgnored, id, typ)
		} else {
			cv.S.logLine(weblog.Receipt, id, typ)
		}
		cv.takeCopyLocked(id)
		return
	}
	count := 0
	if r, ok := n.GetOptionalChildByTag("retry"); ok {
		count = r.AttrGetter().Int("count")
	}
	_, hasKeys := n.GetOptionalChildByTag("keys")
	cv.S.logLine(weblog.RetryReceipt, id, count, hasKeys)
	cv.L.update(id, func(f *flow) { f.retries++ })
	cv.mu.Lock()
	defer cv.mu.Unlock()
	in, ok := cv.inbound[id]
	if !ok {
		cv.S.logLine(weblog.ErrRetryUnknown, id)
		return
	}
	if err := cv.resendLocked(ctx, id, in, count, n); err != nil {
		cv.S.logLine(weblog.ErrRetry, id, err)
	}
}

// resendLocked is the peer answering a retry receipt as whatsmeow's
// handleRetryReceipt does (retry.go at the pinned commit): rebuild from the
// <keys> in the receipt when present; else fetch a bundle when it has no
// session, or at count >= 2 once (shouldRecreateSession: once an hour);
// else encrypt again on the session it has. The copy carries the count.
func (cv *Conversation) resendLocked(ctx context.Context, id string, in *inbound, count int, n *waBinary.Node) error {
	p, dev := in.peer, cv.device()
	var b *prekey.Bundle
	var why string
	if _, ok := n.GetOptionalChildByTag("keys"); ok {
		var err error
		if b, err = parseBundle(uint32(cv.S.Device().Device), *n); err != nil {
			return fmt.Errorf("keys in retry receipt: %w", err)
		}
		why = "keys in receipt"
	} else if has, err := p.Device.ContainsSession(ctx, dev); err != nil {
		return err
	} else if !has || (count >= 2 && !cv.recreated[p.Name]) {
		cv.recreated[p.Name] = true
		if b, err = cv.fetchDeviceBundleLocked(); err != nil {
			return err
		}
		why = "fetched bundle"
	}
	if b != nil {
		err := p.ProcessBundle(ctx, dev, b)
		if errors.Is(err, signalerror.ErrUntrustedIdentity) {
			p.IdentityChanges++
			if derr := p.Device.Identities.DeleteIdentity(ctx, dev.String()); derr != nil {
				return derr
			}
			err = p.ProcessBundle(ctx, dev, b)
		}
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		cv.S.logLine(weblog.PeerRebuilt, p.Name, id, why)
	}
	return cv.deliverLocked(ctx, id, in, count)
}

// onMessage routes the device's outgoing message to the peers and acks it.
func (cv *Conversation) onMessage(ctx context.Context, c *conn, n *waBinary.Node) {
	id, _ := n.Attrs["id"].(string)
	to, _ := n.Attrs["to"].(types.JID)
	if err := c.write(waBinary.Node{Tag: "ack", Attrs: waBinary.Attrs{"class": "message", "id": id,
		"from": to, "t": time.Now().Unix()}}); err != nil {
		cv.S.logLine(weblog.ErrAck, id, err)
	}
	type part struct {
		jid types.JID
		enc waBinary.Node
	}
	var parts []part
	if ps, ok := n.GetOptionalChildByTag("participants"); ok {
		for _, t := range ps.GetChildrenByTag("to") {
			jid, _ := t.Attrs["jid"].(types.JID)
			parts = append(parts, part{jid, t.GetChildByTag("enc")})
		}
		cv.expectCopies(id, to)
	} else if enc, ok := n.GetOptionalChildByTag("enc"); ok {
		parts = append(parts, part{to, enc}) // a resend on a retry receipt
	}
	for _, pt := range parts {
		cv.mu.Lock()
		cv.noteOutLocked(id, pt.jid, false)
		cv.mu.Unlock()
		if cv.holdOut(id, pt.jid, pt.enc) {
			continue
		}
		cv.mu.Lock()
		cv.toPeerLocked(ctx, id, pt.jid, pt.enc, true)
		cv.mu.Unlock()
	}
}

// toPeerLocked is the peer decrypting the device's message; counted says
// whether the copy is counted here (it was when it was held).
func (cv *Conversation) toPeerLocked(ctx context.Context, id string, jid types.JID, enc waBinary.Node, counted bool) {
	p, ok := cv.peerAt(jid)
	if !ok {
		cv.S.logLine(weblog.ErrUnknownDevice, id, jid)
		return
	}
	kind, _ := enc.Attrs["type"].(string)
	ct, _ := enc.Content.([]byte)
	count := enc.AttrGetter().OptionalInt("count")
	if counted {
		cv.L.update(id, func(f *flow) { f.copies++; f.toDevice(p.Name, false) })
	}
	dev := cv.device()
	pt, err := p.DecryptDM(ctx, dev, kind, ct)
	if errors.Is(err, signalerror.ErrUntrustedIdentity) && kind == endpoint.PkMsg {
		p.IdentityChanges++
		if derr := p.Device.Identities.DeleteIdentity(ctx, dev.String()); derr == nil {
			pt, err = p.DecryptDM(ctx, dev, kind, ct)
		}
	}
	if err != nil {
		class := endpoint.ClassOf(err)
		cv.S.logLine(weblog.PeerFailed, p.Name, id, kind, count, class)
		cv.L.AttemptBy(id, p.Name, false, "", class, err)
		if class == endpoint.OldCounter {
			return // whatsmeow drops an old counter silently, with a normal receipt
		}
		cv.retryToDeviceLocked(ctx, p, id)
		return
	}
	var m waE2E.Message
	if err := proto.Unmarshal(pt, &m); err != nil {
		cv.S.logLine(weblog.PeerNotProtobuf, p.Name, id)
		cv.L.AttemptBy(id, p.Name, false, "", endpoint.Other, fmt.Errorf("protobuf: %w", err))
		return
	}
	cv.S.logLine(weblog.PeerDecrypted, p.Name, id, kind, count)
	text := m.GetConversation()
	if text == "" {
		text = m.GetExtendedTextMessage().GetText() // Baileys sends a text as an extendedTextMessage
	}
	cv.L.AttemptBy(id, p.Name, true, text, "", nil)
	cv.receiptToDeviceLocked(p, id)
}

// retryToDeviceLocked is the peer's whatsmeow sending a retry receipt for
// a message from the device it could not decrypt: <keys> from count 2, none
// at count 5 (sendRetryReceipt, retry.go).
func (cv *Conversation) retryToDeviceLocked(ctx context.Context, p *fakeserver.Peer, id string) {
	failures := cv.L.outFailures(id, p.Name)
	if failures >= MaxRetries {
		cv.S.logLine(weblog.PeerNoMoreRetry, p.Name, id)
		return
	}
	kids := []waBinary.Node{
		{Tag: "retry", Attrs: waBinary.Attrs{"count": failures, "id": id, "t": time.Now().Unix(), "v": 1}},
		{Tag: "registration", Content: be32(p.Creds.RegistrationID)},
	}
	if failures > 1 {
		b, err := p.FreshBundle(ctx)
		if err != nil {
			cv.S.logLine(weblog.ErrFreshBundle, p.Name, err)
			return
		}
		kids = append(kids, waBinary.Node{Tag: "keys", Content: bundleNodes(b)})
	}
	n := waBinary.Node{Tag: "receipt", Attrs: waBinary.Attrs{"from": cv.addressOf(p), "id": id, "type": "retry",
		"t": time.Now().Unix()}, Content: kids}
	cv.noteOutLocked(id, cv.addressOf(p), true)
	r := queuedReceipt{peer: p.Name, id: id, count: failures, node: n}
	if !cv.S.send(n) {
		// Like the real server, keep it for the device's next login.
		cv.S.logLine(weblog.QueueRetry, id)
		cv.receipts = append(cv.receipts, r)
		return
	}
	cv.sentReceipt(r)
}

type queuedReceipt struct {
	peer  string
	id    string
	count int
	node  waBinary.Node
}

func (cv *Conversation) sentReceipt(r queuedReceipt) {
	cv.S.logLine(weblog.PeerRetry, r.peer, r.id, r.count, r.count > 1)
	cv.L.update(r.id, func(f *flow) { f.retries++ })
}

// expectCopies tells the ledger which contact devices the device's message
// id to user to is for: the devices the server lists for that user (what
// its usync answered; the list does not change during a run), one copy
// expected each (Ledger.ExpectCopies). A group message, or a user with one
// device, is judged whole as before.
func (cv *Conversation) expectCopies(id string, to types.JID) {
	if to.Server != types.DefaultUserServer && to.Server != types.HiddenUserServer {
		return
	}
	cv.S.mu.Lock()
	devs := append([]uint16(nil), cv.S.users[to.User]...)
	cv.S.mu.Unlock()
	var names []string
	cv.mu.Lock()
	for _, d := range devs {
		if p, ok := cv.peerAt(types.JID{User: to.User, Device: d, Server: to.Server}); ok {
			names = append(names, p.Name)
		}
	}
	cv.mu.Unlock()
	if len(names) >= 2 {
		cv.S.logLine(weblog.Expect, id, strings.Join(names, " "))
		cv.L.ExpectCopies(id, names)
	}
}
