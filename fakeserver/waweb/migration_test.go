package waweb

import (
	"context"
	"strconv"
	"strings"
	"testing"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
)

// usync <lid/> (GetUserInfo, user.go:203-251 at the pinned whatsmeow) is
// answered with a contact's LID only once the server speaks both of its
// forms or the account is migrated, and with the account's own LID only
// after the migration; <success> names the account's LID only when it has
// one. A run that sets neither (every Baileys run outside a LID schedule) gets the answers it got
// before LIDs.
func TestUsyncLID(t *testing.T) {
	srv, cv := withPeers(t, "alice.0", "bob.0")
	srv.mu.Lock()
	srv.device = types.JID{User: "10000000001", Device: 5, Server: types.DefaultUserServer}
	srv.mu.Unlock()
	ask := func() map[string]string {
		var users []waBinary.Node
		for _, u := range []string{"alice", "bob", "10000000001"} {
			users = append(users, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": types.NewJID(u, types.DefaultUserServer)}})
		}
		q := waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{"id": "1"}, Content: []waBinary.Node{{Tag: "usync", Content: []waBinary.Node{
			{Tag: "query", Content: []waBinary.Node{{Tag: "devices"}, {Tag: "lid"}}},
			{Tag: "list", Content: users}}}}}
		r := srv.usync(&q)
		got := map[string]string{}
		list := r.GetChildByTag("usync", "list")
		for _, u := range list.GetChildren() {
			if l, ok := u.GetOptionalChildByTag("lid"); ok {
				got[u.Attrs["jid"].(types.JID).User] = l.Attrs["val"].(types.JID).String()
			}
		}
		return got
	}
	check := func(step string, want map[string]string) {
		t.Helper()
		got := ask()
		if len(got) != len(want) {
			t.Errorf("%s: usync LIDs %v, want %v", step, got, want)
			return
		}
		for u, l := range want {
			if got[u] != l {
				t.Errorf("%s: usync LIDs %v, want %v", step, got, want)
			}
		}
	}
	check("PN only", map[string]string{})
	if _, ok := srv.successAttrs(srv.Device())["lid"]; ok {
		t.Errorf("<success> names a LID for an account without one")
	}
	cv.SetPhase("alice", PhaseMixed)
	check("alice mixed", map[string]string{"alice": "900001@lid"})
	srv.SetOwnLID("800001")
	if got, _ := srv.successAttrs(srv.Device())["lid"].(types.JID); got.String() != "800001:5@lid" {
		t.Errorf("<success lid=%v>, want 800001:5@lid", got)
	}
	check("own LID, not migrated", map[string]string{"alice": "900001@lid"})
	cv.addr.mu.Lock()
	cv.addr.migrated = true
	cv.addr.mu.Unlock()
	check("migrated", map[string]string{"alice": "900001@lid", "bob": "900002@lid", "10000000001": "800001@lid"})
}

// withPeers is a server on loopback (closed when the test ends) with a
// conversation and its contact devices, "user.device", added in order.
func withPeers(t *testing.T, devices ...string) (*Server, *Conversation) {
	t.Helper()
	srv, err := Listen(DefaultCA())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cv := NewConversation(srv)
	for _, d := range devices {
		user, dev, _ := strings.Cut(d, ".")
		n, err := strconv.Atoi(dev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cv.AddPeer(context.Background(), user, uint16(n)); err != nil {
			t.Fatal(err)
		}
	}
	return srv, cv
}
