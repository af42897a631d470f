package endpoint

import (
	"encoding/json"
	"fmt"

	"go.mau.fi/whatsmeow/util/keys"
)

type credsJSON struct {
	IdentityPriv     []byte `json:"identity"`
	SignedPreKeyPriv []byte `json:"signed_prekey"`
	SignedPreKeyID   uint32 `json:"signed_prekey_id"`
	Signature        []byte `json:"signed_prekey_sig"`
	RegistrationID   uint32 `json:"registration_id"`
}

// Encode returns the credentials as a store persists them (creds.json).
func (c Creds) Encode() []byte {
	b, err := json.Marshal(credsJSON{
		IdentityPriv: c.Identity.Priv[:], SignedPreKeyPriv: c.SignedPreKey.Priv[:],
		SignedPreKeyID: c.SignedPreKey.KeyID, Signature: c.SignedPreKey.Signature[:],
		RegistrationID: c.RegistrationID,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// DecodeCreds parses what Encode wrote.
func DecodeCreds(b []byte) (Creds, error) {
	var j credsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Creds{}, fmt.Errorf("creds: %w", err)
	}
	if len(j.IdentityPriv) != 32 || len(j.SignedPreKeyPriv) != 32 || len(j.Signature) != 64 {
		return Creds{}, fmt.Errorf("creds: bad key lengths")
	}
	spk := &keys.PreKey{KeyPair: *keys.NewKeyPairFromPrivateKey([32]byte(j.SignedPreKeyPriv)), KeyID: j.SignedPreKeyID}
	sig := [64]byte(j.Signature)
	spk.Signature = &sig
	return Creds{
		Identity:       keys.NewKeyPairFromPrivateKey([32]byte(j.IdentityPriv)),
		SignedPreKey:   spk,
		RegistrationID: j.RegistrationID,
	}, nil
}

// Same reports whether two sets of credentials are the same device: identity
// key, registration id and signed prekey.
func (c Creds) Same(o Creds) bool {
	return *c.Identity.Pub == *o.Identity.Pub && c.RegistrationID == o.RegistrationID &&
		c.SignedPreKey.KeyID == o.SignedPreKey.KeyID && *c.SignedPreKey.Pub == *o.SignedPreKey.Pub
}
