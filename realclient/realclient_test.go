package realclient

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness/webledger"
)

// logs collects client and server lines; printed when a test fails (t.Log
// must not be called after the test ends, and client goroutines may).
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *logs) dump(t *testing.T, srv *waweb.Server) {
	if !t.Failed() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		t.Log(s)
	}
	for _, s := range srv.Log() {
		t.Log("server:", s)
	}
}

var botJID = types.JID{User: "10000000001", Device: 5, Server: types.DefaultUserServer}

type rig struct {
	srv  *waweb.Server
	cv   *waweb.Conversation
	peer *fakeserver.Peer
	bot  *Bot
	logs *logs
	path string
	db   *sqlstore.Container
	opts Options
}

func newRig(t *testing.T, opts Options) *rig {
	t.Helper()
	return newRigWith(t, opts, nil)
}

// newRigWith is newRig with a hook on the provisioned device (to plug a
// candidate store under it).
func newRigWith(t *testing.T, opts Options, plug func(*store.Device)) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ca := waweb.DefaultCA()
	Trust(ca)
	srv, err := waweb.Listen(ca)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{srv: srv, cv: waweb.NewConversation(srv), logs: &logs{}, path: filepath.Join(t.TempDir(), "bot.db")}
	t.Cleanup(func() {
		if r.bot != nil {
			r.bot.Stop()
		}
		_ = srv.Close()
		r.logs.dump(t, srv)
	})
	if r.peer, err = r.cv.AddPeer(ctx, "alice", 1); err != nil {
		t.Fatal(err)
	}
	if r.db, err = OpenSQLite(ctx, r.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.db.Close() })
	dev, err := Provision(ctx, r.db, botJID)
	if err != nil {
		t.Fatal(err)
	}
	if plug != nil {
		plug(dev)
	}
	opts.Log = r.logs.add
	r.opts = opts
	if r.bot, err = Start(ctx, srv.HTTPClient(), ConvRecorder{CV: r.cv, Keys: KeysOf(dev)}, dev, opts); err != nil {
		t.Fatal(err)
	}
	return r
}

// restart stops the client, closes the database, runs whileDown and starts
// a new client on the same database file, as a redeploy does.
func (r *rig) restart(t *testing.T, whileDown func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r.bot.Stop()
	r.bot = nil
	if err := r.db.Close(); err != nil {
		t.Fatal(err)
	}
	whileDown()
	var err error
	if r.db, err = OpenSQLite(ctx, r.path); err != nil {
		t.Fatal(err)
	}
	dev, err := r.db.GetDevice(ctx, botJID)
	if err != nil || dev == nil {
		t.Fatalf("device %s after restart: %v (nil: %t)", botJID, err, dev == nil)
	}
	if r.bot, err = Start(ctx, r.srv.HTTPClient(), ConvRecorder{CV: r.cv, Keys: KeysOf(dev)}, dev, r.opts); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) send(t *testing.T, id, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.cv.Send(ctx, r.peer, id, body); err != nil {
		t.Fatal(err)
	}
	if err := r.cv.L.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func hasLine(log []string, prefix string) bool {
	return slices.ContainsFunc(log, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

// An iq the server does not know is answered with an error at once (never
// left for whatsmeow's 75 s timeout) and logged.
func TestUnknownIQAnsweredWithError(t *testing.T) {
	r := newRig(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.bot.Client.DangerousInternals().SendIQ(ctx, whatsmeow.DangerousInfoQuery{
		Namespace: "w:nosuch", Type: "get", To: types.ServerJID, Content: []waBinary.Node{{Tag: "x"}}})
	if err == nil || !strings.Contains(err.Error(), "501") {
		t.Fatalf("unknown iq: err = %v, want a 501 error", err)
	}
	if !hasLine(r.srv.Log(), "server: unknown iq answered with error 501") {
		t.Errorf("unknown iq not logged:\n%s", strings.Join(r.srv.Log(), "\n"))
	}
}

// The must-show test: an unmodified whatsmeow Client logs in to the fake
// server, a peer's pkmsg then msg arrive as events.Message with the right
// plaintext, and the client's receipts reach the server. The bot replies
// from its handler: a Signal initiator sends pkmsg until it has read a
// message on the session, so the reply is what makes m2 a msg.
func TestRealClientReceivesPkmsgThenMsg(t *testing.T) {
	r := newRig(t, Options{Reply: Inline})
	r.send(t, "m1", "hello from alice")
	r.send(t, "m2", "second message")
	if got, want := r.bot.Texts(), []string{"m1=hello from alice", "m2=second message"}; !slices.Equal(got, want) {
		t.Fatalf("events.Message texts = %q, want %q", got, want)
	}
	log := r.srv.Log()
	for _, want := range []string{"login " + botJID.String(), "prekeys uploaded", "deliver m1 pkmsg", "deliver m2 msg", "receipt m1", "receipt m2",
		"peer alice.1: re-m1 msg count=0 ok", "peer alice.1: re-m2 msg count=0 ok"} {
		if !hasLine(log, want) {
			t.Errorf("server log has no line %q:\n%s", want, strings.Join(log, "\n"))
		}
	}
	for _, m := range webledger.Messages(r.cv.L) {
		if o := m.Outcome(); o != "delivered" {
			t.Errorf("%s: %s %+v", m.ID, o, m.Attempts)
		}
	}
}
