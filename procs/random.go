package procs

import (
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"
	"sync"
)

// seeded is a ChaCha8 stream standing in for crypto/rand.Reader, which
// libsignal and whatsmeow draw key material from (as harness does).
type seeded struct {
	mu sync.Mutex
	c  *mrand.ChaCha8
}

func (r *seeded) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Read(p)
}

func newSeeded(seed uint64, stream byte) *seeded {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	s[31] = stream
	return &seeded{c: mrand.NewChaCha8(s)}
}

var randMu sync.Mutex

// setRandom seeds crypto/rand.Reader for the rest of the process (a child).
func setRandom(seed uint64, stream byte) { rand.Reader = newSeeded(seed, stream) }

// withRandom seeds crypto/rand.Reader until the returned func is called;
// conversations in one process are serialized by it.
func withRandom(seed uint64, stream byte) (restore func()) {
	randMu.Lock()
	old := rand.Reader
	rand.Reader = newSeeded(seed, stream)
	return func() {
		rand.Reader = old
		randMu.Unlock()
	}
}
