package kvstores

import (
	"testing"

	"github.com/badmac/badmac/storetest"
)

// The default suite, as a store author runs it: every direct check, every
// scenario, crashes by SIGKILL of the store's process.
func TestBadger(t *testing.T) { storetest.RunOpener(t, OpenBadger) }
func TestBolt(t *testing.T)   { storetest.RunOpener(t, OpenBolt) }
