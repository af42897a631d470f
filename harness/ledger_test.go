package harness

import (
	"errors"
	"reflect"
	"testing"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver/waweb"
)

// The ledger's messages reach the oracle whole (direction, peer, body,
// every attempt with its class and error) and in the ledger's order; an id
// the ledger saw only in a stray ack or receipt is not a message.
func TestFromLedger(t *testing.T) {
	l := waweb.NewLedger()
	l.Expect("m1", waweb.In, "p1", "hi")
	l.Attempt("m1", false, "", endpoint.BadMAC, errors.New("bad mac"))
	l.Attempt("m1", true, "hi", "", nil)
	l.Attempt("stray", true, "", "", nil) // never registered
	l.Expect("re-m1", waweb.Out, "p1", "re: hi")
	l.Attempt("re-m1", true, "other", "", nil)

	want := []*Message{
		{ID: "m1", Dir: In, Peer: "p1", Body: "hi", Attempts: []Attempt{
			{Delivery: "m1", Class: endpoint.BadMAC, Err: "bad mac"},
			{Delivery: "m1.2", OK: true},
		}},
		{ID: "re-m1", Dir: Out, Peer: "p1", Body: "re: hi", Attempts: []Attempt{
			{Delivery: "re-m1", OK: true, Wrong: true},
		}},
	}
	if got := FromLedger(l); !reflect.DeepEqual(got, want) {
		t.Errorf("FromLedger:\n got %+v\nwant %+v", got, want)
	}
	if got := LedgerStrays(l); !reflect.DeepEqual(got, []string{"stray"}) {
		t.Errorf("LedgerStrays = %q, want [stray]", got)
	}
}
