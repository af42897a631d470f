package waweb

import (
	"context"
	"fmt"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
)

// Group messages, as WhatsApp delivers them to a member device (whatsmeow
// message.go decryptMessages, decryptGroupMsg, processProtocolParts at the
// pinned commit): <message from=GROUP@g.us participant=SENDER> with the
// sender's skmsg (its sender key, libsignal's group cipher) and, the first
// time the sender writes to the device, a DM part (pkmsg or msg) whose
// message is the sender key distribution.

// GroupJID is the JID of the group called name.
func GroupJID(name string) types.JID { return types.JID{User: name, Server: types.GroupServer} }

// attrs are the attributes of a copy of message id.
func (cv *Conversation) attrs(id string, in *inbound) waBinary.Attrs {
	a := waBinary.Attrs{"id": id, "t": in.t, "type": "text"}
	cv.envelope(a, in.peer, in.group)
	return a
}

// SendGroup has p send body as message id to the group named group: an
// skmsg under p's sender key, with the distribution in a DM part when the
// device has not had it from p yet. Like Send, it queues the stanza.
func (cv *Conversation) SendGroup(ctx context.Context, p *fakeserver.Peer, group, id, body string) error {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	in, err := cv.newInboundLocked(ctx, p, id, body)
	if err != nil {
		return err
	}
	in.group = group
	gid := GroupJID(group).String()
	// The distribution, taken before the message is encrypted, starts at
	// the message's own iteration (and creates the sender key on first use).
	skdm, err := skdmMessage(ctx, p, gid, "")
	if err != nil {
		return err
	}
	ct, err := p.GroupEncrypt(ctx, gid, Text(body))
	if err != nil {
		return fmt.Errorf("waweb: %s: group encrypt %s: %w", p.Name, id, err)
	}
	var kids []waBinary.Node
	if cv.skdmSent == nil {
		cv.skdmSent = map[string]bool{}
	}
	if !cv.skdmSent[p.Name] {
		kind, dct, err := p.Encrypt(ctx, cv.device(), skdm)
		if err != nil {
			return fmt.Errorf("waweb: %s: encrypt the distribution with %s: %w", p.Name, id, err)
		}
		kids = append(kids, waBinary.Node{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": kind}, Content: dct})
		cv.skdmSent[p.Name] = true
	}
	kids = append(kids, waBinary.Node{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": endpoint.SkMsg}, Content: ct})
	in.node = waBinary.Node{Tag: "message", Attrs: cv.attrs(id, in), Content: kids}
	cv.noteInLocked(id, in.peer.Name, in.node)
	if cv.hold != nil {
		cv.holdInLocked(id, in.node)
		return nil
	}
	cv.pendingAddLocked(id)
	cv.pushLocked(id, in.node, endpoint.SkMsg, 0)
	return nil
}

// skdmLocked is the message carrying in's sender's distribution for its
// group, with text when it is not empty (a resend).
func (cv *Conversation) skdmLocked(ctx context.Context, in *inbound, text string) ([]byte, error) {
	return skdmMessage(ctx, in.peer, GroupJID(in.group).String(), text)
}

// skdmMessage is p's distribution for group gid as a message, with text
// when it is not empty.
func skdmMessage(ctx context.Context, p *fakeserver.Peer, gid, text string) ([]byte, error) {
	skdm, err := p.SenderKeyDistribution(ctx, gid)
	if err != nil {
		return nil, fmt.Errorf("waweb: %s: sender key distribution for %s: %w", p.Name, gid, err)
	}
	m := &waE2E.Message{SenderKeyDistributionMessage: &waE2E.SenderKeyDistributionMessage{GroupID: proto.String(gid),
		AxolotlSenderKeyDistributionMessage: skdm}}
	if text != "" {
		m.Conversation = proto.String(text)
	}
	return proto.Marshal(m)
}
