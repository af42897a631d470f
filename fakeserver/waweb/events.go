package waweb

import (
	"context"
	"fmt"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb/weblog"
)

// What WhatsApp's server tells a logged-in device besides messages, in the
// shapes whatsmeow reads at the pinned commit: the end of the offline
// queue (connectionevents.go handleIB), a low count of one-time prekeys
// and a contact's identity change (notification.go
// handleEncryptNotification), a receipt for the device's own message
// (receipt.go handleReceipt), and a second login of the same device
// (connectionevents.go handleStreamError, conflict type=replaced).

// offlineDoneLocked tells the device the offline queue it was just sent
// (n stanzas) is complete: <ib><offline count=N/></ib>, which whatsmeow
// dispatches as events.OfflineSyncCompleted.
func (cv *Conversation) offlineDoneLocked(n int) {
	if cv.S.OfflineMarker {
		return // the server sent it right after the login (Server.OfflineMarker)
	}
	if cv.S.send(waBinary.Node{Tag: "ib", Content: []waBinary.Node{{Tag: "offline", Attrs: waBinary.Attrs{"count": n}}}}) {
		cv.S.logLine(weblog.OfflineDone, n)
	}
}

// fetchDeviceBundleLocked is a contact fetching the device's bundle (a
// one-time prekey claimed). When that leaves the device fewer than
// whatsmeow.MinPreKeyCount, the server says so, once until it has enough
// again: <notification type=encrypt><count value=N/></notification>, on
// which whatsmeow uploads a new batch when the count is below that same
// constant (notification.go:36 at the pinned commit; prekeys.go:29 defines
// it). The threshold is whatsmeow's own variable, not a copy of its value;
// WhatsApp's real server policy is not public (the once-until-enough rule
// is this server's).
func (cv *Conversation) fetchDeviceBundleLocked() (*prekey.Bundle, error) {
	dev := cv.device()
	b, err := cv.S.Core.FetchBundle(dev)
	if err != nil {
		return nil, err
	}
	left := len(cv.S.Core.Unclaimed(dev))
	if cv.S.PreKeyCount != nil {
		// The count the server reports for the device, as a count query
		// answers it (the Baileys socket keeps it at five or more).
		left = cv.S.PreKeyCount(left)
	}
	switch {
	case left >= whatsmeow.MinPreKeyCount:
		cv.lowSent = false
	case !cv.lowSent:
		cv.notifySeq++
		n := waBinary.Node{Tag: "notification", Attrs: waBinary.Attrs{"from": types.ServerJID, "type": "encrypt",
			"id": fmt.Sprintf("n%d", cv.notifySeq), "t": time.Now().Unix()},
			Content: []waBinary.Node{{Tag: "count", Attrs: waBinary.Attrs{"value": left}}}}
		if cv.S.send(n) {
			cv.lowSent = true
			cv.S.logLine(weblog.NotifyPreKeys, cv.S.Device(), left)
		}
	}
	return b, nil
}

// Reinstall is contact p reinstalling WhatsApp: a new identity key and
// registration id (fakeserver.Peer.Reinstall), and the server's
// notification to the device, <notification from=P type=encrypt><identity/>,
// on which whatsmeow deletes the contact's identities and sessions. Its
// next message is a prekey message under the new identity, and its sender
// key goes to the device again.
func (cv *Conversation) Reinstall(ctx context.Context, p *fakeserver.Peer) error {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if err := p.Reinstall(ctx); err != nil {
		return fmt.Errorf("waweb: %s: reinstall: %w", p.Name, err)
	}
	delete(cv.skdmSent, p.Name)
	delete(cv.recreated, p.Name)
	if cv.SilentReinstall {
		cv.S.logLine(weblog.IdentitySilent, p.Name)
		return nil
	}
	cv.notifySeq++
	n := waBinary.Node{Tag: "notification", Attrs: waBinary.Attrs{"from": cv.addressOf(p).ToNonAD(), "type": "encrypt",
		"id": fmt.Sprintf("n%d", cv.notifySeq), "t": time.Now().Unix()}, Content: []waBinary.Node{{Tag: "identity"}}}
	if cv.S.send(n) {
		cv.S.logLine(weblog.NotifyIdentity, p.Name)
	} else {
		cv.S.logLine(weblog.IdentityOffline, p.Name)
	}
	return nil
}

// Rekey is contact p starting a new session with the device from a fresh
// bundle, its identity kept (fakeserver.Peer.Rekey).
func (cv *Conversation) Rekey(ctx context.Context, p *fakeserver.Peer) error {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if err := p.Rekey(ctx, cv.device()); err != nil {
		return fmt.Errorf("waweb: %s: rekey: %w", p.Name, err)
	}
	cv.S.logLine(weblog.PeerRekeyed, p.Name)
	return nil
}

// receiptToDeviceLocked is the receipt a contact's phone sends when it got
// the device's message id: <receipt from=P id=ID>, a delivery receipt.
func (cv *Conversation) receiptToDeviceLocked(p *fakeserver.Peer, id string) {
	n := waBinary.Node{Tag: "receipt", Attrs: waBinary.Attrs{"from": cv.addressOf(p), "id": id, "t": time.Now().Unix()}}
	if cv.S.send(n) {
		cv.S.logLine(weblog.PeerReceipt, id, p.Name)
	}
}

// replaced tells a connection that another login of its device took over:
// <stream:error><conflict type=replaced/></stream:error>. whatsmeow
// dispatches events.StreamReplaced and does not reconnect.
//
// The connection is left open for its client to close (Close closes what
// is left). whatsmeow handles the stanza on its handler queue (whatsmeow
// 11cf47c62d32 client.go:785-796, connectionevents.go:48-51
// expectDisconnect), while its read pump takes a close at once: a close
// right behind the stanza on loopback won that race under load, and the
// client saw an unexpected disconnect and reconnected, replacing the
// second login in turn (CI, TestSecondLoginConflict). Over a real network
// the close arrives later.
//
// A connection already closing when the login displaced it (a Kick whose
// close had not yet reached the server's state, the client quicker to log
// in again: seen under load, TestDropReconnects) is no conflict: it went,
// and the conversation is told so here, before the new login's offline
// queue (lost): its close no longer finds it current and would not.
func (s *Server) replaced(c *conn) {
	if c.ctx.Err() != nil {
		s.lost(c)
		c.close()
		return
	}
	if err := c.write(waBinary.Node{Tag: "stream:error", Content: []waBinary.Node{{Tag: "conflict",
		Attrs: waBinary.Attrs{"type": "replaced"}}}}); err != nil {
		s.lost(c)
		c.close()
		return
	}
	s.logLine(weblog.Conflict)
	s.mu.Lock()
	c.gone = true // a conflict: its copies stay its client's (as before)
	closed := s.closed
	if !closed {
		s.replacedConns = append(s.replacedConns, c)
	}
	s.mu.Unlock()
	if closed {
		c.close()
	}
}

// lost tells the conversation that c, which a login displaced, went
// (onClose), once.
func (s *Server) lost(c *conn) {
	s.mu.Lock()
	on := s.onClose
	if c.gone {
		on = nil
	}
	c.gone = true
	s.mu.Unlock()
	if on != nil {
		on()
	}
}
