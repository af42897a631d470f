package realclient

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/harness/webledger"
)

// checkDurable: what the database made durable survived: the identity the
// peers know, and every one-time prekey the server still hands out (a
// contact given a lost one would fail with InvalidPreKey).
func checkDurable(t *testing.T, r *rig, identity []byte) {
	t.Helper()
	ctx := context.Background()
	st := r.bot.Client.Store
	if !bytes.Equal(st.IdentityKey.Pub[:], identity) {
		t.Errorf("identity key changed across the restart")
	}
	lost := 0
	unclaimed := r.srv.Core.Unclaimed(botJID.SignalAddress())
	for _, pk := range unclaimed {
		got, err := st.PreKeys.GetPreKey(ctx, pk.KeyID)
		if err != nil || got == nil || *got.Pub != *pk.Pub {
			lost++
		}
	}
	if lost > 0 || len(unclaimed) == 0 {
		t.Errorf("%d of %d uploaded, unclaimed prekeys missing from the store", lost, len(unclaimed))
	}
}

func checkAllDelivered(t *testing.T, r *rig, want int) {
	t.Helper()
	msgs := webledger.Messages(r.cv.L)
	if len(msgs) != want {
		t.Errorf("%d messages in the ledger, want %d", len(msgs), want)
	}
	for _, m := range msgs {
		if o := m.Outcome(); o != harness.Delivered {
			t.Errorf("%s: %s %+v", m.ID, o, m.Attempts)
		}
	}
}

// A clean restart mid-conversation (close the client and the database,
// reopen the same file): a message sent while the bot is down waits in the
// server's offline queue and arrives after the login; the conversation
// continues both ways and nothing durable is lost.
func TestRestartContinuesConversation(t *testing.T) {
	r := newRig(t, Options{Reply: Inline})
	r.send(t, "m1", "one")
	r.send(t, "m2", "two")
	identity := append([]byte(nil), r.bot.Client.Store.IdentityKey.Pub[:]...)
	ctx := context.Background()
	r.restart(t, func() {
		if err := r.cv.Send(ctx, r.peer, "m3", "sent while the bot is down"); err != nil {
			t.Fatal(err)
		}
	})
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := r.cv.L.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	r.send(t, "m4", "after the restart")
	if !hasLine(r.srv.Log(), "queue m3 (device offline)") {
		t.Errorf("m3 was not held for the offline device")
	}
	checkAllDelivered(t, r, 8)
	checkDurable(t, r, identity)
}

// A network drop in the middle of a burst: the server closes the socket,
// whatsmeow reconnects by itself, the stanzas it had not acknowledged come
// again from the offline queue, and the conversation goes on. No text is
// lost; what happened to the replies in flight is logged.
func TestReconnectRedeliversUnacknowledged(t *testing.T) {
	r := newRig(t, Options{Reply: Inline})
	r.send(t, "m1", "before the drop")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, id := range []string{"m2", "m3", "m4"} {
		if err := r.cv.Send(ctx, r.peer, id, "burst "+id); err != nil {
			t.Fatal(err)
		}
	}
	r.srv.Kick()
	if err := r.cv.L.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	r.send(t, "m5", "after the drop")
	t.Logf("message handlers that overlapped another: %d", r.bot.Overlaps())
	if n := countLines(r.srv.Log(), "login "); n < 2 {
		t.Errorf("%d logins, want the client to reconnect", n)
	}
	for _, m := range webledger.Messages(r.cv.L) {
		o := m.Outcome()
		switch {
		case m.Dir == harness.In && (o == harness.Lost || o == harness.Wrong):
			t.Errorf("%s: %s %+v", m.ID, o, m.Attempts)
		case (m.ID == "m5" || m.ID == "re-m5") && o != harness.Delivered:
			t.Errorf("%s after the reconnect: %s %+v", m.ID, o, m.Attempts)
		case o != harness.Delivered:
			t.Logf("around the drop: %s %s %+v", m.ID, o, m.Attempts)
		}
	}
}
