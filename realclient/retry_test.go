package realclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/store"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/harness/webledger"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

func countLines(log []string, prefix string) int {
	n := 0
	for _, s := range log {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func message(t *testing.T, r *rig, id string) *harness.Message {
	t.Helper()
	for _, m := range webledger.Messages(r.cv.L) {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no message %s in the ledger", id)
	return nil
}

func classes(m *harness.Message) []endpoint.Class {
	var out []endpoint.Class
	for _, a := range m.Failures() {
		out = append(out, a.Class)
	}
	return out
}

// The retry cycle end to end, device side: the device loses its session
// with alice; her next msg fails (NoSession), whatsmeow sends a retry
// receipt without keys (count 1), alice encrypts again on her session and
// fails again, the count-2 receipt carries <keys>, alice rebuilds from them
// and the pkmsg decrypts. The ledger's counts match the server's log.
func TestRetryCycleDeviceLostSession(t *testing.T) {
	r := newRig(t, Options{Reply: Inline})
	r.send(t, "m1", "before")
	ctx := context.Background()
	if err := r.bot.Client.Store.Sessions.DeleteSession(ctx, r.peer.Address().String()); err != nil {
		t.Fatal(err)
	}
	r.send(t, "m2", "after the loss")
	m := message(t, r, "m2")
	if o := m.Outcome(); o != harness.Recovered {
		t.Fatalf("m2: %s, want recovered: %+v", o, m.Attempts)
	}
	if got := classes(m); !slices.Equal(got, []endpoint.Class{endpoint.NoSession, endpoint.NoSession}) {
		t.Errorf("m2 failures %v, want two NoSession", got)
	}
	log := r.srv.Log()
	for _, want := range []string{"retry-receipt m2 count=1 keys=false", "retry-receipt m2 count=2 keys=true",
		"peer alice.1 rebuilt session for m2 (keys in receipt)", "deliver m2 pkmsg count=2", "peer alice.1: re-m2 msg count=0 ok"} {
		if !hasLine(log, want) {
			t.Errorf("server log has no %q:\n%s", want, strings.Join(log, "\n"))
		}
	}
	in, _ := r.cv.L.Retries()
	if n := countLines(log, "retry-receipt "); in != n || in != 2 {
		t.Errorf("ledger counts %d retry receipts from the device, server log %d, want 2", in, n)
	}
	if n := countLines(log, "deliver m2 "); n != len(m.Attempts) {
		t.Errorf("server delivered %d copies of m2, device made %d attempts", n, len(m.Attempts))
	}
}

// The other direction: alice loses her session with the device; the bot's
// next message fails at her end, her retry receipts go to the real client,
// whatsmeow's handleRetryReceipt encrypts again at count 1 and rebuilds from
// her <keys> at count 2; the pkmsg decrypts.
func TestRetryCyclePeerLostSession(t *testing.T) {
	r := newRig(t, Options{Reply: Inline})
	r.send(t, "m1", "hello")
	ctx := context.Background()
	if err := r.peer.Device.Sessions.DeleteSession(ctx, BotJID.SignalAddress().String()); err != nil {
		t.Fatal(err)
	}
	r.bot.Send(r.peer.JID, "o1", "are you there?")
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := r.cv.L.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	m := message(t, r, "o1")
	if o := m.Outcome(); o != harness.Recovered {
		t.Fatalf("o1: %s, want recovered: %+v", o, m.Attempts)
	}
	if got := classes(m); !slices.Equal(got, []endpoint.Class{endpoint.NoSession, endpoint.NoSession}) {
		t.Errorf("o1 failures %v, want two NoSession", got)
	}
	log := r.srv.Log()
	for _, want := range []string{"peer alice.1: retry-receipt o1 count=1 keys=false", "peer alice.1: retry-receipt o1 count=2 keys=true",
		"peer alice.1: o1 pkmsg count=2 ok"} {
		if !hasLine(log, want) {
			t.Errorf("server log has no %q:\n%s", want, strings.Join(log, "\n"))
		}
	}
	_, out := r.cv.L.Retries()
	if n := countLines(log, "peer alice.1: retry-receipt "); out != n || out != 2 {
		t.Errorf("ledger counts %d retry receipts from the peer, server log %d, want 2", out, n)
	}
}

// With one stanza in flight (burst 1) in serial mode the real client's
// run is deterministic: no send overlaps a receive, and nothing may fail,
// for replies from the handler and from a goroutine alike.
func TestReplyOneInFlightDelivers(t *testing.T) {
	for _, mode := range []Reply{Inline, Async} {
		t.Run(string(mode), func(t *testing.T) {
			pr := runDeviceIn(t, harness.Serial, &Device{Reply: mode, Dir: t.TempDir()},
				"reply:messages=8:contacts=2:burst=1:reply=1", stores.MustLookup("sqlite"), 2)
			if c := pr.Counts; pr.Failed != 0 || c.Messages != 32 || c.Delivered != 32 {
				t.Fatalf("%d of %d schedules failed, %+v; want 32 messages (2 × 8 in, 8 replies) all delivered", pr.Failed, pr.Schedules, c)
			}
		})
	}
}

// Free running, replies from goroutines: whatever the interleaving, the
// result accounts for every message the schedule sent (and no other), and
// the run's own check holds (the ledger's retry receipts are the server
// log's, retriesAgree).
func TestReplyFreeRunAccounting(t *testing.T) {
	if testing.Short() {
		t.Skip("free-running conversation")
	}
	sc, err := scenarios.Lookup("reply:messages=24:contacts=2:burst=4:reply=1")
	if err != nil {
		t.Fatal(err)
	}
	const seed = 3
	sched, res, err := harness.RunOn(context.Background(), &Device{Reply: Async, Dir: t.TempDir()},
		sc.Setup(seed, harness.Whatsmeow, "sqlite"), harness.Free, scenarios.NewGenerator(sc, scenarios.Random, seed))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, op := range sched.Ops {
		switch op := op.(type) {
		case harness.SendOp:
			want[op.Msg] = harness.In
		case harness.ReplyOp:
			want[op.Msg] = harness.Out
		}
	}
	in := 0
	for _, m := range res.Messages {
		if d, ok := want[m.ID]; !ok || d != m.Dir {
			t.Errorf("%s: direction %q, the schedule's %q (sent: %t)", m.ID, m.Dir, d, ok)
		}
		delete(want, m.ID)
		if m.Dir == harness.In {
			in++
		}
	}
	if in != 24 || len(want) != 0 {
		t.Errorf("%d inbound messages, want 24; sent but not in the result: %v", in, want)
	}
	c := res.Counts()
	t.Logf("free run, async replies: %d msgs, %d not delivered cleanly, failures %v", c.Messages, c.Blamed, c.Failures)
}

// failingReads is a session store whose reads fail once broken is set.
type failingReads struct {
	store.SessionStore
	broken atomic.Bool
}

func (f *failingReads) GetSession(ctx context.Context, addr string) ([]byte, error) {
	if f.broken.Load() {
		return nil, errors.New("disk on fire")
	}
	return f.SessionStore.GetSession(ctx, addr)
}

// Every copy of a message failing: whatsmeow sends retry receipts with
// counts 1 to 4, <keys> from count 2, none after the 5th failure; the
// message is lost after 5 attempts, and the ledger, the server log and the
// counts agree.
func TestRetryGivesUpAfterFive(t *testing.T) {
	var fr *failingReads
	r := newRigWith(t, Options{Reply: Inline}, func(dev *store.Device) {
		fr = &failingReads{SessionStore: dev.Sessions}
		dev.Sessions = fr
	})
	r.send(t, "m1", "fine")
	fr.broken.Store(true)
	r.send(t, "m2", "never readable")
	m := message(t, r, "m2")
	if o := m.Outcome(); o != harness.Lost || len(m.Attempts) != MaxAttempts {
		t.Fatalf("m2: %s after %d attempts, want lost after %d: %+v", o, len(m.Attempts), MaxAttempts, m.Attempts)
	}
	log := r.srv.Log()
	for c := 1; c <= 4; c++ {
		want := fmt.Sprintf("retry-receipt m2 count=%d keys=%t", c, c > 1)
		if !hasLine(log, want) {
			t.Errorf("server log has no %q", want)
		}
	}
	in, _ := r.cv.L.Retries()
	if n := countLines(log, "retry-receipt m2 "); n != 4 || in != 4 {
		t.Errorf("retry receipts: server log %d, ledger %d, want 4", n, in)
	}
	if c := (&harness.Result{Messages: webledger.Messages(r.cv.L)}).Counts(); c.Lost != 1 || c.Failures[endpoint.Other]+c.Failures[endpoint.StoreError] != MaxAttempts {
		t.Errorf("counts %+v, want 1 lost with %d failed attempts", c, MaxAttempts)
	}
}

// retriesAgree, both ways: a ledger that saw no retry receipt agrees with
// a log that has none and disagrees with one that has a device's or a
// contact's (read by weblog, not by prefix: a queued receipt is neither).
func TestRetriesAgree(t *testing.T) {
	l := waweb.NewLedger()
	for _, c := range []struct {
		log []string
		ok  bool
	}{
		{[]string{"deliver m1 pkmsg count=0", "queue retry-receipt m1 (device offline)"}, true},
		{[]string{"retry-receipt m1 count=1 keys=false"}, false},
		{[]string{"peer alice.0: retry-receipt r1 count=2 keys=true"}, false},
	} {
		if err := retriesAgree(l, c.log); (err == nil) != c.ok {
			t.Errorf("%q: %v, want ok %t", c.log, err, c.ok)
		}
	}
}
