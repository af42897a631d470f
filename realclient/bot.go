// Package realclient is the device under test as most Go bots run it: an
// unmodified whatsmeow.Client on a whatsmeow store.Device, connected to the
// loopback fake WhatsApp server (fakeserver/waweb), with an event handler
// that replies to every text the way bots do: from inside the handler
// (whatsmeow runs handlers in its handler queue, one stanza at a time) or
// from a goroutine the handler starts. What the client decrypts, fails to
// decrypt or drops is recorded in the conversation's ledger. Device runs
// the harness's schedules (any scenario's, with its workload parameters:
// reply:messages=30:burst=4:drop=0.2) on it, judged by the harness's
// oracle; `badmac client` and Check are presets of that run.
package realclient

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/petermattis/goid"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	waLog "go.mau.fi/whatsmeow/util/log"
	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // the driver behind sqlstore's "sqlite" dialect

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// Reply is how the bot answers a text.
type Reply string

const (
	NoReply Reply = "none"   // never replies
	Inline  Reply = "inline" // SendMessage inside the event handler
	Async   Reply = "async"  // SendMessage from a goroutine the handler starts
)

// Options configure a bot.
type Options struct {
	Reply Reply
	// Buffer turns on whatsmeow's EnableDecryptedEventBuffer: each decrypt
	// and its plaintext in one DoDecryptionTxn (sqlstore only).
	Buffer bool
	// Log receives the client's warnings and errors, one line each (nil: dropped).
	Log func(string)
	// ReplyRate is the share of texts answered (0 means all), decided per
	// message id from Seed so that a rerun answers the same texts.
	ReplyRate float64
	Seed      uint64
	// killBefore, killAfter (a child process): SIGKILL itself as its Nth
	// store call starts, or returns (ChildOptions.Kill).
	killBefore, killAfter int
	// Queue, when set, replaces the automatic answer to every text: each
	// chat state the client handles sends the next reply queued there, as
	// Reply says (from the handler or a goroutine it starts). Device uses
	// it to run a schedule's reply ops.
	Queue *ReplyQueue
}

// ReplyQueue holds replies a schedule asked for until the client's
// handler sends them (Device).
type ReplyQueue struct {
	mu sync.Mutex
	q  []queuedReply
}

type queuedReply struct {
	to       types.JID
	id, body string
}

// Push queues reply id with body to user to.
func (q *ReplyQueue) Push(to types.JID, id, body string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.q = append(q.q, queuedReply{to: to, id: id, body: body})
}

// Len is how many replies wait.
func (q *ReplyQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q)
}

// requeue puts rs back at the front, in order.
func (q *ReplyQueue) requeue(rs []queuedReply) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.q = append(append([]queuedReply(nil), rs...), q.q...)
}

func (q *ReplyQueue) pop() (queuedReply, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return queuedReply{}, false
	}
	r := q.q[0]
	q.q = q.q[1:]
	return r, true
}

// answers reports whether the bot replies to message id.
func (o Options) answers(id string) bool {
	if o.ReplyRate <= 0 || o.ReplyRate >= 1 {
		return true
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", o.Seed, id)
	return float64(h.Sum64()>>11)/(1<<53) < o.ReplyRate
}

// OpenSQLite opens (creating if needed) a whatsmeow database in the SQLite
// file at path and runs whatsmeow's schema upgrade.
func OpenSQLite(ctx context.Context, path string) (*sqlstore.Container, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("realclient: sqlite %s: path must not contain '?' or '#'", path)
	}
	// synchronous(NORMAL) as stores/sqlstores: in WAL mode a commit
	// survives the process's death (SIGKILL), not the machine's.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("realclient: open %s: %w", path, err)
	}
	c := newContainer(db, "sqlite")
	if err := c.Upgrade(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("realclient: upgrade %s: %w", path, err)
	}
	return c, nil
}

// OpenPostgres opens a whatsmeow database on PostgreSQL at dsn (naming the
// database) and runs whatsmeow's schema upgrade.
func OpenPostgres(ctx context.Context, dsn string) (*sqlstore.Container, error) {
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("realclient: postgres: %w", err)
	}
	c := newContainer(stdlib.OpenDB(*pc), "postgres")
	if err := c.Upgrade(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("realclient: postgres upgrade: %w", err)
	}
	return c, nil
}

// Provision creates a logged-in device without pairing: a new device in c
// with the given JID and an (empty) account signature, saved. whatsmeow
// checks no signature on connect (docs/design.md §8).
func Provision(ctx context.Context, c *sqlstore.Container, jid types.JID) (*store.Device, error) {
	dev := c.NewDevice()
	dev.ID = &jid
	// sqlstore's columns are NOT NULL; nothing checks the signatures.
	dev.Account = &waAdv.ADVSignedDeviceIdentity{Details: []byte("badmac"), AccountSignature: make([]byte, 64),
		AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
	if err := dev.Save(ctx); err != nil {
		return nil, fmt.Errorf("realclient: save device %s: %w", jid, err)
	}
	return dev, nil
}

// UploadPreKeys is the device's first prekey upload, done before its
// client starts: whatsmeow's batch (WantedPreKeyCount, 50, prekeys.go
// uploadPreKeys at the pinned commit) generated in its store, marked
// uploaded and handed to the server. A client that logs in then finds
// enough on both sides (handleConnectSuccess uploads only below
// MinPreKeyCount), as a bot that has run before does; a device without
// them would generate and upload 812 at its first login, half the cost of
// a short schedule. n, when positive, is the batch instead.
func UploadPreKeys(ctx context.Context, dev *store.Device, srv *fakeserver.Server, n int) error {
	if n <= 0 {
		n = whatsmeow.WantedPreKeyCount
	}
	pks, err := dev.PreKeys.GetOrGenPreKeys(ctx, uint32(n))
	if err != nil {
		return fmt.Errorf("realclient: prekeys: %w", err)
	}
	if err := dev.PreKeys.MarkPreKeysAsUploaded(ctx, pks[len(pks)-1].KeyID); err != nil {
		return fmt.Errorf("realclient: prekeys: %w", err)
	}
	dk := KeysOf(dev)
	srv.Upload(dev.ID.SignalAddress(), (&endpoint.Endpoint{JID: dk.JID, Creds: dk.Creds}).Bundle, pks)
	return nil
}

// Recorder is where the bot reports what the client did: the conversation's
// ledger in process (ConvRecorder), a line protocol to the parent from a
// child process.
type Recorder interface {
	Expect(id, dir, peer, body string)
	Known(id string) bool
	// Accepted: events.Message for id with body.
	Accepted(id, body string)
	// Undecryptable: events.UndecryptableMessage for id; r is what the
	// store returned to the handler's goroutine (Classify).
	Undecryptable(id string, r *Reads)
	SendFailed(id string, err error)
}

// ConvRecorder records into a conversation's ledger, and classifies a copy
// the client failed from the stanza the conversation sent (TakeCopy).
type ConvRecorder struct {
	CV   *waweb.Conversation
	Keys DeviceKeys
}

func (r ConvRecorder) Expect(id, dir, peer, body string) { r.CV.L.Expect(id, dir, peer, body) }
func (r ConvRecorder) Known(id string) bool              { return r.CV.L.Known(id) }
func (r ConvRecorder) SendFailed(id string, err error)   { r.CV.L.SendFailed(id, err) }
func (r ConvRecorder) Sending(id string, on bool)        { r.CV.L.Sending(id, on) }
func (r ConvRecorder) GaveUp(id string)                  { r.CV.L.GaveUp(id) }

func (r ConvRecorder) Accepted(id, body string) {
	r.CV.TakeCopy(id)
	r.CV.L.Accepted(id, body)
}

func (r ConvRecorder) Undecryptable(id string, reads *Reads) {
	node, ok := r.CV.TakeCopy(id)
	if !ok {
		r.CV.L.Attempt(id, false, "", endpoint.Other, fmt.Errorf("undecryptable, but no copy of %s was sent", id))
		return
	}
	class, err := Classify(context.Background(), r.Keys, node, reads)
	r.CV.L.Attempt(id, false, "", class, err)
}

// Bot is a connected whatsmeow client replying to texts.
type Bot struct {
	Client *whatsmeow.Client
	L      Recorder
	opts   Options
	tap    *tap // what the store returned to each goroutine
	ctl    *ctl // controlled mode; nil when the client runs freely
	// client is this client process's label in a controlled run
	// (ctl.newClient): every goroutine it starts carries it.
	client string
	// dead: the process was killed (kill). Its goroutines unwind (every
	// store call fails) and nothing they do is recorded.
	dead     atomic.Bool
	inflight []queuedReply // replies popped and not sent yet
	replaced atomic.Bool   // another login of the device took over

	connected chan struct{}
	// logins counts events.Connected: the end of each login's
	// handleConnectSuccess (a drop's reconnect is the next).
	logins    atomic.Int64
	once      sync.Once
	replies   sync.WaitGroup
	mu        sync.Mutex
	texts     []string // "id=body" of every accepted text, in order
	inHandler int      // message handlers running now
	overlap   int      // times a handler started while another ran
}

// Overlaps counts the times an events.Message handler started while
// another was still running. whatsmeow runs handlers one at a time per
// connection; after a reconnect the new connection's handler queue runs
// while the old connection's last handler (say, blocked in an inline
// SendMessage) is still going.
func (b *Bot) Overlaps() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.overlap
}

// Start connects a client on dev to the server hc dials (waweb's
// Server.HTTPClient) and waits until whatsmeow reports Connected (prekeys
// counted or uploaded, passive set). The client's store calls go through
// a probe (Reads for Classify); it runs freely.
func Start(ctx context.Context, hc *http.Client, l Recorder, dev *store.Device, opts Options) (*Bot, error) {
	b, err := newBot(hc, l, dev, opts, nil)
	if err != nil {
		return nil, err
	}
	// The connection lives until Stop, not until ctx (which bounds the wait).
	if err := b.Client.Connect(); err != nil {
		return nil, fmt.Errorf("realclient: connect: %w", err)
	}
	select {
	case <-b.connected:
		return b, nil
	case <-ctx.Done():
		b.Client.Disconnect()
		return nil, fmt.Errorf("realclient: waiting for Connected: %w", ctx.Err())
	}
}

var keepaliveOnce sync.Once

// noKeepalive pushes whatsmeow's keepalive pings beyond any run: its loop
// waits a random 20–30 s between w:p pings (keepalive.go keepAliveLoop,
// KeepAliveIntervalMin/Max at the pinned commit), a timer a controlled
// run must not meet. The variables are the package's, so they are set once,
// before this process's first client starts.
func noKeepalive() {
	keepaliveOnce.Do(func() {
		whatsmeow.KeepAliveIntervalMin = 10000 * time.Hour
		whatsmeow.KeepAliveIntervalMax = 10001 * time.Hour
	})
}

// newBot makes the client on dev, its store behind the run's probe, not
// connected yet. c is the run's controlled mode (nil: free).
func newBot(hc *http.Client, l Recorder, dev *store.Device, opts Options, c *ctl) (*Bot, error) {
	if opts.Reply == "" {
		opts.Reply = NoReply
	}
	noKeepalive()
	b := &Bot{L: l, opts: opts, connected: make(chan struct{}), tap: newTap(c), ctl: c}
	if c != nil {
		b.client = c.newClient()
	}
	b.tap.killBefore, b.tap.killAfter = opts.killBefore, opts.killAfter
	set := stores.Set{Sessions: dev.Sessions, PreKeys: dev.PreKeys, Identities: dev.Identities, SenderKeys: dev.SenderKeys}
	if err := Plug(dev, b.tap.probe(set)); err != nil {
		return nil, err
	}
	if _, ok := dev.LIDs.(*killableLIDs); !ok {
		dev.LIDs = &killableLIDs{LIDStore: dev.LIDs, dead: &b.dead}
	}
	cli := whatsmeow.NewClient(dev, &clientLog{b: b})
	cli.SetWebsocketHTTPClient(hc)
	cli.EnableDecryptedEventBuffer = opts.Buffer
	if c != nil {
		// A dropped connection is the schedule's to decide: whatsmeow's
		// reconnect loop sleeps between tries (client.go autoReconnect).
		cli.EnableAutoReconnect = false
	}
	cli.AddEventHandler(b.handle)
	b.Client = cli
	return b, nil
}

// Replaced reports whether the server said another login of the device
// replaced this connection (events.StreamReplaced).
func (b *Bot) Replaced() bool { return b.replaced.Load() }

// kill is SIGKILL for a client in this process (controlled mode): from now
// on every store call of its goroutines fails without reaching the store,
// nothing they do is recorded, and the replies it had taken from the queue
// without getting them to the server go back to the queue's front (the
// bot's next process sends them, as the model's crash redoes a send). The
// caller closes the connection and releases the parked goroutines.
func (b *Bot) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dead.Store(true)
	b.tap.dead.Store(true)
	if b.opts.Queue != nil && len(b.inflight) > 0 {
		b.opts.Queue.requeue(b.inflight)
	}
	b.inflight = nil
}

// killableLIDs is the device's LID mapping store (whatsmeow's sqlstore,
// not one of the four probed stores), refusing every call once the client
// is killed. A killed client's handler queue may still take a stanza it
// had queued (client.go handlerQueueLoop selects between the queue and
// its cancelled context at random) and store the mapping a devices
// notification carries (notification.go handleDeviceNotification), which
// a SIGKILLed process never does: on lid-crash, seed 1000006's restarted
// client knew alice's LID on some runs and not on others.
type killableLIDs struct {
	store.LIDStore
	dead *atomic.Bool
}

func (k *killableLIDs) PutManyLIDMappings(ctx context.Context, m []store.LIDMapping) error {
	if k.dead.Load() {
		return errKilled
	}
	return k.LIDStore.PutManyLIDMappings(ctx, m)
}

func (k *killableLIDs) PutLIDMapping(ctx context.Context, lid, jid types.JID) error {
	if k.dead.Load() {
		return errKilled
	}
	return k.LIDStore.PutLIDMapping(ctx, lid, jid)
}

func (k *killableLIDs) GetPNForLID(ctx context.Context, lid types.JID) (types.JID, error) {
	if k.dead.Load() {
		return types.JID{}, errKilled
	}
	return k.LIDStore.GetPNForLID(ctx, lid)
}

func (k *killableLIDs) GetLIDForPN(ctx context.Context, pn types.JID) (types.JID, error) {
	if k.dead.Load() {
		return types.JID{}, errKilled
	}
	return k.LIDStore.GetLIDForPN(ctx, pn)
}

func (k *killableLIDs) GetManyLIDsForPNs(ctx context.Context, pns []types.JID) (map[types.JID]types.JID, error) {
	if k.dead.Load() {
		return nil, errKilled
	}
	return k.LIDStore.GetManyLIDsForPNs(ctx, pns)
}

// task names the calling goroutine (an async reply the bot started) for a
// controlled run's schedule, and holds it until the schedule steps it
// (ctl.hold). A killed client's goroutine is not held: it unwinds.
func (b *Bot) task(name string) {
	if b.ctl != nil {
		b.ctl.labelTask(b.client, name)
		if !b.dead.Load() {
			b.ctl.hold("SendMessage")
		}
	}
}

// isConnected reports whether whatsmeow has reported Connected.
func (b *Bot) isConnected() bool {
	select {
	case <-b.connected:
		return true
	default:
		return false
	}
}

// Stop disconnects and waits for replies still being sent.
func (b *Bot) Stop() {
	b.Client.Disconnect()
	b.replies.Wait()
}

// Texts returns "id=body" for every text the handler accepted, in order.
func (b *Bot) Texts() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.texts...)
}

// ReplyID is the message id of the bot's reply to message id.
func ReplyID(id string) string { return "re-" + id }

// ReplyBody is the text the bot answers body with.
func ReplyBody(body string) string { return "re: " + body }

func (b *Bot) handle(evt any) {
	if b.dead.Load() {
		return
	}
	switch e := evt.(type) {
	case *events.Connected:
		b.logins.Add(1)
		b.once.Do(func() { close(b.connected) })
	case *events.ChatPresence:
		b.scripted()
	case *events.StreamReplaced:
		b.replaced.Store(true)
	case *events.Receipt:
		if b.ctl != nil && len(e.MessageIDs) > 0 {
			b.ctl.setOrigin(goid.Get(), e.MessageIDs[0])
		}
	case *events.UndecryptableMessage:
		if b.ctl != nil {
			b.ctl.setOrigin(goid.Get(), e.Info.ID)
		}
		if e.Info.IsFromMe {
			return
		}
		b.L.Undecryptable(e.Info.ID, b.tap.take())
	case *events.Message:
		if b.ctl != nil {
			b.ctl.setOrigin(goid.Get(), e.Info.ID)
		}
		if e.Info.IsFromMe || e.Message.Conversation == nil {
			// Not a text: a group message's DM part that only carries the
			// sender key distribution is dispatched too (message.go
			// handleDecryptedMessage); its text comes in the skmsg part.
			return
		}
		id, body := e.Info.ID, e.Message.GetConversation()
		if e.Info.IsGroup {
			b.L.Accepted(id, body) // the bot answers only direct messages
			return
		}
		b.mu.Lock()
		b.texts = append(b.texts, id+"="+body)
		if b.inHandler > 0 {
			b.overlap++
		}
		b.inHandler++
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			b.inHandler--
			b.mu.Unlock()
		}()
		b.L.Accepted(id, body)
		if b.opts.Queue != nil || b.opts.Reply == NoReply || !b.opts.answers(id) || b.L.Known(ReplyID(id)) {
			return
		}
		rid := ReplyID(id)
		b.L.Expect(rid, harness.Out, e.Info.Sender.String(), ReplyBody(body))
		to := e.Info.Chat
		switch b.opts.Reply {
		case Inline:
			b.reply(to, rid, body)
		case Async:
			b.replies.Add(1)
			go func() {
				defer b.replies.Done()
				b.task("reply:" + rid)
				b.reply(to, rid, body)
			}()
		}
	}
}

// scripted sends the next queued reply (Options.Queue) from the handler,
// or from a goroutine it starts.
func (b *Bot) scripted() {
	if b.opts.Queue == nil {
		return
	}
	r, ok := b.opts.Queue.pop()
	if !ok {
		return
	}
	b.mu.Lock()
	b.inflight = append(b.inflight, r)
	b.mu.Unlock()
	send := func() {
		// A recorder that follows sends (waweb.Ledger) keeps the client
		// busy until SendMessage returns: a stop then does not cut its ack.
		if s, ok := b.L.(interface{ Sending(string, bool) }); ok && !b.dead.Load() {
			s.Sending(r.id, true)
			defer s.Sending(r.id, false)
		}
		_, err := b.Client.SendMessage(context.Background(), r.to,
			&waE2E.Message{Conversation: proto.String(r.body)}, whatsmeow.SendRequestExtra{ID: r.id})
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.dead.Load() {
			return
		}
		b.inflight = slices.DeleteFunc(b.inflight, func(q queuedReply) bool { return q.id == r.id })
		if err != nil {
			b.L.SendFailed(r.id, err)
		}
	}
	if b.opts.Reply != Async {
		send()
		return
	}
	b.replies.Add(1)
	go func() {
		defer b.replies.Done()
		b.task("reply:" + r.id)
		send()
	}()
}

func (b *Bot) reply(to types.JID, rid, body string) {
	_, err := b.Client.SendMessage(context.Background(), to,
		&waE2E.Message{Conversation: proto.String(ReplyBody(body))}, whatsmeow.SendRequestExtra{ID: rid})
	if err != nil {
		b.L.SendFailed(rid, err)
	}
}

// clientLog is the client's logger. Failures are not read from it (the
// handler's events and the server's receipts say what became of every
// copy); three lines matter for how a run is driven:
//
//   - "Continuing handling of %s in background": the handler queue gave up
//     waiting for a handler after 10 of its 30 s ticks (client.go
//     handlerQueueLoop at the pinned commit) and runs the next stanza
//     beside it. Stanzas are then no longer handled one at a time: a
//     controlled run is broken.
//   - "Handler queue is full, message ordering is no longer guaranteed"
//     (client.go:788 handleFrame): a node queued from a goroutine of its
//     own; broken as well.
//   - "Failed to handle retry receipt": handleRetryReceipt gave up on a
//     resend (receipt.go:33 logs it; retry.go: the message is not in its recent-message map
//     after a restart, a resend that could not be encrypted or sent). No
//     copy will come: a free run stops waiting for one (waweb
//     Ledger.GaveUp); nothing is recorded as an attempt.
type clientLog struct {
	b   *Bot
	mod string
}

// The format strings clientLog acts on, as whatsmeow writes them
// (TestClientLogLines finds each in its source).
const (
	logBackground = "Continuing handling of %s in background as it's taking too long"
	logQueueFull  = "Handler queue is full, message ordering is no longer guaranteed"
	logRetryGave  = "Failed to handle retry receipt for %s/%s from %s: %v"
)

func (l *clientLog) Warnf(msg string, args ...any) {
	if l.b.ctl != nil {
		switch msg {
		case logBackground:
			l.b.ctl.fail(fmt.Errorf("whatsmeow's handler queue stopped waiting for a handler: %s", fmt.Sprintf(msg, args...)))
		case logQueueFull:
			l.b.ctl.fail(fmt.Errorf("whatsmeow's handler queue is full: stanzas are no longer handled in order"))
		}
	}
	l.emit("WARN", msg, args)
}

func (l *clientLog) Errorf(msg string, args ...any) {
	if msg == logRetryGave && len(args) == 4 {
		if g, ok := l.b.L.(interface{ GaveUp(string) }); ok {
			g.GaveUp(fmt.Sprint(args[1]))
		}
	}
	l.emit("ERROR", msg, args)
}
func (l *clientLog) Infof(string, ...any)  {}
func (l *clientLog) Debugf(string, ...any) {}
func (l *clientLog) Sub(mod string) waLog.Logger {
	return &clientLog{b: l.b, mod: strings.TrimPrefix(l.mod+"/"+mod, "/")}
}

func (l *clientLog) emit(level, msg string, args []any) {
	if l.b.opts.Log != nil {
		l.b.opts.Log(fmt.Sprintf("client %s %s: %s", level, l.mod, fmt.Sprintf(msg, args...)))
	}
}

var trustMu sync.Mutex

// Trust makes every whatsmeow client in this process accept servers whose
// certificate chain starts at ca. whatsmeow.WACertPubKey is a package
// variable, so the process has one root (waweb.DefaultCA).
func Trust(ca *waweb.CA) {
	trustMu.Lock()
	defer trustMu.Unlock()
	// Clients of runs in parallel read it during their handshakes: write
	// only when it changes (it never does with waweb.DefaultCA).
	if whatsmeow.WACertPubKey != *ca.Root.Pub {
		whatsmeow.WACertPubKey = *ca.Root.Pub
	}
}

// Send is the bot starting a conversation: a text to a contact, followed
// by the ledger as message id.
func (b *Bot) Send(to types.JID, id, body string) {
	b.L.Expect(id, harness.Out, to.String(), body)
	_, err := b.Client.SendMessage(context.Background(), to.ToNonAD(),
		&waE2E.Message{Conversation: proto.String(body)}, whatsmeow.SendRequestExtra{ID: id})
	if err != nil {
		b.L.SendFailed(id, err)
	}
}
