package webledger

import (
	"errors"
	"reflect"
	"testing"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
)

// The ledger's messages reach the oracle whole (direction, peer, body,
// every attempt with its class and error) and in the ledger's order; an id
// the ledger saw only in a stray ack or receipt is not a message.
func TestMessages(t *testing.T) {
	l := waweb.NewLedger()
	l.Expect("m1", waweb.In, "p1", "hi")
	l.Attempt("m1", false, "", endpoint.BadMAC, errors.New("bad mac"))
	l.Attempt("m1", true, "hi", "", nil)
	l.Attempt("stray", true, "", "", nil) // never registered
	l.Expect("re-m1", waweb.Out, "p1", "re: hi")
	l.Attempt("re-m1", true, "other", "", nil)

	want := []*harness.Message{
		{ID: "m1", Dir: harness.In, Peer: "p1", Body: "hi", Attempts: []harness.Attempt{
			{Delivery: "m1", Class: endpoint.BadMAC, Err: "bad mac"},
			{Delivery: "m1.2", OK: true},
		}},
		{ID: "re-m1", Dir: harness.Out, Peer: "p1", Body: "re: hi", Attempts: []harness.Attempt{
			{Delivery: "re-m1", OK: true, Wrong: true},
		}},
	}
	if got := Messages(l); !reflect.DeepEqual(got, want) {
		t.Errorf("Messages:\n got %+v\nwant %+v", got, want)
	}
	if got := Strays(l); !reflect.DeepEqual(got, []string{"stray"}) {
		t.Errorf("Strays = %q, want [stray]", got)
	}
}
