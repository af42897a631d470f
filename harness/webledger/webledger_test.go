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

// The device's message to a contact with two devices is judged per
// device (waweb.Ledger.ExpectCopies): "r1" becomes "r1/alice.0" and
// "r1/alice.1", each with its own device's attempts. A device that never
// got a copy is lost (whatsmeow #1027); both copies decrypted are two
// deliveries, not one duplicate; a contact with one device keeps "r1".
func TestMessagesPerDevice(t *testing.T) {
	outcomes := func(l *waweb.Ledger) map[string]string {
		o := map[string]string{}
		for _, m := range Messages(l) {
			o[m.ID+" "+m.Peer] = string(m.Outcome())
		}
		return o
	}
	devs := []string{"alice.0", "alice.1"}

	l := waweb.NewLedger()
	l.Expect("r1", waweb.Out, "alice.0", "reply r1")
	l.ExpectCopies("r1", devs)
	l.AttemptBy("r1", "alice.1", true, "reply r1", "", nil)
	want := map[string]string{"r1/alice.0 alice.0": "lost", "r1/alice.1 alice.1": "delivered"}
	if got := outcomes(l); !reflect.DeepEqual(got, want) {
		t.Errorf("alice.0 never sent a copy: %v, want %v", got, want)
	}

	l = waweb.NewLedger()
	l.Expect("r1", waweb.Out, "alice.0", "reply r1")
	l.ExpectCopies("r1", devs)
	l.AttemptBy("r1", "alice.1", true, "reply r1", "", nil)
	l.AttemptBy("r1", "alice.0", false, "", endpoint.BadMAC, errors.New("bad mac"))
	l.AttemptBy("r1", "alice.0", true, "reply r1", "", nil)
	want = map[string]string{"r1/alice.0 alice.0": "recovered", "r1/alice.1 alice.1": "delivered"}
	if got := outcomes(l); !reflect.DeepEqual(got, want) {
		t.Errorf("both copies accepted, alice.0's after a Bad MAC: %v, want %v", got, want)
	}
	if a := Messages(l)[0].Attempts; len(a) != 2 || a[0].Delivery != "r1/alice.0" || a[1].Delivery != "r1/alice.0.2" {
		t.Errorf("alice.0's attempts %+v, want r1/alice.0 and r1/alice.0.2", a)
	}

	l = waweb.NewLedger()
	l.Expect("r1", waweb.Out, "alice.0", "reply r1")
	l.ExpectCopies("r1", devs[:1])
	l.AttemptBy("r1", "alice.0", true, "reply r1", "", nil)
	want = map[string]string{"r1 alice.0": "delivered"}
	if got := outcomes(l); !reflect.DeepEqual(got, want) {
		t.Errorf("one device: %v, want %v", got, want)
	}
}
