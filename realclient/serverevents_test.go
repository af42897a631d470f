package realclient

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/harness/webledger"
)

func schedule(store string, ops string, users ...string) *harness.Schedule {
	s := &harness.Schedule{Seed: 1, Scenario: "reply", Discipline: harness.Whatsmeow, Store: store, Ops: opsOf(ops)}
	for _, u := range users {
		s.Contacts = append(s.Contacts, harness.Contact{User: u, Devices: 1})
	}
	return s
}

func opsOf(text string) []harness.Op { return ops(text) }

// What the server says besides messages, on the real client in controlled
// mode: a contact fetching the device's bundle leaves it below whatsmeow's
// MinPreKeyCount, the server says so, and the client's notification
// goroutine uploads a new batch (whatsmeow's own prekey top-up, its store
// calls parked as any other); a contact that got the bot's reply sends a
// delivery receipt, which the client acknowledges; a login after a stop
// gets the offline queue and its end marker. The run is clean, and replays
// byte for byte.
func TestServerEventsOnRealClient(t *testing.T) {
	s := schedule("sqlite", `send alice.0 m1
send bob.0 m2
deliver m1
run recv
deliver m2
run recv
run notify
reply alice.0 r1
run recv
read r1
stop
send carol.0 m3
deliver m3
restart
run recv`, "alice", "bob", "carol")
	dev := &Device{Reply: Inline, PreKeys: 6}
	res := replayExactly(t, dev, s, 3)
	h := res.HistoryText()
	for _, want := range []string{
		"notify 10000000001:5@s.whatsapp.net: 4 prekeys left",
		"step notify: GetOrGenPreKeys",
		"prekeys uploaded 10000000001:5@s.whatsapp.net: 50",
		"step notify: MarkPreKeysAsUploaded",
		"ack notification n1",
		"receipt r1 from alice.0",
		"ack receipt r1",
		"offline queue done: 1",
	} {
		if !strings.Contains(h, want+"\n") {
			t.Errorf("no %q in the history:\n%s", want, h)
		}
	}
	if res.Failed() || res.LostPreKeys != 0 {
		t.Errorf("failed %t, lost prekeys %d: %s", res.Failed(), res.LostPreKeys, res.Summary())
	}
	for _, m := range res.Messages {
		if m.Outcome() != harness.Delivered {
			t.Errorf("%s: %s", m.ID, m.Outcome())
		}
	}
}

// A second login of the device (a second process on the same database)
// replaces the first connection: the server sends the first the conflict
// stream error and closes it, whatsmeow reports events.StreamReplaced
// (and does not reconnect), and the second client carries on.
func TestSecondLoginConflict(t *testing.T) {
	r := newRig(t, Options{Reply: Inline})
	first := r.bot
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db2, err := OpenSQLite(ctx, r.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	dev2, err := db2.GetDevice(ctx, botJID)
	if err != nil || dev2 == nil {
		t.Fatalf("device in the second process: %v", err)
	}
	second, err := Start(ctx, r.srv.HTTPClient(), ConvRecorder{CV: r.cv, Keys: KeysOf(dev2)}, dev2, Options{Reply: Inline})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	for !first.Replaced() {
		select {
		case <-ctx.Done():
			t.Fatalf("the first client never got the conflict; server log:\n%s", strings.Join(r.srv.Log(), "\n"))
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !strings.Contains(strings.Join(r.srv.Log(), "\n"), "conflict: a second login replaced the connection") {
		t.Errorf("server log has no conflict line")
	}
	r.send(t, "m1", "hello")
	if err := r.cv.L.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range webledger.Messages(r.cv.L) {
		if m.Outcome() != harness.Delivered {
			t.Errorf("%s after the second login: %s %+v", m.ID, m.Outcome(), m.Attempts)
		}
	}
	// The first client did not come back: two logins, one conflict (a
	// close right behind the conflict made it reconnect now and then,
	// waweb events.go replaced).
	logins, conflicts := 0, 0
	for _, l := range r.srv.Log() {
		logins += strings.Count(l, "login 10000000001")
		conflicts += strings.Count(l, "conflict: a second login")
	}
	if logins != 2 || conflicts != 1 {
		t.Errorf("%d logins and %d conflicts, want 2 and 1; server log:\n%s", logins, conflicts, strings.Join(r.srv.Log(), "\n"))
	}
}
