package waweb

import (
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/whatsmeow/proto/waCert"
	"go.mau.fi/whatsmeow/util/gcmutil"
	"go.mau.fi/whatsmeow/util/keys"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"
	"google.golang.org/protobuf/proto"
)

// The server side of whatsmeow's Noise_XX_25519_AESGCM_SHA256 handshake
// (whatsmeow socket/noisehandshake.go at the pinned commit). whatsmeow's own
// NoiseHandshake cannot be reused: the final key split reads its unexported
// salt, so the server keeps this small copy of the same state machine.
type noiseState struct {
	hash    []byte
	salt    []byte
	key     cipher.AEAD
	counter uint32
}

const noisePattern = "Noise_XX_25519_AESGCM_SHA256\x00\x00\x00\x00"

func newNoiseState(header []byte) (*noiseState, error) {
	ns := &noiseState{hash: []byte(noisePattern)} // 32 bytes: used as is
	ns.salt = ns.hash
	var err error
	if ns.key, err = gcmutil.Prepare(ns.hash); err != nil {
		return nil, err
	}
	ns.authenticate(header)
	return ns, nil
}

func (ns *noiseState) authenticate(data []byte) {
	h := sha256.Sum256(append(append([]byte{}, ns.hash...), data...))
	ns.hash = h[:]
}

func iv(n uint32) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint32(b[8:], n)
	return b
}

func (ns *noiseState) encrypt(pt []byte) []byte {
	ct := ns.key.Seal(nil, iv(ns.counter), pt, ns.hash)
	ns.counter++
	ns.authenticate(ct)
	return ct
}

func (ns *noiseState) decrypt(ct []byte) ([]byte, error) {
	pt, err := ns.key.Open(nil, iv(ns.counter), ct, ns.hash)
	ns.counter++
	if err == nil {
		ns.authenticate(ct)
	}
	return pt, err
}

func split(salt, data []byte) (a, b []byte, err error) {
	h := hkdf.New(sha256.New, data, salt, nil)
	a, b = make([]byte, 32), make([]byte, 32)
	if _, err = io.ReadFull(h, a); err == nil {
		_, err = io.ReadFull(h, b)
	}
	return
}

func (ns *noiseState) mix(priv, pub *[32]byte) error {
	secret, err := curve25519.X25519(priv[:], pub[:])
	if err != nil {
		return fmt.Errorf("x25519: %w", err)
	}
	ns.counter = 0
	write, read, err := split(ns.salt, secret)
	if err != nil {
		return err
	}
	ns.salt = write
	ns.key, err = gcmutil.Prepare(read)
	return err
}

// finish returns the transport ciphers. The client writes with the first
// key and reads with the second, so the server does the opposite.
func (ns *noiseState) finish() (serverWrite, serverRead cipher.AEAD, err error) {
	clientWrite, clientRead, err := split(ns.salt, nil)
	if err != nil {
		return nil, nil, err
	}
	if serverRead, err = gcmutil.Prepare(clientWrite); err != nil {
		return nil, nil, err
	}
	serverWrite, err = gcmutil.Prepare(clientRead)
	return serverWrite, serverRead, err
}

// CA is the root of the test certificate chain. A client accepts the server
// only if whatsmeow.WACertPubKey is the CA's public key.
type CA struct {
	Root *keys.KeyPair
}

var (
	defaultCA     *CA
	defaultCAOnce sync.Once
)

// DefaultCA is one CA per process: whatsmeow.WACertPubKey is a package
// variable, so every server in a process must chain to the same root.
func DefaultCA() *CA {
	defaultCAOnce.Do(func() { defaultCA = &CA{Root: keys.NewKeyPair()} })
	return defaultCA
}

// chain signs an intermediate with the root and the server's static key
// with the intermediate, as verifyServerCert in whatsmeow handshake.go
// checks it (issuer serial of the intermediate must be 0).
func (ca *CA) chain(static *keys.KeyPair) ([]byte, error) {
	inter := keys.NewKeyPair()
	interDetails, err := proto.Marshal(&waCert.CertChain_NoiseCertificate_Details{
		Serial: proto.Uint32(1), IssuerSerial: proto.Uint32(0), Key: inter.Pub[:],
	})
	if err != nil {
		return nil, err
	}
	leafDetails, err := proto.Marshal(&waCert.CertChain_NoiseCertificate_Details{
		Serial: proto.Uint32(2), IssuerSerial: proto.Uint32(1), Key: static.Pub[:],
	})
	if err != nil {
		return nil, err
	}
	interSig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*ca.Root.Priv), interDetails)
	leafSig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*inter.Priv), leafDetails)
	return proto.Marshal(&waCert.CertChain{
		Intermediate: &waCert.CertChain_NoiseCertificate{Details: interDetails, Signature: interSig[:]},
		Leaf:         &waCert.CertChain_NoiseCertificate{Details: leafDetails, Signature: leafSig[:]},
	})
}
