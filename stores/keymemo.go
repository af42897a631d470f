package stores

import (
	"crypto/rand"
	"sync"

	"go.mau.fi/whatsmeow/util/keys"
)

// The public half of a Curve25519 key is a scalar multiplication, a third of
// the CPU of a short schedule: the device's 50 prekeys and every peer's 20
// are generated at setup, and every GetPreKey decodes one. Schedules with
// one seed draw the same private keys (every pair of a row runs the same
// seeds, shrink candidates rerun one), so the results are remembered. The
// keys are bit for bit whatsmeow's (util/keys.NewKeyPair at
// go.mau.fi/whatsmeow v0.0.0-20251217143725-11cf47c62d32): the same 32
// bytes are drawn from crypto/rand, clamped the same way.
var keyMemo struct {
	sync.Mutex
	pub map[[32]byte][32]byte
}

// keyMemoMax bounds the memo (64 bytes an entry); past it, it starts over.
const keyMemoMax = 1 << 18

// KeyPairFromPrivate is keys.NewKeyPairFromPrivateKey, remembered.
func KeyPairFromPrivate(priv [32]byte) *keys.KeyPair {
	keyMemo.Lock()
	pub, ok := keyMemo.pub[priv]
	keyMemo.Unlock()
	if !ok {
		pub = *keys.NewKeyPairFromPrivateKey(priv).Pub
		keyMemo.Lock()
		if keyMemo.pub == nil || len(keyMemo.pub) >= keyMemoMax {
			keyMemo.pub = make(map[[32]byte][32]byte)
		}
		keyMemo.pub[priv] = pub
		keyMemo.Unlock()
	}
	return &keys.KeyPair{Pub: &pub, Priv: &priv}
}

// NewPreKey is keys.NewPreKey: 32 bytes from crypto/rand (as
// go.mau.fi/util/random.Bytes draws them), clamped, public half remembered.
func NewPreKey(id uint32) *keys.PreKey {
	var priv [32]byte
	if _, err := rand.Read(priv[:]); err != nil {
		panic(err) // as random.Bytes does
	}
	priv[0] &= 248
	priv[31] &= 127
	priv[31] |= 64
	return &keys.PreKey{KeyPair: *KeyPairFromPrivate(priv), KeyID: id}
}

// ResetKeyMemo forgets every remembered key, so that timings compared with
// each other start equal (badmac bench).
func ResetKeyMemo() {
	keyMemo.Lock()
	keyMemo.pub = nil
	keyMemo.Unlock()
}
