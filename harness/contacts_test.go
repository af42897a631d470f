package harness

import (
	"context"
	"slices"
	"strings"
	"testing"

	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
)

func newTestContacts(t *testing.T, rules ContactRules) *Contacts {
	t.Helper()
	c := NewContacts(rules)
	dev := types.JID{User: DeviceUser, Server: types.DefaultUserServer}.SignalAddress()
	if err := c.AddPeers(context.Background(), dev, []Contact{{User: "bob", Devices: 1}, {User: "alice", Devices: 2}}); err != nil {
		t.Fatal(err)
	}
	return c
}

// The rules a device keeps of its own: peers sorted or in contact order,
// Delivered as completed attempts or as taken.
func TestContactsViewRules(t *testing.T) {
	model := newTestContacts(t, ContactRules{})
	adapter := newTestContacts(t, ContactRules{ContactOrder: true, DeliveredAsTaken: true})
	if got, want := model.Peers(), []string{"alice.0", "alice.1", "bob.0"}; !slices.Equal(got, want) {
		t.Errorf("sorted peers = %v, want %v", got, want)
	}
	if got, want := adapter.Peers(), []string{"bob.0", "alice.0", "alice.1"}; !slices.Equal(got, want) {
		t.Errorf("peers in contact order = %v, want %v", got, want)
	}
	for _, c := range []*Contacts{model, adapter} {
		p, _ := c.Peer("alice.0")
		c.addMessage(&Message{ID: "m1", Dir: In, Peer: p.Name, Body: "hello m1"})
		d := &fakeserver.Delivery{ID: "m1", Msg: "m1", From: p.Address()}
		c.Took(d)
		if c.HeardFrom("alice.0") != 0 {
			t.Errorf("heard from alice.0 before a receive completed")
		}
	}
	if got := model.Delivered(); len(got) != 0 {
		t.Errorf("model: delivered %v before an attempt completed", got)
	}
	if got := adapter.Delivered(); !slices.Equal(got, []string{"m1"}) {
		t.Errorf("adapter: delivered %v, want the delivery taken [m1]", got)
	}
	p, _ := model.Peer("alice.0")
	d := &fakeserver.Delivery{ID: "m1", Msg: "m1", From: p.Address()}
	model.Received(d, Attempt{Delivery: "m1", OK: true}, fakeserver.Payload{ID: "m1", Body: "hello m1"})
	model.Received(d, Attempt{Delivery: "m1", OK: true}, fakeserver.Payload{ID: "m1", Body: "other"})
	if got := model.Delivered(); !slices.Equal(got, []string{"m1", "m1"}) {
		t.Errorf("model: delivered %v, want the two attempts", got)
	}
	if n := model.HeardFrom("alice.0"); n != 2 {
		t.Errorf("heard from alice.0 %d times, want 2", n)
	}
	if a := model.Message("m1").Attempts; a[0].Wrong || !a[1].Wrong {
		t.Errorf("attempts %+v: want the second, other plaintext, wrong", a)
	}
}

// The contacts' retry receipts for what they cannot decrypt, by each rule:
// whatsmeow's counts per message and keys from count 2, and stops at
// MaxRetries with a line; the adapter's counts the delivery's retry + 1,
// always keys, and stops silently.
func TestContactsReceiptRules(t *testing.T) {
	ctx := context.Background()
	type want struct {
		count int
		keys  bool
	}
	for _, tc := range []struct {
		rule  ReceiptRule
		reads []want
		limit string // the line a delivery at MaxRetries leaves
	}{
		{WhatsmeowReceipts, []want{{1, false}, {2, true}}, "no retry receipt for"},
		{FreshBundleReceipts, []want{{1, true}, {1, true}}, ""},
	} {
		c := newTestContacts(t, ContactRules{Receipts: tc.rule})
		dev := c.device
		p, msg, _, _, ok := c.Reply(ReplyOp{Peer: "alice.0", Msg: "r1"})
		if !ok {
			t.Fatal("reply to alice.0 did not apply")
		}
		garbage := func(id string, retry int) *fakeserver.Delivery {
			return &fakeserver.Delivery{ID: id, Msg: msg, Retry: retry, From: dev, To: p.Address(), Kind: endpoint.Msg, CT: []byte("not a message")}
		}
		for i, w := range tc.reads {
			rc, err := c.Read(ctx, garbage("r1", 0))
			if err != nil {
				t.Fatalf("rule %d read %d: %v", tc.rule, i, err)
			}
			if rc == nil || rc.Count != w.count || (rc.Bundle != nil) != w.keys || rc.Peer != p || rc.Body != "reply r1" {
				t.Fatalf("rule %d read %d: receipt %+v, want count %d keys %v", tc.rule, i, rc, w.count, w.keys)
			}
			h := c.Result().History
			if last := h[len(h)-1]; strings.Contains(last, "with keys") != (w.keys && tc.rule == WhatsmeowReceipts) {
				t.Errorf("rule %d read %d: line %q", tc.rule, i, last)
			}
		}
		c.Reply(ReplyOp{Peer: "alice.0", Msg: "r2"})
		msg = "r2"
		n := len(c.Result().History)
		rc, err := c.Read(ctx, garbage("r2", fakeserver.MaxRetries))
		if err != nil || rc != nil {
			t.Fatalf("rule %d: a delivery at MaxRetries gave receipt %+v, %v", tc.rule, rc, err)
		}
		h := c.Result().History[n:]
		if !strings.Contains(h[0], "r2: ") || (tc.limit == "") != (len(h) == 1) || (tc.limit != "" && !strings.Contains(h[1], tc.limit)) {
			t.Errorf("rule %d: lines at MaxRetries %q, want the attempt then %q", tc.rule, h, tc.limit)
		}
		for _, m := range c.Result().Messages {
			for _, a := range m.Attempts {
				if a.OK || a.Class == endpoint.OldCounter {
					t.Errorf("rule %d: attempt %+v: garbage must fail other than old counter", tc.rule, a)
				}
			}
		}
	}
}
