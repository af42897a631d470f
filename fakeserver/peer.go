package fakeserver

import (
	"context"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/signalerror"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/endpoint"
)

// Peer is one device of a contact: its own identity on a reference store.
// Peers are driven from one goroutine and never yield.
type Peer struct {
	*endpoint.Endpoint
	Name   string // "alice.0"
	srv    *Server
	sent   map[string]Payload
	group  map[string]string // message id -> group, for group messages
	skdmTo map[string]bool
	// Retries counts the receipts the peer sends for the device's
	// messages; Handler is its side of the device's receipts.
	Retries RetryCounter
	Handler RetryHandler
	// IdentityChanges counts the times the peer accepted a new identity key
	// for the device ("security code changed").
	IdentityChanges int
	signal          *peerSignal // the send path's store (peerstore.go)
}

// NewPeer creates a contact device with fresh credentials, uploads its
// prekeys to srv and returns it.
func NewPeer(ctx context.Context, srv *Server, user string, device uint16) (*Peer, error) {
	e, err := install(ctx, srv, types.JID{User: user, Server: types.DefaultUserServer, Device: device})
	if err != nil {
		return nil, err
	}
	return &Peer{Endpoint: e, signal: newPeerSignal(e), Name: fmt.Sprintf("%s.%d", user, device), srv: srv,
		sent: make(map[string]Payload), group: make(map[string]string), skdmTo: make(map[string]bool)}, nil
}

// install is a fresh WhatsApp install of jid: new credentials on a new
// reference store, 20 one-time prekeys uploaded to srv.
func install(ctx context.Context, srv *Server, jid types.JID) (*endpoint.Endpoint, error) {
	e, err := endpoint.OnReference(ctx, jid)
	if err != nil {
		return nil, err
	}
	pks, err := e.Device.PreKeys.GetOrGenPreKeys(ctx, 20)
	if err != nil {
		return nil, err
	}
	srv.Upload(e.Address(), e.Bundle, pks)
	return e, nil
}

// Reinstall is the contact reinstalling WhatsApp: a new identity key and
// registration id, a new empty store, new prekeys on the server. Messages
// it already sent can still be resent on a retry receipt (from the new
// install, as a phone's backup restores chat history).
func (p *Peer) Reinstall(ctx context.Context) error {
	// The old install's prekeys go with it: the same ids come again in the
	// new one, with other keys.
	p.srv.Forget(p.Address())
	e, err := install(ctx, p.srv, p.JID)
	if err != nil {
		return err
	}
	p.Endpoint, p.signal = e, newPeerSignal(e)
	p.skdmTo = make(map[string]bool)
	p.Retries, p.Handler = RetryCounter{}, RetryHandler{} // a new process
	return nil
}

// Rekey starts a new outgoing session with to from a fresh bundle, keeping
// the contact's identity: its next message is a pkmsg with a new base key,
// and the device archives its current state for it (libsignal keeps up to
// 40 archived states: records grow as on a long-lived account).
func (p *Peer) Rekey(ctx context.Context, to *protocol.SignalAddress) error {
	b, err := p.srv.FetchBundle(to)
	if err != nil {
		return err
	}
	return p.ProcessBundle(ctx, to, b)
}

// ensureSession fetches the device's bundle if there is no session yet, as a
// WhatsApp client does before its first message to a device.
func (p *Peer) ensureSession(ctx context.Context, to *protocol.SignalAddress) error {
	has, err := p.Device.ContainsSession(ctx, to)
	if err != nil || has {
		return err
	}
	b, err := p.srv.FetchBundle(to)
	if err != nil {
		return err
	}
	return p.ProcessBundle(ctx, to, b)
}

func (p *Peer) encryptTo(ctx context.Context, to *protocol.SignalAddress, pl Payload) (string, []byte, error) {
	if err := p.ensureSession(ctx, to); err != nil {
		return "", nil, fmt.Errorf("%s: session with %s: %w", p.Name, to, err)
	}
	return p.Encrypt(ctx, to, pl.Encode())
}

// Send encrypts a direct message and queues it for the device.
func (p *Peer) Send(ctx context.Context, to *protocol.SignalAddress, msg, body string) (*Delivery, error) {
	pl := Payload{ID: msg, Body: body}
	kind, ct, err := p.encryptTo(ctx, to, pl)
	if err != nil {
		return nil, err
	}
	p.sent[msg] = pl
	id, n := p.srv.NextCopy(msg)
	d := &Delivery{ID: id, Msg: msg, Copy: n, From: p.Address(), To: to, Kind: kind, CT: ct}
	p.srv.ToDevice(d)
	return d, nil
}

// SendGroup encrypts a group message with the peer's sender key. The first
// one to a device also carries the distribution message in a DM part.
func (p *Peer) SendGroup(ctx context.Context, to *protocol.SignalAddress, group, msg, body string) (*Delivery, error) {
	pl := Payload{ID: msg, Body: body}
	// Creating the distribution message creates the sender key on first use.
	skdm, err := p.SenderKeyDistribution(ctx, group)
	if err != nil {
		return nil, err
	}
	ct, err := p.GroupEncrypt(ctx, group, pl.Encode())
	if err != nil {
		return nil, err
	}
	p.sent[msg] = pl
	p.group[msg] = group
	id, n := p.srv.NextCopy(msg)
	d := &Delivery{ID: id, Msg: msg, Copy: n, From: p.Address(), To: to, Kind: endpoint.SkMsg, CT: ct, Group: group}
	if !p.skdmTo[to.String()] {
		d.DMKind, d.DMCT, err = p.encryptTo(ctx, to, Payload{ID: msg + "/skdm", SKDM: skdm})
		if err != nil {
			return nil, err
		}
		p.skdmTo[to.String()] = true
	}
	p.srv.ToDevice(d)
	return d, nil
}

// Retry answers a retry receipt for msg with count retry as whatsmeow's
// handleRetryReceipt does (retry.go): with <keys> (b non-nil) rebuild the
// session from them; without, rebuild from a fetched bundle only when
// ShouldRecreate says so, else re-encrypt on the existing session. The
// resend is a DM carrying the retry count; for a group message it also
// carries the peer's sender key distribution. It returns nil when the
// receipt is dropped (the tenth for one message) or past MaxRetries.
func (p *Peer) Retry(ctx context.Context, to *protocol.SignalAddress, msg string, retry int, b *prekey.Bundle) (*Delivery, error) {
	if retry > MaxRetries {
		return nil, nil
	}
	pl, ok := p.sent[msg]
	if !ok {
		return nil, fmt.Errorf("%s: retry for unknown message %s", p.Name, msg)
	}
	if !p.Handler.Admit(to, msg) {
		return nil, nil
	}
	rebuilt := ""
	if b != nil {
		rebuilt = "rebuilt from the receipt's keys"
	} else if reason, ok := p.Handler.ShouldRecreate(ctx, p.Endpoint, to, retry); ok {
		var err error
		if b, err = p.srv.FetchBundle(to); err != nil {
			return nil, fmt.Errorf("%s: fetching a bundle for %s: %w", p.Name, msg, err)
		}
		rebuilt = "rebuilt from a fetched bundle: " + reason
	}
	if b != nil {
		err := p.ProcessBundle(ctx, to, b)
		if errors.Is(err, signalerror.ErrUntrustedIdentity) && p.acceptNewIdentity(ctx, to) {
			err = p.ProcessBundle(ctx, to, b)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: rebuild for %s: %w", p.Name, msg, err)
		}
	}
	group := p.group[msg]
	if group != "" {
		skdm, err := p.SenderKeyDistribution(ctx, group)
		if err != nil {
			return nil, err
		}
		pl.SKDM = skdm
	}
	kind, ct, err := p.Encrypt(ctx, to, pl.Encode())
	if err != nil {
		return nil, fmt.Errorf("%s: encrypting retry %d of %s: %w", p.Name, retry, msg, err)
	}
	id, n := p.srv.NextCopy(msg)
	d := &Delivery{ID: id, Msg: msg, Copy: n, Retry: retry, From: p.Address(), To: to, Kind: kind, CT: ct, Group: group, Rebuilt: rebuilt}
	p.srv.ToDevice(d)
	return d, nil
}

// Read decrypts a delivery from the device.
func (p *Peer) Read(ctx context.Context, d *Delivery) (Payload, error) {
	pt, err := p.DecryptDM(ctx, d.From, d.Kind, d.CT)
	if errors.Is(err, signalerror.ErrUntrustedIdentity) && d.Kind == endpoint.PkMsg && p.acceptNewIdentity(ctx, d.From) {
		pt, err = p.DecryptDM(ctx, d.From, d.Kind, d.CT)
	}
	if err != nil {
		return Payload{}, err
	}
	return DecodePayload(pt)
}

// acceptNewIdentity is what a WhatsApp client does when a contact's
// identity key changes (a reinstall, or a bot that lost its creds): show
// "security code changed" and trust the new key. It reports whether there
// was an identity to forget.
func (p *Peer) acceptNewIdentity(ctx context.Context, addr *protocol.SignalAddress) bool {
	p.IdentityChanges++
	return p.Device.Identities.DeleteIdentity(ctx, addr.String()) == nil
}

// FreshBundle is the bundle a peer puts in its retry receipt: a new one-time
// prekey generated for the purpose.
func (p *Peer) FreshBundle(ctx context.Context) (*prekey.Bundle, error) {
	pk, err := p.Device.PreKeys.GenOnePreKey(ctx)
	if err != nil {
		return nil, err
	}
	return p.Bundle(pk), nil
}
