package waweb

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waLidMigrationSyncPayload"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"

	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb/weblog"
)

// The account's own LID and its LID migration (docs/lid.md §1.4, §6.1).
//
// whatsmeow at the pinned commit switches a send to a PN contact to the
// contact's LID once Store.LIDMigrationTimestamp is set (send.go:325-347).
// It sets that timestamp once, from a ProtocolMessage of type
// LID_MIGRATION_MAPPING_SYNC sent by the account's own phone
// (message.go:786-806, handleProtocolMessage returns early unless
// IsFromMe; storeLIDSyncMessage, message.go:927-964, saves
// chatDbMigrationTimestamp and stores the payload's pnToLidMappings). The
// switched send needs the bot's own LID (ownID = getOwnLID,
// send.go:346), which whatsmeow learns from <success lid=…>
// (connectionevents.go:163-180), and the contact's LID, from its store
// (GetLIDForPN) or else from a usync <lid/> query answered with
// <lid val=…> (GetUserInfo, user.go:203-251).

// MigrationTimestamp is the chatDbMigrationTimestamp the own phone's sync
// message carries (whatsmeow only checks it is above 0): a constant, so a
// schedule's runs are the same byte for byte.
const MigrationTimestamp = 1767225600 // 2026-01-01T00:00:00Z

// SetOwnLID gives the device's account a LID user (800001): <success>
// carries it from the next login on (lid=800001:<device>@lid). Without it
// no login names a LID, as before LIDs.
func (s *Server) SetOwnLID(user string) {
	s.mu.Lock()
	s.ownLID = user
	s.mu.Unlock()
}

// ownLIDOf is the LID JID of device dev of the account, or empty.
func (s *Server) ownLIDOf(dev types.JID) types.JID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ownLID == "" {
		return types.EmptyJID
	}
	return types.JID{User: s.ownLID, Device: dev.Device, Server: types.HiddenUserServer}
}

// successAttrs are the attributes of the <success> a login gets.
func (s *Server) successAttrs(dev types.JID) waBinary.Attrs {
	a := waBinary.Attrs{"t": time.Now().Unix()}
	if lid := s.ownLIDOf(dev); !lid.IsEmpty() {
		a["lid"] = lid
	}
	return a
}

// lidFor is the LID a usync <lid/> query is answered with for PN user
// jid: the account's own once the account is migrated, a contact's once
// the server speaks both forms of it (its phase is not pn) or the account
// is migrated. A Baileys run sets a phase only in a LID schedule and
// never migrates (devices/baileys/socketlid.go), so its other usync
// answers are unchanged.
func (cv *Conversation) lidFor(jid types.JID) (types.JID, bool) {
	if jid.Server != types.DefaultUserServer {
		return types.EmptyJID, false
	}
	cv.addr.mu.Lock()
	migrated := cv.addr.migrated
	l, ok := cv.addr.lids[jid.User]
	ph := cv.addr.phase[jid.User]
	cv.addr.mu.Unlock()
	if jid.User == cv.S.Device().User {
		own := cv.S.ownLIDOf(types.JID{})
		return own, migrated && !own.IsEmpty()
	}
	if !ok || (!migrated && (ph == "" || ph == PhasePN)) {
		return types.EmptyJID, false
	}
	return types.JID{User: l, Server: types.HiddenUserServer}, true
}

// phoneStanza is a stanza from the account's own phone waiting for the
// device's next login.
type phoneStanza struct {
	id   string
	node waBinary.Node
}

// Migrate is the account's LID migration as whatsmeow learns it: the
// bot's own phone (device 0 of the account's user, a peer the server keeps
// out of every usync list and out of the Ledger) sends the device a
// ProtocolMessage LID_MIGRATION_MAPPING_SYNC with chatDbMigrationTimestamp
// MigrationTimestamp and the pairs of every numeric PN user it knows (the
// account's own; contacts named by a word have no number to send and are
// left to the store or usync). From then on every contact's devices are
// listed under its LID and usync <lid/> answers every contact's LID.
// When the device is offline the stanza waits for its next login, as the
// offline queue keeps it; Migrate reports whether it went now.
func (cv *Conversation) Migrate(ctx context.Context) (bool, error) {
	dev := cv.S.Device()
	own := cv.S.ownLIDOf(dev)
	if own.IsEmpty() {
		return false, fmt.Errorf("waweb: migrate: the account has no LID (Server.SetOwnLID before the first login)")
	}
	cv.addr.mu.Lock()
	cv.addr.migrated = true
	cv.addr.mu.Unlock()

	cv.mu.Lock()
	defer cv.mu.Unlock()
	peers := slices.SortedFunc(maps.Values(cv.peers), func(a, b *fakeserver.Peer) int { return strings.Compare(a.JID.String(), b.JID.String()) })
	pairs := []*waLidMigrationSyncPayload.LIDMigrationMapping{}
	if m := numericPair(dev.User, own.User); m != nil {
		pairs = append(pairs, m)
	}
	paired := map[string]bool{}
	for _, p := range peers {
		lid := cv.LIDOf(p)
		cv.S.AddUser(lid) // usync of the LID user lists the device
		if m := numericPair(p.JID.User, lid.User); m != nil && !paired[p.JID.User] {
			paired[p.JID.User] = true
			pairs = append(pairs, m)
		}
	}
	payload, err := proto.Marshal(&waLidMigrationSyncPayload.LIDMigrationMappingSyncPayload{
		PnToLidMappings: pairs, ChatDbMigrationTimestamp: proto.Uint64(MigrationTimestamp)})
	if err != nil {
		return false, err
	}
	msg, err := proto.Marshal(&waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
		Type:                           waE2E.ProtocolMessage_LID_MIGRATION_MAPPING_SYNC.Enum(),
		LidMigrationMappingSyncMessage: &waE2E.LIDMigrationMappingSyncMessage{EncodedMappingPayload: payload}}})
	if err != nil {
		return false, err
	}
	phone, err := cv.phoneLocked(ctx)
	if err != nil {
		return false, err
	}
	kind, ct, err := phone.Encrypt(ctx, cv.device(), msg)
	if err != nil {
		return false, fmt.Errorf("waweb: own phone: encrypt the LID migration: %w", err)
	}
	cv.phoneSeq++
	id := fmt.Sprintf("lidsync%d", cv.phoneSeq)
	cv.phoneIDs[id] = true
	n := waBinary.Node{Tag: "message", Attrs: waBinary.Attrs{"from": phone.JID, "id": id, "t": time.Now().Unix(),
		"type": "text", "category": "peer"}, Content: []waBinary.Node{{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": kind}, Content: ct}}}
	cv.S.logLine(weblog.PhoneMigration, phone.JID, id, kind, len(pairs), MigrationTimestamp)
	if !cv.S.send(n) {
		cv.S.logLine(weblog.QueueOffline, id)
		cv.phoneQueue = append(cv.phoneQueue, phoneStanza{id: id, node: n})
		return false, nil
	}
	cv.S.logLine(weblog.DeliverPhone, id, kind)
	return true, nil
}

// phoneLocked is the account's own phone (device 0 of the device's user),
// with a session with the device (from a fetched bundle, as a phone starts
// one).
func (cv *Conversation) phoneLocked(ctx context.Context) (*fakeserver.Peer, error) {
	dev := cv.device()
	if cv.phone == nil {
		p, err := fakeserver.NewPeer(ctx, cv.S.Core, cv.S.Device().User, 0)
		if err != nil {
			return nil, fmt.Errorf("waweb: own phone: %w", err)
		}
		cv.phone = p
	}
	has, err := cv.phone.Device.ContainsSession(ctx, dev)
	if err != nil {
		return nil, err
	}
	if !has {
		b, err := cv.fetchDeviceBundleLocked()
		if err != nil {
			return nil, fmt.Errorf("waweb: own phone: bundle of %s: %w", dev, err)
		}
		if err := cv.phone.ProcessBundle(ctx, dev, b); err != nil {
			return nil, fmt.Errorf("waweb: own phone: process bundle of %s: %w", dev, err)
		}
	}
	return cv.phone, nil
}

// phoneStanzaLocked reports whether id is a stanza of the own phone (its
// receipts and acks are not the Ledger's).
func (cv *Conversation) phoneStanzaLocked(id string) bool { return cv.phoneIDs[id] }

// redeliverPhoneLocked sends the own phone's stanzas kept while the device
// was offline, and how many went.
func (cv *Conversation) redeliverPhoneLocked() int {
	q := cv.phoneQueue
	cv.phoneQueue = nil
	for i, ps := range q {
		if !cv.S.send(ps.node) {
			cv.phoneQueue = append(cv.phoneQueue, q[i:]...)
			return i
		}
		cv.S.logLine(weblog.DeliverQueued, ps.id)
	}
	return len(q)
}

// numericPair is a payload pair for PN user pn and LID user lid, nil when
// either is not a number (the payload carries them as integers).
func numericPair(pn, lid string) *waLidMigrationSyncPayload.LIDMigrationMapping {
	p, err1 := strconv.ParseUint(pn, 10, 64)
	l, err2 := strconv.ParseUint(lid, 10, 64)
	if err1 != nil || err2 != nil {
		return nil
	}
	return &waLidMigrationSyncPayload.LIDMigrationMapping{Pn: proto.Uint64(p), AssignedLid: proto.Uint64(l)}
}
