package procs

import (
	"crypto/rand"

	"github.com/badmac/badmac/harness"
)

// setRandom seeds crypto/rand.Reader for the rest of the process (a child).
func setRandom(seed uint64, stream byte) { rand.Reader = harness.NewSeededReader(seed, stream) }

// withRandom seeds crypto/rand.Reader until the returned func is called,
// under the same lock as harness runs in this process.
func withRandom(seed uint64, stream byte) (restore func()) { return harness.SeedRandom(seed, stream) }
