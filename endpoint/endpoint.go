// Package endpoint is one end of a Signal conversation the way whatsmeow runs
// it: a whatsmeow store.Device over a key store, with the same libsignal calls
// whatsmeow's decryptDM, decryptGroupMsg and its send path make. Both the
// device under test and the fake peers are endpoints; they differ only in the
// store behind them and in who schedules their calls.
package endpoint

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/groups"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/util/optional"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/badmac/badmac/stores"
)

var pb = store.SignalProtobufSerializer

// Creds are the long-term keys of a device: what must survive restarts.
type Creds struct {
	Identity       *keys.KeyPair
	SignedPreKey   *keys.PreKey
	RegistrationID uint32
}

// NewCreds draws fresh credentials from crypto/rand.Reader.
func NewCreds() Creds {
	id := keys.NewKeyPair()
	var reg [4]byte
	if _, err := rand.Read(reg[:]); err != nil {
		panic(err)
	}
	return Creds{
		Identity:       id,
		SignedPreKey:   id.CreateSignedPreKey(1),
		RegistrationID: binary.BigEndian.Uint32(reg[:]) & 0x3fff,
	}
}

// Endpoint is one device with its Signal state.
type Endpoint struct {
	JID    types.JID
	Creds  Creds
	Device *store.Device
	Probe  *Probe
}

// New builds an endpoint over the given store set, adapted to libsignal by
// whatsmeow's store.Device exactly as a whatsmeow client is.
func New(jid types.JID, creds Creds, set stores.Set) *Endpoint {
	probe := &Probe{Set: set}
	dev := &store.Device{
		Log:            waLog.Noop,
		IdentityKey:    creds.Identity,
		SignedPreKey:   creds.SignedPreKey,
		RegistrationID: creds.RegistrationID,
		ID:             &jid,
		Initialized:    true,
		Identities:     probe,
		Sessions:       probe,
		PreKeys:        probe,
		SenderKeys:     probe,
	}
	return &Endpoint{JID: jid, Creds: creds, Device: dev, Probe: probe}
}

// Address returns the endpoint's own Signal address.
func (e *Endpoint) Address() *protocol.SignalAddress { return e.JID.SignalAddress() }

// Bundle is the prekey bundle a server hands out for this device, with the
// given one-time prekey (nil for none).
func (e *Endpoint) Bundle(pk *keys.PreKey) *prekey.Bundle {
	var id *optional.Uint32
	var pub ecc.ECPublicKeyable
	if pk != nil {
		id = optional.NewOptionalUint32(pk.KeyID)
		pub = ecc.NewDjbECPublicKey(*pk.Pub)
	} else {
		id = optional.NewEmptyUint32()
	}
	spk := e.Creds.SignedPreKey
	return prekey.NewBundle(e.Creds.RegistrationID, uint32(e.JID.Device), id, spk.KeyID,
		pub, ecc.NewDjbECPublicKey(*spk.Pub), *spk.Signature,
		identity.NewKey(ecc.NewDjbECPublicKey(*e.Creds.Identity.Pub)))
}

// ProcessBundle starts a new outgoing session with remote from its bundle,
// as whatsmeow does on a retry receipt with keys or before a first send.
func (e *Endpoint) ProcessBundle(ctx context.Context, remote *protocol.SignalAddress, b *prekey.Bundle) error {
	builder := session.NewBuilderFromSignal(e.Device, remote, pb)
	return builder.ProcessBundle(ctx, b)
}

// Message kinds on the wire, as in whatsmeow's <enc type=…>.
const (
	PkMsg = "pkmsg"
	Msg   = "msg"
	SkMsg = "skmsg"
)

// Encrypt pads and encrypts plaintext for remote over the stored session.
//
// libsignal's Encrypt dereferences nil on a record with no session state (a
// session deleted between the caller's ContainsSession and this load, as a
// concurrent reinstall handling does); that comes back as a NoSession
// failure instead of a crash of the whole run.
func (e *Endpoint) Encrypt(ctx context.Context, remote *protocol.SignalAddress, plaintext []byte) (kind string, ct []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			re, ok := r.(runtime.Error)
			if !ok {
				panic(r) // the scheduler unwinding a killed task, say
			}
			kind, ct, err = "", nil, &Failure{Class: NoSession, Err: fmt.Errorf("libsignal encrypt: %v", re)}
		}
	}()
	builder := session.NewBuilderFromSignal(e.Device, remote, pb)
	cipher := session.NewCipher(builder, remote)
	msg, err := cipher.Encrypt(ctx, Pad(plaintext))
	if err != nil {
		return "", nil, err
	}
	if msg.Type() == protocol.PREKEY_TYPE {
		return PkMsg, msg.Serialize(), nil
	}
	return Msg, msg.Serialize(), nil
}

// DecryptDM decrypts a pkmsg or msg from remote as whatsmeow's decryptDM
// does. On failure the error is an *Failure with its class.
func (e *Endpoint) DecryptDM(ctx context.Context, remote *protocol.SignalAddress, kind string, ct []byte) (_ []byte, err error) {
	defer recoverRecord(&err)
	cap := &capture{}
	ctx = context.WithValue(ctx, captureKey{}, cap)
	builder := session.NewBuilderFromSignal(e.Device, remote, pb)
	cipher := session.NewCipher(builder, remote)
	var pt []byte
	var inner *protocol.SignalMessage
	// used is the record libsignal decrypted from, as bytes: what the
	// classifier re-runs the MAC check on.
	var used []byte
	switch kind {
	case PkMsg:
		var m *protocol.PreKeySignalMessage
		m, err = protocol.NewPreKeySignalMessageFromBytes(ct, pb.PreKeySignalMessage, pb.SignalMessage)
		if err == nil {
			inner = m.WhisperMessage()
			pt, used, err = e.decryptPreKey(ctx, builder, cipher, remote, m)
		}
	case Msg:
		inner, err = protocol.NewSignalMessageFromBytes(ct, pb.SignalMessage)
		if err == nil {
			pt, err = cipher.Decrypt(ctx, inner)
			if cap.loaded {
				used = cap.record
			}
		}
	default:
		err = fmt.Errorf("unknown message kind %q", kind)
	}
	if err != nil {
		return nil, classify(ctx, cipher, err, used, inner)
	}
	out, err := Unpad(pt)
	if err != nil {
		return nil, &Failure{Class: Other, Err: err}
	}
	return out, nil
}

// decryptPreKey is libsignal's Cipher.DecryptMessageReturnKey
// (go.mau.fi/libsignal v0.2.1 session/SessionCipher.go), which whatsmeow's
// decryptDM calls for a pkmsg, step for step and with the same store calls
// in the same order: load, X3DH (builder.Process), decrypt, store, remove
// the one-time prekey. It is spelled out here only to keep a copy of the
// record as X3DH left it, before DecryptWithRecord mutates it: a pkmsg
// whose MAC fails in the new state (the right prekey id with another key)
// is a Bad MAC, which the record as loaded cannot show.
func (e *Endpoint) decryptPreKey(ctx context.Context, builder *session.Builder, cipher *session.Cipher, remote *protocol.SignalAddress, m *protocol.PreKeySignalMessage) (pt, used []byte, err error) {
	rec, err := e.Device.LoadSession(ctx, remote)
	if err != nil {
		return nil, nil, err
	}
	unsigned, err := builder.Process(ctx, rec, m)
	if err != nil {
		return nil, nil, err
	}
	used = rec.Serialize()
	pt, _, err = cipher.DecryptWithRecord(ctx, rec, m.WhisperMessage())
	if err != nil {
		return nil, used, err
	}
	if err := e.Device.StoreSession(ctx, remote, rec); err != nil {
		return nil, used, err
	}
	if !unsigned.IsEmpty {
		if err := e.Device.RemovePreKey(ctx, unsigned.Value); err != nil {
			return nil, used, err
		}
	}
	return pt, used, nil
}

// GroupEncrypt encrypts for a group with this endpoint's sender key. The
// first call creates the sender key; dist is the distribution message to
// hand to members (over a DM) before they can read it.
func (e *Endpoint) GroupEncrypt(ctx context.Context, group string, plaintext []byte) (ct []byte, err error) {
	name := protocol.NewSenderKeyName(group, e.Address())
	builder := groups.NewGroupSessionBuilder(e.Device, pb)
	cipher := groups.NewGroupCipher(builder, name, e.Device)
	msg, err := cipher.Encrypt(ctx, Pad(plaintext))
	if err != nil {
		return nil, err
	}
	return msg.SignedSerialize(), nil
}

// SenderKeyDistribution returns (creating if needed) the distribution
// message for this endpoint's sender key in group.
func (e *Endpoint) SenderKeyDistribution(ctx context.Context, group string) ([]byte, error) {
	name := protocol.NewSenderKeyName(group, e.Address())
	builder := groups.NewGroupSessionBuilder(e.Device, pb)
	skdm, err := builder.Create(ctx, name)
	if err != nil {
		return nil, err
	}
	return skdm.Serialize(), nil
}

// ProcessSenderKeyDistribution stores a member's sender key, as whatsmeow's
// handleSenderKeyDistributionMessage does.
func (e *Endpoint) ProcessSenderKeyDistribution(ctx context.Context, group string, sender *protocol.SignalAddress, skdm []byte) (err error) {
	defer recoverRecord(&err)
	m, err := protocol.NewSenderKeyDistributionMessageFromBytes(skdm, pb.SenderKeyDistributionMessage)
	if err != nil {
		return err
	}
	builder := groups.NewGroupSessionBuilder(e.Device, pb)
	if err := builder.Process(ctx, protocol.NewSenderKeyName(group, sender), m); err != nil {
		return &Failure{Class: classOf(err), Err: err}
	}
	return nil
}

// recoverRecord turns a runtime panic inside libsignal into an Other
// failure. libsignal v0.2.1's record decoders (record.NewSessionFromBytes,
// groups/state/record.NewSenderKeyFromBytes), which whatsmeow's
// store.Device.LoadSession and LoadSenderKey call on whatever bytes a store
// returns, dereference nil or index out of range on well-formed JSON with a
// field missing (stores.TestLibsignalRecordDecodersPanic pins both). A store
// handing back such bytes must be reported, not crash the run. Any other
// panic (the scheduler unwinding a killed task) goes on unwinding.
func recoverRecord(err *error) {
	r := recover()
	if r == nil {
		return
	}
	re, ok := r.(runtime.Error)
	if !ok {
		panic(r)
	}
	*err = &Failure{Class: Other, Err: fmt.Errorf("libsignal panicked on a record the store returned: %v", re)}
}

// GroupDecrypt decrypts a skmsg as whatsmeow's decryptGroupMsg does.
func (e *Endpoint) GroupDecrypt(ctx context.Context, group string, sender *protocol.SignalAddress, ct []byte) (_ []byte, err error) {
	defer recoverRecord(&err)
	name := protocol.NewSenderKeyName(group, sender)
	builder := groups.NewGroupSessionBuilder(e.Device, pb)
	cipher := groups.NewGroupCipher(builder, name, e.Device)
	msg, err := protocol.NewSenderKeyMessageFromBytes(ct, pb.SenderKeyMessage)
	if err != nil {
		return nil, &Failure{Class: Other, Err: err}
	}
	pt, err := cipher.Decrypt(ctx, msg)
	if err != nil {
		return nil, &Failure{Class: classOf(err), Err: err}
	}
	out, err := Unpad(pt)
	if err != nil {
		return nil, &Failure{Class: Other, Err: err}
	}
	return out, nil
}

// Pad adds WhatsApp's v2 padding: N copies of byte N, N in 1..15. N is drawn
// from crypto/rand.Reader like whatsmeow's padMessage.
func Pad(b []byte) []byte {
	var n [1]byte
	if _, err := rand.Read(n[:]); err != nil {
		panic(err)
	}
	n[0] &= 0xf
	if n[0] == 0 {
		n[0] = 0xf
	}
	return append(append([]byte{}, b...), bytes.Repeat(n[:], int(n[0]))...)
}

// Unpad removes and checks the padding, as whatsmeow's unpadMessage does.
func Unpad(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("plaintext is empty")
	}
	n := int(b[len(b)-1])
	if n == 0 || n > len(b) || !bytes.Equal(b[len(b)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, errors.New("plaintext doesn't have expected padding")
	}
	return b[:len(b)-n], nil
}

// OnReference returns an endpoint with fresh credentials on a store of its
// own: the in-memory reference store. Peers and the raw benchmark loop use it.
func OnReference(ctx context.Context, jid types.JID) (*Endpoint, error) {
	st, err := stores.MustLookup("reference").Open(ctx)
	if err != nil {
		return nil, err
	}
	set, err := st.Instance(ctx)
	if err != nil {
		return nil, err
	}
	return New(jid, NewCreds(), set), nil
}
