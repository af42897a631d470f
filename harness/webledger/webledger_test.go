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
	type attempt struct {
		dev string
		ok  bool
	}
	devs := []string{"alice.0", "alice.1"}
	cases := []struct {
		name      string
		copies    []string
		attempts  []attempt
		want      map[string]string
		attempts0 []string // the first message's attempts' deliveries, when checked
	}{
		{"alice.0 never sent a copy", devs, []attempt{{"alice.1", true}},
			map[string]string{"r1/alice.0 alice.0": "lost", "r1/alice.1 alice.1": "delivered"}, nil},
		{"both copies accepted, alice.0's after a Bad MAC", devs, []attempt{{"alice.1", true}, {"alice.0", false}, {"alice.0", true}},
			map[string]string{"r1/alice.0 alice.0": "recovered", "r1/alice.1 alice.1": "delivered"}, []string{"r1/alice.0", "r1/alice.0.2"}},
		{"one device", devs[:1], []attempt{{"alice.0", true}},
			map[string]string{"r1 alice.0": "delivered"}, nil},
	}
	for _, c := range cases {
		l := waweb.NewLedger()
		l.Expect("r1", waweb.Out, "alice.0", "reply r1")
		l.ExpectCopies("r1", c.copies)
		for _, a := range c.attempts {
			if a.ok {
				l.AttemptBy("r1", a.dev, true, "reply r1", "", nil)
			} else {
				l.AttemptBy("r1", a.dev, false, "", endpoint.BadMAC, errors.New("bad mac"))
			}
		}
		got := map[string]string{}
		for _, m := range Messages(l) {
			got[m.ID+" "+m.Peer] = string(m.Outcome())
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if c.attempts0 == nil {
			continue
		}
		var ids []string
		for _, a := range Messages(l)[0].Attempts {
			ids = append(ids, a.Delivery)
		}
		if !reflect.DeepEqual(ids, c.attempts0) {
			t.Errorf("%s: the first message's attempts %q, want %q", c.name, ids, c.attempts0)
		}
	}
}
