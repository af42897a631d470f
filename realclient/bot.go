// Package realclient is the device under test as most Go bots run it: an
// unmodified whatsmeow.Client on a whatsmeow store.Device, connected to the
// loopback fake WhatsApp server (fakeserver/waweb), with an event handler
// that replies to every text the way bots do: from inside the handler
// (whatsmeow runs handlers in its handler queue, one stanza at a time) or
// from a goroutine the handler starts. What the client decrypts, fails to
// decrypt or drops is recorded in the conversation's ledger. Device runs
// the harness's schedules (any scenario's) on it, judged by the harness's
// oracle; Converse is the older workload driver behind `badmac client`.
package realclient

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"go.mau.fi/libsignal/signalerror"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	waLog "go.mau.fi/whatsmeow/util/log"
	"google.golang.org/protobuf/proto"
	"modernc.org/sqlite" // also the driver behind sqlstore's "sqlite" dialect

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
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
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, fmt.Errorf("realclient: open %s: %w", path, err)
	}
	c := sqlstore.NewWithDB(db, "sqlite", waLog.Noop)
	if err := c.Upgrade(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("realclient: upgrade %s: %w", path, err)
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

// Recorder is where the bot reports what the client did: *waweb.Ledger in
// process, a line protocol to the parent from a child process.
type Recorder interface {
	Expect(id, dir, peer, body string)
	Known(id string) bool
	Attempt(id string, ok bool, body string, class endpoint.Class, err error)
	SendFailed(id string, err error)
}

// Bot is a connected whatsmeow client replying to texts.
type Bot struct {
	Client *whatsmeow.Client
	L      Recorder
	opts   Options

	connected chan struct{}
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
// counted or uploaded, passive set).
func Start(ctx context.Context, hc *http.Client, l Recorder, dev *store.Device, opts Options) (*Bot, error) {
	if opts.Reply == "" {
		opts.Reply = NoReply
	}
	b := &Bot{L: l, opts: opts, connected: make(chan struct{})}
	cli := whatsmeow.NewClient(dev, &clientLog{b: b})
	cli.SetWebsocketHTTPClient(hc)
	cli.EnableDecryptedEventBuffer = opts.Buffer
	cli.AddEventHandler(b.handle)
	b.Client = cli
	// The connection lives until Stop, not until ctx (which bounds the wait).
	if err := cli.Connect(); err != nil {
		return nil, fmt.Errorf("realclient: connect: %w", err)
	}
	select {
	case <-b.connected:
		return b, nil
	case <-ctx.Done():
		cli.Disconnect()
		return nil, fmt.Errorf("realclient: waiting for Connected: %w", ctx.Err())
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
	switch e := evt.(type) {
	case *events.Connected:
		b.once.Do(func() { close(b.connected) })
	case *events.ChatPresence:
		b.scripted()
	case *events.Message:
		if e.Info.IsFromMe || e.Info.IsGroup || e.Message.Conversation == nil {
			return
		}
		id, body := e.Info.ID, e.Message.GetConversation()
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
		b.L.Attempt(id, true, body, "", nil)
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
	send := func() {
		// A recorder that follows sends (waweb.Ledger) keeps the client
		// busy until SendMessage returns: a stop then does not cut its ack.
		if s, ok := b.L.(interface{ Sending(string, bool) }); ok {
			s.Sending(r.id, true)
			defer s.Sending(r.id, false)
		}
		_, err := b.Client.SendMessage(context.Background(), r.to,
			&waE2E.Message{Conversation: proto.String(r.body)}, whatsmeow.SendRequestExtra{ID: r.id})
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

// clientLog is the client's logger. Three of whatsmeow's log calls are the
// only place a failed decryption shows (message.go decryptMessages at the
// pinned commit): "Error decrypting message" (a retry receipt follows) and
// "Ignoring message" (a warning for an old counter, a debug line for an
// event already processed: a normal receipt, the message is dropped
// silently). Each is an attempt.
type clientLog struct {
	b   *Bot
	mod string
}

func (l *clientLog) Warnf(msg string, args ...any) {
	l.attempt(msg, args)
	l.emit("WARN", msg, args)
}

// attempt records a failed or dropped decryption from one of whatsmeow's
// log calls. "Ignoring message" is a warning for an old counter and a debug
// line for an event the decrypted-event buffer already processed.
func (l *clientLog) attempt(msg string, args []any) {
	switch msg {
	case "Error decrypting message %s from %s: %v", "Ignoring message %s from %s: %v":
		if len(args) == 3 {
			id := fmt.Sprint(args[0])
			err, _ := args[2].(error)
			l.b.L.Attempt(id, false, "", classOf(err), err)
		}
	}
}

func (l *clientLog) Errorf(msg string, args ...any) {
	// handleRetryReceipt failed (retry.go at the pinned commit: the message
	// is not in the recent-message cache after a restart, a resend that
	// could not be encrypted or sent): the peer gets no new copy.
	if msg == "Failed to handle retry receipt for %s/%s from %s: %v" && len(args) == 4 {
		err, _ := args[3].(error)
		if err == nil {
			err = fmt.Errorf("%v", args[3])
		}
		l.b.L.SendFailed(fmt.Sprint(args[1]), fmt.Errorf("retry: %w", err))
	}
	l.emit("ERROR", msg, args)
}
func (l *clientLog) Infof(string, ...any)           {}
func (l *clientLog) Debugf(msg string, args ...any) { l.attempt(msg, args) }
func (l *clientLog) Sub(mod string) waLog.Logger {
	return &clientLog{b: l.b, mod: strings.TrimPrefix(l.mod+"/"+mod, "/")}
}

func (l *clientLog) emit(level, msg string, args []any) {
	if l.b.opts.Log != nil {
		l.b.opts.Log(fmt.Sprintf("client %s %s: %s", level, l.mod, fmt.Sprintf(msg, args...)))
	}
}

// classOf classes whatsmeow's decrypt error. The real client gives no
// access to the record the attempt loaded, so libsignal's "no valid
// sessions" (every state failed its MAC check) cannot be re-run state by
// state as endpoint.classify does; it is counted as BadMAC, which is what
// it is whenever a session exists (a missing session is ErrNoSessionForUser).
// An event already processed (the decrypted-event buffer saw the
// ciphertext) is a replay refused, counted as OldCounter. A database error
// under the decrypt is a StoreError.
func classOf(err error) endpoint.Class {
	switch {
	case err == nil:
		return endpoint.Other
	case errors.Is(err, signalerror.ErrNoValidSessions):
		return endpoint.BadMAC
	case errors.Is(err, whatsmeow.EventAlreadyProcessed):
		return endpoint.OldCounter
	case errors.As(err, new(*sqlite.Error)), errors.As(err, new(*pgconn.PgError)):
		return endpoint.StoreError // the database refused (SQLITE_BUSY, say), not the ratchet
	}
	return endpoint.ClassOf(err)
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
