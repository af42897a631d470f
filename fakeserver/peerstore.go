package fakeserver

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"

	"go.mau.fi/libsignal/keys/chain"
	"go.mau.fi/libsignal/keys/message"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/endpoint"
)

var pb = store.SignalProtobufSerializer

// peerSignal is a peer's libsignal store on its send path (Encrypt and
// ProcessBundle): whatsmeow's store.Device, except that a session it
// stores is kept as its structure (peerSessions) and loaded back from a
// copy of it, instead of a JSON encode on every store and a decode on
// every load. Peers are not under test (docs/design.md §9): this only
// skips work. Whatever else reads the peer's sessions (its decrypts,
// ShouldRecreate, a rebuild through endpoint) goes through peerSessions,
// which first writes the pending structure as the JSON whatsmeow would
// have written (json.Marshal of record.Session.Structure, which is what
// record.Session.Serialize does): the same bytes, written later.
//
// A copy of the structure is what a JSON round trip yields, nil and empty
// slices and pointers told apart as encoding/json tells them apart
// (TestPeerLoadIsJSONRoundTrip pins it): the loaded record is a new
// object, never the one stored, because libsignal mutates a loaded record
// even on a decrypt that fails (handing back the live record changed the
// default run's table, docs/bench.md).
type peerSignal struct {
	*store.Device
	sessions *peerSessions
	// Reused counts the loads that skipped the decode.
	Reused int
}

// newPeerSignal puts peerSessions under e's store.Device and returns the
// send path's store.
func newPeerSignal(e *endpoint.Endpoint) *peerSignal {
	ps := &peerSessions{SessionStore: e.Probe.Set.Sessions, pending: make(map[string]*record.SessionStructure)}
	e.Probe.Set.Sessions = ps
	return &peerSignal{Device: e.Device, sessions: ps}
}

// LoadSession is store.Device.LoadSession (whatsmeow store/signal.go at
// v0.0.0-20251217143725-11cf47c62d32) with the decode skipped for a
// session stored through peerSignal. Peers never run with whatsmeow's
// context session cache, so that branch is left out.
func (s *peerSignal) LoadSession(ctx context.Context, address *protocol.SignalAddress) (*record.Session, error) {
	addr := address.String()
	if st, ok := s.sessions.pending[addr]; ok {
		s.Reused++
		return record.NewSessionFromStructure(copySession(st), pb.Session, pb.State)
	}
	return s.Device.LoadSession(ctx, address)
}

// StoreSession keeps the record's structure; peerSessions encodes it when
// something reads it as bytes. Not copied: libsignal builds the structure
// from fresh slices (bytehelper.ArrayToSlice of arrays passed by value) or
// from keys it replaces rather than changes, the record is dropped after
// its store, and every load copies it.
func (s *peerSignal) StoreSession(ctx context.Context, address *protocol.SignalAddress, rec *record.Session) error {
	s.sessions.pending[address.String()] = rec.Structure()
	return nil
}

// peerSessions is a peer's session store: the reference store, with the
// sessions peerSignal stored kept as structures until something asks for
// bytes.
type peerSessions struct {
	store.SessionStore
	pending map[string]*record.SessionStructure
}

func (s *peerSessions) flush(ctx context.Context, addr string) error {
	st, ok := s.pending[addr]
	if !ok {
		return nil
	}
	delete(s.pending, addr)
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("failed to serialize session with %s: %w", addr, err)
	}
	return s.SessionStore.PutSession(ctx, addr, raw)
}

func (s *peerSessions) flushAll(ctx context.Context) error {
	for _, addr := range slices.Sorted(maps.Keys(s.pending)) {
		if err := s.flush(ctx, addr); err != nil {
			return err
		}
	}
	return nil
}

func (s *peerSessions) GetSession(ctx context.Context, address string) ([]byte, error) {
	if err := s.flush(ctx, address); err != nil {
		return nil, err
	}
	return s.SessionStore.GetSession(ctx, address)
}

func (s *peerSessions) HasSession(ctx context.Context, address string) (bool, error) {
	if _, ok := s.pending[address]; ok {
		return true, nil
	}
	return s.SessionStore.HasSession(ctx, address)
}

func (s *peerSessions) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	for _, a := range addresses {
		if err := s.flush(ctx, a); err != nil {
			return nil, err
		}
	}
	return s.SessionStore.GetManySessions(ctx, addresses)
}

func (s *peerSessions) PutSession(ctx context.Context, address string, session []byte) error {
	delete(s.pending, address)
	return s.SessionStore.PutSession(ctx, address, session)
}

func (s *peerSessions) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	for a := range sessions {
		delete(s.pending, a)
	}
	return s.SessionStore.PutManySessions(ctx, sessions)
}

func (s *peerSessions) DeleteSession(ctx context.Context, address string) error {
	delete(s.pending, address)
	return s.SessionStore.DeleteSession(ctx, address)
}

func (s *peerSessions) DeleteAllSessions(ctx context.Context, phone string) error {
	if err := s.flushAll(ctx); err != nil {
		return err
	}
	return s.SessionStore.DeleteAllSessions(ctx, phone)
}

func (s *peerSessions) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	if err := s.flushAll(ctx); err != nil {
		return err
	}
	return s.SessionStore.MigratePNToLID(ctx, pn, lid)
}

// encrypt is endpoint.Encrypt over the peer's store.
func (p *Peer) encrypt(ctx context.Context, remote *protocol.SignalAddress, plaintext []byte) (kind string, ct []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			re, ok := r.(runtime.Error)
			if !ok {
				panic(r)
			}
			kind, ct, err = "", nil, &endpoint.Failure{Class: endpoint.NoSession, Err: fmt.Errorf("libsignal encrypt: %v", re)}
		}
	}()
	cipher := session.NewCipher(session.NewBuilderFromSignal(p.signal, remote, pb), remote)
	msg, err := cipher.Encrypt(ctx, endpoint.Pad(plaintext))
	if err != nil {
		return "", nil, err
	}
	if msg.Type() == protocol.PREKEY_TYPE {
		return endpoint.PkMsg, msg.Serialize(), nil
	}
	return endpoint.Msg, msg.Serialize(), nil
}

// Encrypt pads and encrypts plaintext for remote over the peer's session,
// as endpoint.Endpoint.Encrypt does.
func (p *Peer) Encrypt(ctx context.Context, remote *protocol.SignalAddress, plaintext []byte) (string, []byte, error) {
	return p.encrypt(ctx, remote, plaintext)
}

// ProcessBundle starts a new outgoing session with remote from its bundle,
// as endpoint.Endpoint.ProcessBundle does, over the peer's store.
func (p *Peer) ProcessBundle(ctx context.Context, remote *protocol.SignalAddress, b *prekey.Bundle) error {
	return session.NewBuilderFromSignal(p.signal, remote, pb).ProcessBundle(ctx, b)
}

func copySession(s *record.SessionStructure) *record.SessionStructure {
	if s == nil {
		return nil
	}
	out := &record.SessionStructure{SessionState: copyState(s.SessionState)}
	if s.PreviousStates != nil {
		out.PreviousStates = make([]*record.StateStructure, len(s.PreviousStates))
		for i, st := range s.PreviousStates {
			out.PreviousStates[i] = copyState(st)
		}
	}
	return out
}

func copyState(s *record.StateStructure) *record.StateStructure {
	if s == nil {
		return nil
	}
	out := *s
	out.LocalIdentityPublic = copyBytes(s.LocalIdentityPublic)
	out.RemoteIdentityPublic = copyBytes(s.RemoteIdentityPublic)
	out.RootKey = copyBytes(s.RootKey)
	out.SenderBaseKey = copyBytes(s.SenderBaseKey)
	out.SenderChain = copyChain(s.SenderChain)
	if s.ReceiverChains != nil {
		out.ReceiverChains = make([]*record.ChainStructure, len(s.ReceiverChains))
		for i, c := range s.ReceiverChains {
			out.ReceiverChains[i] = copyChain(c)
		}
	}
	if k := s.PendingKeyExchange; k != nil {
		out.PendingKeyExchange = &record.PendingKeyExchangeStructure{
			Sequence:                k.Sequence,
			LocalBaseKeyPublic:      copyBytes(k.LocalBaseKeyPublic),
			LocalBaseKeyPrivate:     copyBytes(k.LocalBaseKeyPrivate),
			LocalRatchetKeyPublic:   copyBytes(k.LocalRatchetKeyPublic),
			LocalRatchetKeyPrivate:  copyBytes(k.LocalRatchetKeyPrivate),
			LocalIdentityKeyPublic:  copyBytes(k.LocalIdentityKeyPublic),
			LocalIdentityKeyPrivate: copyBytes(k.LocalIdentityKeyPrivate),
		}
	}
	if p := s.PendingPreKey; p != nil {
		out.PendingPreKey = &record.PendingPreKeyStructure{SignedPreKeyID: p.SignedPreKeyID, BaseKey: copyBytes(p.BaseKey)}
		if p.PreKeyID != nil {
			id := *p.PreKeyID
			out.PendingPreKey.PreKeyID = &id
		}
	}
	return &out
}

func copyChain(c *record.ChainStructure) *record.ChainStructure {
	if c == nil {
		return nil
	}
	out := &record.ChainStructure{
		SenderRatchetKeyPublic:  copyBytes(c.SenderRatchetKeyPublic),
		SenderRatchetKeyPrivate: copyBytes(c.SenderRatchetKeyPrivate),
	}
	if c.ChainKey != nil {
		out.ChainKey = &chain.KeyStructure{Key: copyBytes(c.ChainKey.Key), Index: c.ChainKey.Index}
	}
	if c.MessageKeys != nil {
		out.MessageKeys = make([]*message.KeysStructure, len(c.MessageKeys))
		for i, k := range c.MessageKeys {
			if k != nil {
				out.MessageKeys[i] = &message.KeysStructure{CipherKey: copyBytes(k.CipherKey), MacKey: copyBytes(k.MacKey), IV: copyBytes(k.IV), Index: k.Index}
			}
		}
	}
	return out
}

// copyBytes keeps nil apart from empty, as a JSON round trip does (null
// and "").
func copyBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
