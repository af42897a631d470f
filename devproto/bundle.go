package devproto

import (
	"errors"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/util/optional"
	"go.mau.fi/whatsmeow/util/keys"
)

// FromBundle encodes a libsignal bundle for the wire.
func FromBundle(b *prekey.Bundle) *Bundle {
	spk, id := b.SignedPreKey().PublicKey(), b.IdentityKey().PublicKey().PublicKey()
	sig := b.SignedPreKeySignature()
	w := &Bundle{Reg: b.RegistrationID(), Dev: b.DeviceID(), SPKID: b.SignedPreKeyID(), SPK: spk[:], Sig: sig[:], Identity: id[:]}
	if o := b.PreKeyID(); o != nil && !o.IsEmpty && b.PreKey() != nil {
		v, pk := o.Value, b.PreKey().PublicKey()
		w.PreKeyID, w.PreKey = &v, pk[:]
	}
	return w
}

// ToBundle decodes a wire bundle, checking key lengths.
func (w *Bundle) ToBundle() (*prekey.Bundle, error) {
	if len(w.SPK) != 32 || len(w.Sig) != 64 || len(w.Identity) != 32 {
		return nil, errors.New("bundle: bad key lengths")
	}
	id := optional.NewEmptyUint32()
	var pk ecc.ECPublicKeyable
	if w.PreKeyID != nil {
		if len(w.PreKey) != 32 {
			return nil, errors.New("bundle: bad prekey length")
		}
		id, pk = optional.NewOptionalUint32(*w.PreKeyID), ecc.NewDjbECPublicKey([32]byte(w.PreKey))
	}
	return prekey.NewBundle(w.Reg, w.Dev, id, w.SPKID, pk, ecc.NewDjbECPublicKey([32]byte(w.SPK)), [64]byte(w.Sig),
		identity.NewKey(ecc.NewDjbECPublicKey([32]byte(w.Identity)))), nil
}

// Bundle is the device's prekey bundle as a server hands it out: its
// credentials as device dev, with one-time prekey pk (nil: none).
func (c *Creds) Bundle(dev uint32, pk *PreKey) (*prekey.Bundle, error) {
	w := &Bundle{Reg: c.Reg, Dev: dev, SPKID: c.SPKID, SPK: c.SPK, Sig: c.Sig, Identity: c.Identity}
	if pk != nil {
		id := pk.ID
		w.PreKeyID, w.PreKey = &id, pk.Pub
	}
	return w.ToBundle()
}

// Key is the one-time prekey as whatsmeow holds it, its public half only:
// what a server hands out in bundles (Pub must be 32 bytes, as ParseReply
// checks).
func (p PreKey) Key() *keys.PreKey {
	pub := [32]byte(p.Pub)
	return &keys.PreKey{KeyPair: keys.KeyPair{Pub: &pub}, KeyID: p.ID}
}
