package fakeserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"

	"go.mau.fi/libsignal/keys/chain"
	"go.mau.fi/libsignal/keys/message"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/whatsmeow/store"

	"github.com/badmac/badmac/endpoint"
)

var pb = store.SignalProtobufSerializer

// peerSignal is a peer's libsignal store on its send path (Encrypt and
// ProcessBundle): whatsmeow's store.Device, except that a session it
// stored is loaded back from a copy of its structure instead of decoding
// the JSON again, as long as the store still holds the bytes written with
// it. Peers are not under test (docs/design.md §9): this only skips
// work. The store still receives every record as whatsmeow's JSON, so
// everything else that reads it (the peer's decrypts, ShouldRecreate, a
// retry's rebuild through endpoint) sees the same bytes, and anything that
// wrote other bytes since makes the next load decode them as before.
//
// A copy of the structure is what the JSON round trip yields, nil and
// empty slices and pointers told apart as encoding/json tells them apart
// (TestPeerLoadIsJSONRoundTrip pins it): the loaded record is a new
// object, never the one stored, because libsignal mutates a loaded record
// even on a decrypt that fails (handing back the live record changed the
// default run's table, README "Benchmark").
type peerSignal struct {
	*store.Device
	last map[string]storedSession
	// Reused counts the loads that skipped the decode.
	Reused int
}

type storedSession struct {
	raw []byte                   // the bytes PutSession was given
	st  *record.SessionStructure // their structure, before JSON
}

func newPeerSignal(dev *store.Device) *peerSignal {
	return &peerSignal{Device: dev, last: make(map[string]storedSession)}
}

// LoadSession is store.Device.LoadSession (whatsmeow store/signal.go at
// v0.0.0-20251217143725-11cf47c62d32) with the decode skipped when the
// bytes are the ones StoreSession last wrote. Peers never run with
// whatsmeow's context session cache, so that branch is left out.
func (s *peerSignal) LoadSession(ctx context.Context, address *protocol.SignalAddress) (*record.Session, error) {
	addr := address.String()
	raw, err := s.Sessions.GetSession(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("failed to load session with %s: %w", addr, err)
	}
	if raw == nil {
		return record.NewSession(pb.Session, pb.State), nil
	}
	if c, ok := s.last[addr]; ok && bytes.Equal(c.raw, raw) {
		s.Reused++
		return record.NewSessionFromStructure(copySession(c.st), pb.Session, pb.State)
	}
	sess, err := record.NewSessionFromBytes(raw, pb.Session, pb.State)
	if err != nil {
		return nil, fmt.Errorf("failed to deserialize session with %s: %w", addr, err)
	}
	return sess, nil
}

// StoreSession is store.Device.StoreSession: the record's JSON
// (record.Session.Serialize is json.Marshal of its Structure) to the store.
func (s *peerSignal) StoreSession(ctx context.Context, address *protocol.SignalAddress, rec *record.Session) error {
	addr := address.String()
	st := rec.Structure()
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("failed to serialize session with %s: %w", addr, err)
	}
	delete(s.last, addr)
	if err := s.Sessions.PutSession(ctx, addr, raw); err != nil {
		return fmt.Errorf("failed to store session with %s: %w", addr, err)
	}
	// Not copied here: libsignal builds the structure from fresh slices
	// (bytehelper.ArrayToSlice of arrays passed by value) or from keys it
	// replaces rather than changes, and the record is dropped after its
	// store; every load copies it.
	s.last[addr] = storedSession{raw: raw, st: st}
	return nil
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
