package procs

import (
	"crypto/rand"

	"github.com/badmac/badmac/harness"
)

// setRandom seeds crypto/rand.Reader for the rest of the process (a child).
func setRandom(seed uint64, stream byte) { rand.Reader = harness.NewSeededReader(seed, stream) }
