// Package procs runs the device under test as a real child process on a real
// database (docs/design.md §7): the parent holds the fake peer, the server and the
// oracle; the child (`badmac device`) holds the device's store and does its
// decrypts and encrypts; the child is killed with SIGKILL at a failpoint
// (right after its Nth store write), restarted on the same database, and
// driven on. What the oracle sees afterwards is what the database really made
// durable, not a model of it.
//
// Two drivers use the child: Converse (`badmac procs`: a conversation of
// its own, killed at a failpoint inside a request, and ConverseReplicas,
// requests to two processes in flight at once) and Device, the harness's
// device interface (docs/design.md §4.1): the harness's scenarios run on
// the child unchanged, request by request, judged by the harness's oracle.
//
// Parent and child speak JSON lines: one Request on the child's stdin, one
// Response on its stdout, strictly in turn.
package procs

import (
	"errors"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/devproto"
)

// Request ops.
const (
	OpInit  = "init"  // first start: draw credentials and prekeys, save them
	OpHello = "hello" // a restart: load the credentials from the database
	OpRecv  = "recv"  // decrypt a delivery (pkmsg or msg)
	OpSend  = "send"  // encrypt a reply, building the session from Bundle first if given
	// OpPreKeys returns which of the one-time prekeys IDs the store still
	// holds (the restart check of uploaded, unclaimed prekeys).
	OpPreKeys = "prekeys"
)

// Request is one line from the parent.
type Request struct {
	Op     string  `json:"op"`
	Peer   string  `json:"peer,omitempty"` // Signal address name of the contact
	PeerID uint32  `json:"peer_dev,omitempty"`
	Kind   string  `json:"kind,omitempty"` // pkmsg or msg
	CT     []byte  `json:"ct,omitempty"`
	PT     []byte  `json:"pt,omitempty"`
	Bundle *Bundle `json:"bundle,omitempty"`
	// Retry: the send answers a retry receipt, which whatsmeow encrypts
	// without the send path's session cache (retry.go handleRetryReceipt).
	Retry bool `json:"retry,omitempty"`
	// StopAt > 0 stops the device when step StopAt of this request begins
	// (Handler.Handle): a child answers with a Response whose Stopped is
	// set and waits for the parent's SIGKILL.
	StopAt int `json:"stop_at,omitempty"`
	// Rules: the request comes from the harness device (HarnessDevice),
	// which the child answers by the rules the harness's model follows
	// (docs/design.md §4.1): a Retry send is handleRetryReceipt (the
	// receipt admitted, the session recreated by shouldRecreateSession);
	// the decrypted-event buffer's plaintext is cleared once the event is
	// handled. Without it the child answers as Converse expects. Every
	// recv counts its retry receipt (Receipt), Rules or not.
	Rules bool `json:"rules,omitempty"`
	// Msg is the message id; Count the delivery's retry count (recv) or
	// the receipt's (a Retry send).
	Msg   string `json:"msg,omitempty"`
	Count int    `json:"count,omitempty"`
	// Fetched: a Retry send coming back with the bundle the parent fetched
	// after NeedBundle: the receipt was admitted already.
	Fetched bool `json:"fetched,omitempty"`
	// Group messages (Rules): Kind skmsg with the group's id, and the DM
	// part carrying the sender key distribution (DMKind, DMCT) when the
	// sender has not given it yet; a retry of a group message is a DM
	// with Group set and the distribution in its payload.
	Group  string `json:"group,omitempty"`
	DMKind string `json:"dm_kind,omitempty"`
	DMCT   []byte `json:"dm_ct,omitempty"`
	// IDs are the prekeys OpPreKeys asks about.
	IDs []uint32 `json:"ids,omitempty"`
}

// Response is one line from the child.
type Response struct {
	OK      bool     `json:"ok"`
	Creds   []byte   `json:"creds,omitempty"`   // endpoint.Creds.Encode
	PreKeys []PreKey `json:"prekeys,omitempty"` // init: to upload; recv failure: the retry receipt's one
	PT      []byte   `json:"pt,omitempty"`
	Kind    string   `json:"kind,omitempty"`
	CT      []byte   `json:"ct,omitempty"`
	// NeedBundle: send found no session; the parent fetches a bundle.
	NeedBundle bool   `json:"need_bundle,omitempty"`
	Class      string `json:"class,omitempty"` // endpoint.Class of a failed decrypt
	Err        string `json:"err,omitempty"`
	// Writes counts the store writes this incarnation has made so far.
	Writes int `json:"writes"`
	// Calls counts the store calls this request made (its steps).
	Calls int `json:"calls,omitempty"`
	// Stopped: the request reached its StopAt step, Step, and the process
	// is waiting to be killed; nothing else in the response is set.
	Stopped bool `json:"stopped,omitempty"`
	Step    int  `json:"step,omitempty"`
	// Receipt is the retry receipt a failed recv sends, counted per
	// message as whatsmeow's sendRetryReceipt does (its count; 0: none
	// from count 5), with PreKeys[0] as its keys when it has them (from
	// count 2). Rules only: Dropped, a Retry send whose receipt was not
	// admitted; Reason, why NeedBundle recreates the session. Note: a
	// line for the history.
	Receipt int    `json:"receipt,omitempty"`
	Dropped bool   `json:"dropped,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Note    string `json:"note,omitempty"`
}

// PreKey is a one-time prekey (the private half: this is a test bench).
type PreKey struct {
	ID   uint32 `json:"id"`
	Priv []byte `json:"priv"`
}

func toPreKeys(pks []*keys.PreKey) []PreKey {
	out := make([]PreKey, len(pks))
	for i, pk := range pks {
		out[i] = PreKey{ID: pk.KeyID, Priv: pk.Priv[:]}
	}
	return out
}

// Key rebuilds the prekey.
func (p PreKey) Key() (*keys.PreKey, error) {
	if len(p.Priv) != 32 {
		return nil, errors.New("prekey: bad key length")
	}
	return &keys.PreKey{KeyPair: *keys.NewKeyPairFromPrivateKey([32]byte(p.Priv)), KeyID: p.ID}, nil
}

// Bundle is a prekey bundle on the wire: the device protocol's
// (devproto), the same JSON.
type Bundle = devproto.Bundle

// FromBundle encodes a libsignal bundle for the wire.
func FromBundle(b *prekey.Bundle) *Bundle { return devproto.FromBundle(b) }
