// Package fakeserver is the fake side of WhatsApp: contacts with their own
// Signal identities and reference stores (Peer), and the server between them
// and the device under test (Server) that hands out prekey bundles, queues
// deliveries offline until they are taken, and routes retry receipts.
//
// Nothing here opens a socket: the harness calls it directly.
package fakeserver

import (
	"encoding/binary"
	"fmt"
	"sync"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/whatsmeow/util/keys"
)

// Payload is what a message carries inside its encryption: an id the oracle
// checks, a body, and optionally a sender key distribution message.
type Payload struct {
	ID   string
	Body string
	SKDM []byte
}

// Encode returns the wire form of p: id and body each length-prefixed
// (uvarint), then the distribution message. (It was JSON: 4% of a run's
// CPU went to encoding/json for a three-field record.)
func (p Payload) Encode() []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(p.ID)+len(p.Body)+len(p.SKDM))
	b = binary.AppendUvarint(b, uint64(len(p.ID)))
	b = append(b, p.ID...)
	b = binary.AppendUvarint(b, uint64(len(p.Body)))
	b = append(b, p.Body...)
	return append(b, p.SKDM...)
}

// DecodePayload parses a decrypted plaintext.
func DecodePayload(b []byte) (Payload, error) {
	var p Payload
	rest := b
	field := func() (string, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return "", false
		}
		f := string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
		return f, true
	}
	var ok1, ok2 bool
	p.ID, ok1 = field()
	p.Body, ok2 = field()
	if !ok1 || !ok2 {
		return Payload{}, fmt.Errorf("payload %q: truncated", b)
	}
	if len(rest) > 0 {
		p.SKDM = append([]byte(nil), rest...)
	}
	return p, nil
}

// Delivery is one copy of one message on its way: first sends, retries
// (rebuilt and resent as pkmsg) and redelivered duplicates are each their own
// Delivery with their own ID ("m3", "m3.2", …).
type Delivery struct {
	ID    string // delivery id, unique in a run
	Msg   string // message id, shared by all copies
	Copy  int    // 1 for the first copy
	Retry int    // retry count that produced this copy (0 for a first send)
	From  *protocol.SignalAddress
	To    *protocol.SignalAddress
	Kind  string // pkmsg, msg or skmsg
	CT    []byte
	// Group messages: the skmsg, plus a DM part carrying the sender key
	// distribution when the sender has not given it to this device yet.
	// A retry of a group message is a DM with Group set and the sender
	// key distribution in its payload.
	Group  string
	DMKind string
	DMCT   []byte
	// Rebuilt says why a retry's sender rebuilt the session first (empty:
	// re-encrypted on the session it had), for the history.
	Rebuilt string
}

// Server queues deliveries and holds the prekeys devices uploaded.
type Server struct {
	mu       sync.Mutex
	preKeys  map[string][]*keys.PreKey
	bundles  map[string]func(*keys.PreKey) *prekey.Bundle
	inbound  []*Delivery
	outbound []*Delivery
	copies   map[string]int
}

// New returns an empty server.
func New() *Server {
	return &Server{
		preKeys: make(map[string][]*keys.PreKey),
		bundles: make(map[string]func(*keys.PreKey) *prekey.Bundle),
		copies:  make(map[string]int),
	}
}

// Upload registers a device's bundle maker and its uploaded one-time prekeys.
func (s *Server) Upload(addr *protocol.SignalAddress, bundle func(*keys.PreKey) *prekey.Bundle, pks []*keys.PreKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundles[addr.String()] = bundle
	s.preKeys[addr.String()] = append(s.preKeys[addr.String()], pks...)
}

// Forget drops the device's bundle and one-time prekeys: a reinstall
// registers anew, and WhatsApp's server hands out none of the old install's
// prekeys with the new install's identity.
func (s *Server) Forget(addr *protocol.SignalAddress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.bundles, addr.String())
	delete(s.preKeys, addr.String())
}

// Unclaimed returns the device's uploaded one-time prekeys that no bundle
// has handed out yet: what must still be in its store.
func (s *Server) Unclaimed(addr *protocol.SignalAddress) []*keys.PreKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*keys.PreKey(nil), s.preKeys[addr.String()]...)
}

// FetchBundle hands out the device's bundle with one unused one-time prekey,
// removing it from the pool as WhatsApp's server does; when the pool is
// empty the bundle has no one-time prekey.
func (s *Server) FetchBundle(addr *protocol.SignalAddress) (*prekey.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mk, ok := s.bundles[addr.String()]
	if !ok {
		return nil, fmt.Errorf("no bundle uploaded for %s", addr)
	}
	var pk *keys.PreKey
	if pool := s.preKeys[addr.String()]; len(pool) > 0 {
		pk, s.preKeys[addr.String()] = pool[0], pool[1:]
	}
	return mk(pk), nil
}

// NextCopy numbers a new copy of message msg and returns its delivery id.
func (s *Server) NextCopy(msg string) (id string, copy int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.copies[msg]++
	n := s.copies[msg]
	if n == 1 {
		return msg, 1
	}
	return fmt.Sprintf("%s.%d", msg, n), n
}

// ToDevice queues a delivery for the device under test.
func (s *Server) ToDevice(d *Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inbound = append(s.inbound, d)
}

// Redeliver queues another copy of a ciphertext the device already took, as
// the offline queue does when an ack is lost or the device died before it.
func (s *Server) Redeliver(d *Delivery) *Delivery {
	c := *d
	c.ID, c.Copy = s.NextCopy(d.Msg)
	s.ToDevice(&c)
	return &c
}

// ToPeer queues a delivery from the device to a peer.
func (s *Server) ToPeer(d *Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outbound = append(s.outbound, d)
}

func take(q *[]*Delivery, id string) *Delivery {
	for i, d := range *q {
		if id == "" || d.ID == id {
			*q = append((*q)[:i:i], (*q)[i+1:]...)
			return d
		}
	}
	return nil
}

// TakeInbound removes and returns the pending delivery with the id (the
// oldest one when id is empty), or nil.
func (s *Server) TakeInbound(id string) *Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return take(&s.inbound, id)
}

// TakeOutbound is TakeInbound for deliveries to peers.
func (s *Server) TakeOutbound(id string) *Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return take(&s.outbound, id)
}

// Pending returns the ids of the queued deliveries, each direction in order.
func (s *Server) Pending() (inbound, outbound []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.inbound {
		inbound = append(inbound, d.ID)
	}
	for _, d := range s.outbound {
		outbound = append(outbound, d.ID)
	}
	return
}
