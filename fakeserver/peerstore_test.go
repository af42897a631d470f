package fakeserver

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/whatsmeow/types"
)

// A peer's session loaded from its stored structure is the record a JSON
// round trip of the stored bytes gives, field for field (nil and empty
// told apart), through a conversation with replies, a rekey and a retry
// rebuild, and the structure path is actually taken.
func TestPeerLoadIsJSONRoundTrip(t *testing.T) {
	ctx := context.Background()
	srv := New()
	alice, err := NewPeer(ctx, srv, "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := install(ctx, srv, types.JID{User: "bot", Server: types.DefaultUserServer})
	if err != nil {
		t.Fatal(err)
	}
	to := dev.Address()
	key := to.String()
	sends, checks := 0, 0
	check := func(when string, flush bool) {
		t.Helper()
		st, ok := alice.signal.sessions.pending[key]
		if !ok {
			return // written by another path: the next load decodes the JSON
		}
		checks++
		raw, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		var want record.SessionStructure
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if got := copySession(st); !reflect.DeepEqual(got, &want) {
			t.Fatalf("%s: the stored structure's copy differs from the JSON round trip", when)
		}
		// What libsignal rebuilds from either serialises to the same bytes.
		a, err := record.NewSessionFromStructure(copySession(st), pb.Session, pb.State)
		if err != nil {
			t.Fatal(err)
		}
		b, err := record.NewSessionFromBytes(raw, pb.Session, pb.State)
		if err != nil {
			t.Fatal(err)
		}
		if string(a.Serialize()) != string(b.Serialize()) {
			t.Fatalf("%s: rebuilt records differ", when)
		}
		if !flush {
			return
		}
		// Read as bytes, the store hands out what whatsmeow would have
		// written, and the next load decodes them.
		got, err := alice.Device.Sessions.GetSession(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(a.Serialize()) {
			t.Fatalf("%s: the store holds other bytes than the record's JSON", when)
		}
		if _, ok := alice.signal.sessions.pending[key]; ok {
			t.Fatalf("%s: still pending after a read", when)
		}
	}
	for i := range 12 {
		d, err := alice.Send(ctx, to, fmt.Sprintf("m%d", i), "hello")
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("after sending m%d", i), i%4 == 3)
		if _, err := dev.DecryptDM(ctx, d.From, d.Kind, d.CT); err != nil {
			t.Fatalf("m%d: %v", i, err)
		}
		if i%3 == 1 { // a reply: the peer's next send starts a new chain
			kind, ct, err := dev.Encrypt(ctx, alice.Address(), Payload{ID: fmt.Sprintf("r%d", i), Body: "re"}.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := alice.Read(ctx, &Delivery{From: to, Kind: kind, CT: ct}); err != nil {
				t.Fatalf("r%d: %v", i, err)
			}
		}
		if i == 5 {
			if err := alice.Rekey(ctx, to); err != nil {
				t.Fatal(err)
			}
			check("after the rekey", false)
		}
		if i == 8 {
			if _, err := alice.Retry(ctx, to, "m8", 2, dev.Bundle(nil)); err != nil {
				t.Fatal(err)
			}
			check("after a retry rebuilt from keys", true)
		}
		sends++
	}
	if checks < sends || alice.signal.Reused < sends/2 {
		t.Fatalf("%d sends: the stored structure was checked %d times and reused by %d loads", sends, checks, alice.signal.Reused)
	}
}
