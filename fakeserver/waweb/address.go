package waweb

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.mau.fi/libsignal/protocol"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb/weblog"
)

// Addressing (docs/lid.md §1.9). Every stanza the server writes names a
// contact through addressOf, and every JID the device writes is resolved
// through peerAt. A contact user has two addresses: its phone-number JID
// (PN, alice@s.whatsapp.net) and a linked identity (LID, 900001@lid); its
// devices are alice:1@s.whatsapp.net and 900001:1@lid. Which form a stanza
// uses is the contact's Phase and each contact device's Via; the contacts'
// own sessions with the device do not change (a real phone keeps one
// session with the bot's device whatever the envelope says).

// Phase is what the server knows and says of a contact user.
type Phase string

const (
	// PhasePN: the server names the contact by its PN only (what it did
	// before LIDs; no alternative address on any stanza).
	PhasePN Phase = "pn"
	// PhaseMixed: either form, chosen per stanza (Via, default PN); a PN
	// stanza carries sender_lid, a LID stanza sender_pn (group stanzas
	// participant_lid / participant_pn with addressing_mode).
	PhaseMixed Phase = "mixed"
	// PhaseLID: the contact's stanzas come from its LID (Via default LID).
	PhaseLID Phase = "lid"
)

// ParsePhase checks a phase name.
func ParsePhase(s string) (Phase, error) {
	switch p := Phase(s); p {
	case PhasePN, PhaseMixed, PhaseLID:
		return p, nil
	}
	return "", fmt.Errorf("unknown phase %q (known: pn, mixed, lid)", s)
}

// addressing is the LID state of a conversation, under its own lock: it is
// read while cv.mu is held and while it is not.
type addressing struct {
	mu    sync.Mutex
	lids  map[string]string // PN user → LID user
	pns   map[string]string // LID user → PN user
	phase map[string]Phase  // PN user → phase (absent: PN only)
	via   map[string]string // contact device name → "pn" or "lid" (absent: the phase's default)
	// migrated: the account's LID migration was sent (migration.go).
	migrated bool
}

func newAddressing() *addressing {
	return &addressing{lids: map[string]string{}, pns: map[string]string{}, phase: map[string]Phase{}, via: map[string]string{}}
}

// lidUser gives user its LID (900001, 900002, … in the order contacts are
// added: deterministic for a schedule's contact list).
func (a *addressing) lidUser(user string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l, ok := a.lids[user]; ok {
		return l
	}
	l := fmt.Sprintf("9%05d", len(a.lids)+1)
	a.lids[user], a.pns[l] = l, user
	return l
}

// LIDOf is the LID JID of contact device p (900001:1@lid).
func (cv *Conversation) LIDOf(p *fakeserver.Peer) types.JID {
	return types.JID{User: cv.addr.lidUser(p.JID.User), Device: p.JID.Device, Server: types.HiddenUserServer}
}

// SetPhase sets contact user's phase from now on. Leaving PN only, the
// server lists the user's devices under its LID too (usync of a LID user).
func (cv *Conversation) SetPhase(user string, ph Phase) {
	cv.addr.mu.Lock()
	cv.addr.phase[user] = ph
	cv.addr.mu.Unlock()
	if ph != PhasePN {
		cv.mu.Lock()
		var devs []*fakeserver.Peer
		for _, p := range cv.peers {
			if p.JID.User == user {
				devs = append(devs, p)
			}
		}
		cv.mu.Unlock()
		slices.SortFunc(devs, func(a, b *fakeserver.Peer) int { return int(a.JID.Device) - int(b.JID.Device) })
		for _, p := range devs {
			cv.S.AddUser(cv.LIDOf(p)) // usync of the LID user lists them
		}
	}
	cv.S.logLine(weblog.Phase, user, ph)
}

// SetVia sets the form contact device p's next stanzas and receipts use:
// "pn" or "lid" ("" for the phase's default). A stanza keeps the form it
// was queued with (a redelivery is the same stanza).
func (cv *Conversation) SetVia(p *fakeserver.Peer, form string) {
	cv.addr.mu.Lock()
	if form == "" {
		delete(cv.addr.via, p.Name)
	} else {
		cv.addr.via[p.Name] = form
	}
	cv.addr.mu.Unlock()
	cv.S.logLine(weblog.Via, p.Name, form)
}

// form is the envelope form of p's next stanza and the phase of its user.
func (cv *Conversation) form(p *fakeserver.Peer) (lid bool, ph Phase) {
	cv.addr.mu.Lock()
	ph = cv.addr.phase[p.JID.User]
	via := cv.addr.via[p.Name]
	cv.addr.mu.Unlock()
	switch ph {
	case PhaseMixed:
		return via == "lid", ph
	case PhaseLID:
		return via != "pn", ph
	}
	return false, PhasePN // a contact the server knows by its PN only
}

// addressOf is the JID the server names contact device p by in its next
// stanza (a retry receipt, a receipt, a chat state, a notification).
func (cv *Conversation) addressOf(p *fakeserver.Peer) types.JID {
	if lid, _ := cv.form(p); lid {
		return cv.LIDOf(p)
	}
	return p.JID
}

// envelope sets the sender attributes of a stanza from p (message.go
// parseMessageSource at the pinned whatsmeow, docs/lid.md §1.2): a DM from
// the PN with sender_lid, or from the LID with sender_pn; a group stanza's
// participant with participant_lid, or under addressing_mode lid with
// participant_pn. PN only: from the PN and nothing else.
func (cv *Conversation) envelope(a waBinary.Attrs, p *fakeserver.Peer, group string) {
	lid, ph := cv.form(p)
	from, alt, altKey := p.JID, types.JID{}, ""
	if lid {
		from, alt, altKey = cv.LIDOf(p), p.JID.ToNonAD(), "pn"
	} else if ph != PhasePN {
		alt, altKey = cv.LIDOf(p).ToNonAD(), "lid"
	}
	if group == "" {
		a["from"] = from
		if altKey != "" {
			a["sender_"+altKey] = alt
		}
		return
	}
	a["from"], a["participant"] = GroupJID(group), from
	if altKey == "" {
		return
	}
	if lid {
		a["addressing_mode"] = "lid"
		a["participant_pn"] = p.JID // with the device: message.go takes the sender's device anyway
	} else {
		a["participant_lid"] = cv.LIDOf(p)
	}
}

// peerAt is the contact the device addresses as jid, under either form.
func (cv *Conversation) peerAt(jid types.JID) (*fakeserver.Peer, bool) {
	if jid.Server == types.HiddenUserServer {
		cv.addr.mu.Lock()
		pn, ok := cv.addr.pns[jid.User]
		cv.addr.mu.Unlock()
		if !ok {
			return nil, false
		}
		jid = types.JID{User: pn, Device: jid.Device, Server: types.DefaultUserServer}
	}
	p, ok := cv.peers[jid.String()]
	return p, ok
}

// pnOf is the PN device JID the server keeps a LID device's prekeys under
// (the LID of a contact device, or jid itself).
func (cv *Conversation) pnOf(jid types.JID) types.JID {
	if jid.Server != types.HiddenUserServer {
		return jid
	}
	cv.addr.mu.Lock()
	pn, ok := cv.addr.pns[jid.User]
	cv.addr.mu.Unlock()
	if !ok {
		return jid
	}
	return types.JID{User: pn, Device: jid.Device, Server: types.DefaultUserServer}
}

// Mapping tells the device p's user's LID without a message: the devices
// notification whatsmeow stores the pair from
// (<notification type=devices from=PN lid=LID/>, notification.go
// handleDeviceNotification at the pinned commit, docs/lid.md §1.3). It
// reports false when the device is offline (not kept).
func (cv *Conversation) Mapping(p *fakeserver.Peer) bool {
	cv.mu.Lock()
	cv.notifySeq++
	id := fmt.Sprintf("n%d", cv.notifySeq)
	cv.mu.Unlock()
	n := waBinary.Node{Tag: "notification", Attrs: waBinary.Attrs{"from": p.JID.ToNonAD(), "lid": cv.LIDOf(p).ToNonAD(),
		"type": "devices", "id": id, "t": time.Now().Unix()}}
	ok := cv.S.send(n)
	if ok {
		cv.mu.Lock()
		cv.seen().told[p.JID.User] = true
		cv.mu.Unlock()
		cv.S.logLine(weblog.NotifyMapping, p.JID.ToNonAD(), cv.LIDOf(p).ToNonAD())
	} else {
		cv.S.logLine(weblog.MappingOffline, p.Name)
	}
	return ok
}

// Forget is contact device p dropping its session with the device (its
// next decrypt of the device's message fails, and it sends a retry
// receipt, under the form of its Via; docs/lid.md §3.3).
func (cv *Conversation) Forget(ctx context.Context, p *fakeserver.Peer) error {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	dev := cv.device()
	if err := p.Device.Sessions.DeleteSession(ctx, dev.String()); err != nil {
		return fmt.Errorf("waweb: %s: forget session: %w", p.Name, err)
	}
	cv.S.logLine(weblog.PeerForgot, p.Name, dev)
	return nil
}

// prekeyAddress is the Signal address the server keeps jid's prekeys
// under: a contact's LID device's are its PN device's (one install, one
// bundle, docs/lid.md §1.7).
func (s *Server) prekeyAddress(jid types.JID) *protocol.SignalAddress {
	s.mu.Lock()
	alias := s.alias
	s.mu.Unlock()
	if alias != nil {
		jid = alias(jid)
	}
	return jid.SignalAddress()
}
