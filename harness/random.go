package harness

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	mrand "math/rand/v2"
	"sync"
)

// seededReader is a ChaCha8 stream: libsignal and whatsmeow draw ratchet
// keys, identities and padding from crypto/rand.Reader, so replacing it
// makes a run's key material, and so its history, reproducible.
type seededReader struct {
	mu sync.Mutex
	c  *mrand.ChaCha8
}

// NewSeededReader returns the ChaCha8 stream SeedRandom installs, for a
// process that seeds crypto/rand.Reader for good (a child device).
func NewSeededReader(seed uint64, stream byte) io.Reader { return newSeededReader(seed, stream) }

func newSeededReader(seed uint64, stream byte) *seededReader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	s[31] = stream
	return &seededReader{c: mrand.NewChaCha8(s)}
}

func (r *seededReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Read(p)
}

var randMu sync.Mutex

// SeedRandom seeds crypto/rand.Reader until the returned func is called.
// Everything that seeds it goes through here, so that users are serialized:
// the reader is process-global.
func SeedRandom(seed uint64, stream byte) (restore func()) {
	randMu.Lock()
	old := rand.Reader
	rand.Reader = newSeededReader(seed, stream)
	return func() {
		rand.Reader = old
		randMu.Unlock()
	}
}

// withSeededRandom runs fn with crypto/rand.Reader seeded.
func withSeededRandom(seed uint64, stream byte, fn func()) {
	defer SeedRandom(seed, stream)()
	fn()
}

var _ io.Reader = (*seededReader)(nil)
