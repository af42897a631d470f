package harness

import (
	_ "embed"
	"strings"
)

// MinimalBadMAC is the hand-written minimal Bad MAC schedule
// (testdata/badmac-minimal.txt, docs/design.md §3): the length a shrunk
// counterexample is compared with.
//
//go:embed testdata/badmac-minimal.txt
var MinimalBadMAC string

// MinimalBadMACOps is its number of ops.
func MinimalBadMACOps() int {
	s, err := Parse(strings.NewReader(MinimalBadMAC))
	if err != nil {
		panic("harness: testdata/badmac-minimal.txt: " + err.Error())
	}
	return len(s.Ops)
}
