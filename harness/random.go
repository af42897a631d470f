package harness

import (
	"io"
	"sync"

	"github.com/badmac/badmac/seeded"
)

// NewSeededReader returns the ChaCha8 stream a run draws from, for a
// process that seeds crypto/rand.Reader for good (a child device).
func NewSeededReader(seed uint64, stream byte) io.Reader { return seeded.NewStream(seed, stream) }

var randMu sync.Mutex

// SeedRandom seeds crypto/rand for every goroutine that no run has bound
// until the returned func is called. It is for drivers whose randomness is
// drawn on goroutines they do not name (procs' parent side); its users are
// serialized. Runs (Start, Baseline) bind their own goroutines instead
// (bindRandom) and run in parallel.
func SeedRandom(seed uint64, stream byte) (restore func()) {
	randMu.Lock()
	undo := seeded.SetGlobal(seeded.NewStream(seed, stream))
	return func() {
		undo()
		randMu.Unlock()
	}
}

// bindRandom makes the calling goroutine, and the scheduler tasks and
// free-mode goroutines it starts, draw from the (seed, stream) ChaCha8
// stream: one run's key material, and so its history, is reproducible
// while other runs draw from their own streams on other goroutines.
func bindRandom(seed uint64, stream byte) (unbind func()) {
	return seeded.Bind(seeded.NewStream(seed, stream))
}

// withSeededRandom runs fn with the calling goroutine bound to (seed, stream).
func withSeededRandom(seed uint64, stream byte, fn func()) {
	defer bindRandom(seed, stream)()
	fn()
}
