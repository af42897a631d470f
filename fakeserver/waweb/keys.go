package waweb

import (
	"encoding/binary"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/util/optional"
	waBinary "go.mau.fi/whatsmeow/binary"
)

// Prekey material on the wire, in the shapes of whatsmeow prekeys.go
// (preKeyToNode, nodeToPreKeyBundle) at the pinned commit.

func be32(n uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return b[:]
}

func keyNode(tag string, id uint32, pub [32]byte, sig *[64]byte) waBinary.Node {
	kids := []waBinary.Node{{Tag: "id", Content: be32(id)[1:]}, {Tag: "value", Content: pub[:]}}
	if sig != nil {
		kids = append(kids, waBinary.Node{Tag: "signature", Content: sig[:]})
	}
	return waBinary.Node{Tag: tag, Content: kids}
}

// bundleNodes is a bundle as the children of a <user> in a prekey fetch
// answer or of <keys> in a retry receipt (registration goes outside <keys>).
func bundleNodes(b *prekey.Bundle) []waBinary.Node {
	idk := b.IdentityKey().PublicKey().PublicKey()
	sig := b.SignedPreKeySignature()
	out := []waBinary.Node{
		{Tag: "type", Content: []byte{ecc.DjbType}},
		{Tag: "identity", Content: idk[:]},
	}
	if b.PreKey() != nil && !b.PreKeyID().IsEmpty {
		out = append(out, keyNode("key", b.PreKeyID().Value, b.PreKey().PublicKey(), nil))
	}
	return append(out, keyNode("skey", b.SignedPreKeyID(), b.SignedPreKey().PublicKey(), &sig))
}

type parsedKey struct {
	id  uint32
	pub [32]byte
	sig *[64]byte
}

func parseKey(n waBinary.Node) (parsedKey, error) {
	var k parsedKey
	id, ok := n.GetChildByTag("id").Content.([]byte)
	if !ok || len(id) != 3 {
		return k, fmt.Errorf("<%s>: bad <id>", n.Tag)
	}
	k.id = binary.BigEndian.Uint32(append([]byte{0}, id...))
	val, ok := n.GetChildByTag("value").Content.([]byte)
	if !ok || len(val) != 32 {
		return k, fmt.Errorf("<%s>: bad <value>", n.Tag)
	}
	k.pub = [32]byte(val)
	if n.Tag == "skey" {
		sig, ok := n.GetChildByTag("signature").Content.([]byte)
		if !ok || len(sig) != 64 {
			return k, fmt.Errorf("<skey>: bad <signature>")
		}
		s := [64]byte(sig)
		k.sig = &s
	}
	return k, nil
}

// parseBundle reads registration from parent and the keys from parent's
// <keys> child (a retry receipt) or from parent itself (a prekey upload).
func parseBundle(device uint32, parent waBinary.Node) (*prekey.Bundle, error) {
	reg, ok := parent.GetChildByTag("registration").Content.([]byte)
	if !ok || len(reg) != 4 {
		return nil, fmt.Errorf("bad <registration>")
	}
	kn, ok := parent.GetOptionalChildByTag("keys")
	if !ok {
		kn = parent
	}
	idk, ok := kn.GetChildByTag("identity").Content.([]byte)
	if !ok || len(idk) != 32 {
		return nil, fmt.Errorf("bad <identity>")
	}
	spk, err := parseKey(kn.GetChildByTag("skey"))
	if err != nil {
		return nil, err
	}
	pkID, pkPub := optional.NewEmptyUint32(), ecc.ECPublicKeyable(nil)
	if pn, ok := kn.GetOptionalChildByTag("key"); ok {
		pk, err := parseKey(pn)
		if err != nil {
			return nil, err
		}
		pkID, pkPub = optional.NewOptionalUint32(pk.id), ecc.NewDjbECPublicKey(pk.pub)
	}
	return prekey.NewBundle(binary.BigEndian.Uint32(reg), device, pkID, spk.id, pkPub,
		ecc.NewDjbECPublicKey(spk.pub), *spk.sig, identity.NewKey(ecc.NewDjbECPublicKey([32]byte(idk)))), nil
}

func optionalEmpty() *optional.Uint32      { return optional.NewEmptyUint32() }
func optionalOf(n uint32) *optional.Uint32 { return optional.NewOptionalUint32(n) }
func djb(k [32]byte) ecc.ECPublicKeyable   { return ecc.NewDjbECPublicKey(k) }
