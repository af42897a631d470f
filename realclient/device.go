package realclient

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/fakeserver/waweb/weblog"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/harness/webledger"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// Device is the unmodified whatsmeow Client as a harness.Device
// (docs/design.md §4.1): a schedule's ops drive the loopback server, and
// the oracle judges the real client's handler queue, session cache and
// retry handling on any store.
//
// What each op does:
//
//	send P M     peer P encrypts M; the server queues the stanza
//	deliver D    the server pushes queued stanza D to the client
//	reply P M    the bot sends reply M to P: the server pushes a chat state
//	             from P (no encryption) and the client's handler, when its
//	             queue reaches it, sends the reply: inline from the handler
//	             (the next stanzas wait), async from a goroutine the handler
//	             starts (they do not). In order with the deliveries around it.
//	read D       the peer takes the client's message D from the server and
//	             decrypts it; on failure it sends a retry receipt, and the
//	             client's answer is held as D.2, D.3, …
//	dup D        the server queues stanza D again (redelivery after a lost ack)
//	step T       (controlled) the client's goroutine T makes the store call
//	             it is parked at and runs to its next one (ctl names them:
//	             recv, reply:ID, retry:ID, resend:ID, login, notify)
//	run T        (controlled) step T until it is parked no more
//	stop         the client finishes what it was doing, disconnects, and its
//	             store is stopped (stores.Stopper)
//	restart      a new Client opens the device from the database again, on
//	             a new instance of the store, and logs in (the server
//	             redelivers what was not acknowledged)
//	drop         the server closes the connection; the same Client
//	             reconnects and logs in, and the server redelivers what was
//	             not acknowledged (drop.go)
//
// The server answers the client's retry receipts by itself, as WhatsApp
// does (waweb.Conversation). The run ends with the drain: every parked
// call stepped, every queued stanza delivered, every held message read.
//
// Modes:
//
//   - controlled: every store call the client makes parks until a step
//     lets it go, the server answers what the client sends only when the
//     client is quiet, and the run waits for quiet by looking, never by
//     time (ctl). A schedule replays byte for byte, history included,
//     through whatsmeow's own code, and shrinks.
//   - serial: controlled, and after every op every parked goroutine runs
//     to its end, oldest first: the protocol baseline (Baseline).
//   - free: the client's goroutines run as they will; the run waits on the
//     ledger (waweb.Ledger.Busy). Its failures come back at a rate, not
//     with the same history.
//
// group P M has contact P send M to the schedule's group (sender keys:
// waweb.Conversation.SendGroup); reinstall P gives contact P a new identity
// and the server tells the device (waweb.Conversation.Reinstall); rekey P
// has it start a new session; crash kills the client at the schedule's
// point (controlled mode). snapshot, rollback, contacts with several
// devices and two instances are refused.
type Device struct {
	// Reply is how the bot sends a reply op: Inline or Async.
	Reply Reply
	// Buffer turns on whatsmeow's EnableDecryptedEventBuffer (stores
	// sqlite and postgres: it needs sqlstore's transaction; mode free).
	Buffer bool
	// Variant, when set, is the candidate key store instead of the
	// schedule's store (storetest puts the user's store here).
	Variant *stores.Variant
	// Dir is where each run's SQLite database goes, in a directory of its
	// own that is removed after the run ("": the system's temp dir).
	Dir string
	// Settle bounds each wait for the client (default 2 minutes): reached,
	// the run is an error naming what the client still owed. It is a
	// guard against a hang, never what a run waits for.
	Settle time.Duration
	// Log receives the client's warnings and errors (nil: dropped).
	Log func(string)
	// silentReinstall: the server does not tell the device of a contact's
	// reinstall (waweb.Conversation.SilentReinstall; the comparison with
	// the model).
	silentReinstall bool
	// PreKeys is the one-time prekeys uploaded before the first login
	// (0: whatsmeow's batch, 50). Fewer make the server report a low
	// count sooner, and the client top them up.
	PreKeys int
}

// Names are the device names ParseName knows.
var Names = []string{"client-inline", "client-async", "client-inline+buffer", "client-async+buffer"}

// ParseName returns the device named name: client-inline or client-async,
// with +buffer for EnableDecryptedEventBuffer.
func ParseName(name string) (*Device, bool) {
	base, buf := strings.CutSuffix(name, "+buffer")
	switch base {
	case "client-inline":
		return &Device{Reply: Inline, Buffer: buf}, true
	case "client-async":
		return &Device{Reply: Async, Buffer: buf}, true
	}
	return nil, false
}

// Open is ParseName as a harness.Device over the store variant v (nil:
// the device's own stores): what storetest/client registers with
// storetest.RegisterClient.
func Open(name string, v *stores.Variant) (harness.Device, bool) {
	d, ok := ParseName(name)
	if !ok {
		return nil, false
	}
	d.Variant = v
	return d, true
}

// Name is the discipline column of the device's rows.
func (d *Device) Name() string {
	n := "client-" + string(d.Reply)
	if d.Buffer {
		n += "+buffer"
	}
	return n
}

// clientOps are the op types the device runs: all but those refused
// (below, with why).
var clientOps = harness.Except(harness.SnapshotOp{}, harness.RollbackOp{}).With(harness.DropOp{})

// refused are the op verbs the device has no way to perform, and why.
var refused = map[string]string{
	"snapshot": "no snapshot or rollback of the database",
	"rollback": "no snapshot or rollback of the database",
}

// scenarioOps are the ops a scenario's generator emits beyond send,
// deliver, reply, read, dup and step (scenarios/generate.go crashOp).
func scenarioOps(sc scenarios.Scenario) []string {
	var ops []string
	switch sc.Crash {
	case scenarios.CrashRollback:
		ops = append(ops, "rollback")
	}
	return ops
}

// Check refuses what the device cannot run: the buffer in a mode other
// than free, a scenario or ops it lacks, several devices per contact in a
// generated scenario (a reply goes to every device of a contact; a
// hand-written schedule, scenario script, may have them), two instances,
// an unknown store, the buffer off sqlstore.
func (d *Device) Check(setup *harness.Schedule, mode harness.Mode) error {
	name := d.Name()
	switch mode {
	case harness.Free, harness.Serial, harness.Controlled:
	default:
		return fmt.Errorf("device %s: unknown mode %s", name, mode)
	}
	if mode == harness.Free {
		for _, op := range setup.Ops {
			if _, ok := op.(harness.CrashOp); ok {
				return fmt.Errorf("device %s: mode free: a crash is judged in controlled mode only (where it lands is the schedule's)", name)
			}
		}
		if sc, err := scenarios.Lookup(setup.Scenario); err == nil && (sc.Crash == scenarios.CrashRandom || sc.Crash == scenarios.CrashTorn) {
			return fmt.Errorf("device %s: mode free: scenario %s crashes the client, which is judged in controlled mode only (where it lands is the schedule's)", name, sc.Name)
		}
	}
	if d.Buffer && mode != harness.Free {
		return fmt.Errorf("device %s: mode %s: the decrypted-event buffer runs free only (a DoDecryptionTxn holds SQLite's write lock across parked calls, and a write outside it waits in SQLite's busy handler, on the clock)", name, mode)
	}
	if setup.Device != "" && setup.Device != name {
		return fmt.Errorf("device %s: the schedule is for device %s", name, setup.Device)
	}
	if setup.Instances > 1 {
		return fmt.Errorf("device %s: instances %d: one client process per run", name, setup.Instances)
	}
	for _, c := range setup.Contacts {
		// A hand-written schedule may give a contact several devices: the
		// client's message to the user is judged per device (the ledger's
		// ExpectCopies, webledger's r1/alice.0, …), and its reply op's
		// device names only the recipient user. A generator's rows keep
		// one device per contact: its replies are the model's, to one.
		if c.Devices > 1 && setup.Scenario != scenarios.Script.Name {
			return fmt.Errorf("device %s: contact %s:%d: one device per contact (the client's reply goes to every device of a contact, the schedule's to one)", name, c.User, c.Devices)
		}
	}
	if sc, err := scenarios.Lookup(setup.Scenario); err == nil {
		for _, op := range scenarioOps(sc) {
			return fmt.Errorf("device %s: scenario %s has op %s: %s", name, sc.Name, op, refused[op])
		}
	}
	if err := clientOps.Refuse(name, setup.Ops, refused); err != nil {
		return err
	}
	for _, op := range setup.Ops {
		if harness.Inst(op) > 0 {
			return fmt.Errorf("device %s: op %s: one client process per run", name, op)
		}
	}
	if d.Variant != nil {
		if d.Buffer {
			return fmt.Errorf("device %s: store %s: the decrypted-event buffer needs sqlstore's transaction (stores sqlite, postgres)", name, d.Variant.Name)
		}
		return nil
	}
	switch setup.Store {
	case "sqlite", "postgres":
		return nil
	}
	if d.Buffer {
		return fmt.Errorf("device %s: store %s: the decrypted-event buffer needs sqlstore's transaction (stores sqlite, postgres)", name, setup.Store)
	}
	if _, err := stores.Lookup(setup.Store); err != nil {
		return fmt.Errorf("device %s: %w", name, err)
	}
	return nil
}

// on returns the device on another store: the same client, the same
// replies.
func (d *Device) on(v stores.Variant) *Device {
	return &Device{Reply: d.Reply, Buffer: d.Buffer, Variant: &v, Dir: d.Dir, Settle: d.Settle, Log: d.Log, PreKeys: d.PreKeys}
}

// Baseline is the protocol baseline of the real client: the explicit
// schedule on the real client itself, serially (every goroutine that
// parks runs to its end before the next op) on the reference store. A
// message the client ends worse than that is pair-blamed. No model is
// involved: a whatsmeow rule the model reads wrong cannot blame the
// client. With the decrypted-event buffer the baseline runs without it
// (the reference store has no transactions).
func (d *Device) Baseline(ctx context.Context, s *harness.Schedule) (*harness.Result, error) {
	b := d.on(stores.MustLookup("reference"))
	b.Buffer = false
	s = s.Clone()
	s.Device = b.Name()
	_, res, err := b.Exec(ctx, s, harness.Serial, harness.Ops(s.Ops))
	return res, err
}

// Reference is the store attribution: the same explicit schedule on the
// real client in controlled mode on the reference store. Steps are store
// calls whole (the probe parks before a call, which then runs to its
// end), so the reference run takes the candidate's steps one for one. A
// free run has none (nothing replays it); the reference store is its own.
func (d *Device) Reference(ctx context.Context, s *harness.Schedule, res *harness.Result) (*harness.Result, error) {
	if len(res.History) == 0 || res.History[0] != modeLine(harness.Controlled) {
		return nil, nil
	}
	if !d.JudgesStore(s, res) {
		return res, nil // the reference store is its own
	}
	_, ref, err := d.on(stores.MustLookup("reference")).Exec(ctx, s, harness.Controlled, harness.Ops(s.Ops))
	return ref, err
}

// JudgesStore reports whether Reference would judge the store of run res
// (harness.StoreJudger): controlled, on a store other than the reference
// store.
func (d *Device) JudgesStore(s *harness.Schedule, res *harness.Result) bool {
	return len(res.History) > 0 && res.History[0] == modeLine(harness.Controlled) && d.storeName(s) != "reference"
}

func (d *Device) storeName(s *harness.Schedule) string {
	if d.Variant != nil {
		return d.Variant.Name
	}
	return s.Store
}

// modeLine is a run's first history line.
func modeLine(m harness.Mode) string { return harness.ModeLine("realclient", m) }

// Exec runs setup with ops from src on a new server, database and client,
// then drains; see Device.
func (d *Device) Exec(ctx context.Context, setup *harness.Schedule, mode harness.Mode, src harness.Source) (*harness.Schedule, *harness.Result, error) {
	if err := d.Check(setup, mode); err != nil {
		return nil, nil, err
	}
	r, err := d.open(ctx, setup, mode)
	if err != nil {
		return nil, nil, fmt.Errorf("device %s: seed %d: %w", d.Name(), setup.Seed, err)
	}
	defer r.close()
	sched := setup.Clone()
	sched.Ops, sched.Device = nil, d.Name()
	for {
		op, ok := src.Next(r)
		if !ok && mode == harness.Free {
			// The client may still be at work (an async reply, a retry):
			// a generator decides again once it owes nothing.
			if err := r.quiet(ctx); err != nil {
				return nil, nil, fmt.Errorf("device %s: seed %d: %w", d.Name(), setup.Seed, err)
			}
			op, ok = src.Next(r)
		}
		if !ok {
			break
		}
		sched.Ops = append(sched.Ops, op)
		if err := r.apply(ctx, op); err != nil {
			return nil, nil, fmt.Errorf("device %s: seed %d: %s: %w", d.Name(), setup.Seed, op, err)
		}
	}
	if err := r.drain(ctx); err != nil {
		return nil, nil, fmt.Errorf("device %s: seed %d: drain: %w", d.Name(), setup.Seed, err)
	}
	log := r.srv.Log()
	if err := retriesAgree(r.cv.L, log); err != nil {
		return nil, nil, fmt.Errorf("device %s: seed %d: %w", d.Name(), setup.Seed, err)
	}
	// Only the messages the schedule sent: the ledger also notes ids it
	// saw only in a stray ack or receipt (direction unknown).
	res := &harness.Result{History: log, Crashes: len(r.crashPoints), CrashPoints: r.crashPoints,
		RegeneratedCreds: r.regen, LostPreKeys: len(r.lostPK), KilledUnacked: r.killedUnacked,
		Messages: webledger.Messages(r.cv.L)}
	for _, m := range res.Messages {
		noteReport(r.cv, m)
	}
	for _, id := range webledger.Strays(r.cv.L) {
		res.History = append(res.History, "ledger: "+id+" seen in an ack or receipt only")
	}
	return sched, res, nil
}

// run is one schedule on the real client.
type run struct {
	d       *Device
	mode    harness.Mode
	ctl     *ctl // controlled and serial; nil when free
	dir     string
	srv     *waweb.Server
	cv      *waweb.Conversation
	peers   []string
	db      *sqlstore.Container
	jid     types.JID // the device's JID in db
	keys    DeviceKeys
	closeDB func()
	storage stores.Storage // the plugged candidate store; nil on sqlstore
	bot     *Bot
	queue   *ReplyQueue
	down    bool
	settle  time.Duration
	group   string // the schedule's group, "" for none
	// Crashes and restarts (controlled): where each crash landed, and the
	// restart invariants (docs/design.md §5) as the restarts found them.
	crashPoints []string
	// killedUnacked are the messages whose receive a crash killed
	// between its decrypt's store write and its ack (Result.KilledUnacked).
	killedUnacked []string
	regen         bool
	lostPK        map[uint32]bool
}

func (d *Device) open(ctx context.Context, setup *harness.Schedule, mode harness.Mode) (_ *run, err error) {
	r := &run{d: d, mode: mode, queue: &ReplyQueue{}, settle: d.Settle, group: setup.Group}
	if r.settle <= 0 {
		r.settle = 2 * time.Minute
	}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.dir, err = os.MkdirTemp(d.Dir, "badmac-client-"); err != nil {
		return nil, err
	}
	ca := waweb.DefaultCA()
	Trust(ca)
	if mode == harness.Free {
		r.srv, err = waweb.Listen(ca)
	} else {
		r.ctl = newCtl(nil, r.settle)
		// The server's goroutines carry the run's label (ctl).
		r.ctl.do("", func() { r.srv, err = waweb.Listen(ca) })
		if err == nil {
			r.ctl.srv = r.srv
			r.srv.Manual(r.ctl.poke)
		}
	}
	if err != nil {
		return nil, err
	}
	r.srv.Logf("%s", modeLine(mode))
	r.cv = waweb.NewConversation(r.srv)
	r.ownLID(setup)
	if r.ctl != nil {
		r.ctl.inAttempts = r.cv.L.InAttempts
	}
	r.cv.SilentReinstall = d.silentReinstall
	r.cv.Hold()
	for _, c := range setup.Contacts {
		for dev := range c.Devices {
			p, err := r.cv.AddPeer(ctx, c.User, uint16(dev))
			if err != nil {
				return nil, err
			}
			r.peers = append(r.peers, p.Name)
		}
	}
	// The whole device lives in whatsmeow's sqlstore on SQLite, or on
	// PostgreSQL for a free run on store postgres; any other store takes
	// over the four Signal interfaces. A controlled run keeps the device's
	// other tables in SQLite even on store postgres: a query waiting on
	// PostgreSQL's socket looks like a blocked goroutine, and only the
	// Signal calls are followed to their end (ctl).
	storeName, v := setup.Store, d.Variant
	if v != nil || (mode != harness.Free && storeName == "postgres") {
		storeName = "" // the device on SQLite, the Signal keys on the variant
	}
	if v == nil && storeName != "sqlite" && storeName != "postgres" {
		lv, err := stores.Lookup(setup.Store)
		if err != nil {
			return nil, err
		}
		v = &lv
	}
	if r.db, r.jid, r.closeDB, err = openDevice(ctx, storeName, r.dir, setup.Seed); err != nil {
		return nil, err
	}
	if v != nil {
		if r.storage, err = v.Open(ctx); err != nil {
			return nil, fmt.Errorf("store %s: %w", v.Name, err)
		}
	}
	dev, err := Provision(ctx, r.db, r.jid)
	if err != nil {
		return nil, err
	}
	r.keys = KeysOf(dev)
	if err := r.start(ctx, dev); err != nil {
		return nil, err
	}
	return r, nil
}

// start plugs a new instance of the candidate store under dev and connects
// a client on it. In controlled mode the client's login goroutine (prekey
// count and upload, the passive iq: connectionevents.go
// handleConnectSuccess) is run to Connected, step by step.
func (r *run) start(ctx context.Context, dev *store.Device) error {
	if r.storage != nil {
		set, err := r.storage.Instance(ctx)
		if err != nil {
			return fmt.Errorf("store instance: %w", err)
		}
		if err := Plug(dev, set); err != nil {
			return err
		}
	}
	if r.bot == nil {
		if err := UploadPreKeys(ctx, dev, r.srv.Core, r.d.PreKeys); err != nil {
			return err
		}
	} else if err := r.invariants(ctx, dev); err != nil {
		return err
	}
	rec := ConvRecorder{CV: r.cv, Keys: r.keys}
	opts := Options{Reply: r.d.Reply, Buffer: r.d.Buffer, Log: r.d.Log, Queue: r.queue}
	if r.ctl == nil {
		sctx, cancel := context.WithTimeout(ctx, r.settle)
		defer cancel()
		bot, err := Start(sctx, r.srv.HTTPClient(), rec, dev, opts)
		if err != nil {
			return err
		}
		r.bot = bot
	} else {
		bot, err := newBot(r.srv.HTTPClient(), rec, dev, opts, r.ctl)
		if err != nil {
			return err
		}
		r.bot = bot
		if err := r.connect(ctx, bot.isConnected); err != nil {
			return err
		}
	}
	r.down = false
	return r.nudgeQueued(ctx)
}

// nudgeQueued sends the replies asked for while the client was down (or
// whose chat state went to a connection that closed), after a login.
func (r *run) nudgeQueued(ctx context.Context) error {
	for range r.queue.Len() {
		if err := r.nudge(ctx); err != nil {
			return err
		}
	}
	return nil
}

// invariants checks what a restart must find (docs/design.md §5): the
// device's credentials (identity, registration id, signed prekey) as they
// were, and every one-time prekey the server still hands out in the store
// (a contact given one the store lost fails with InvalidPreKey).
func (r *run) invariants(ctx context.Context, dev *store.Device) error {
	k := KeysOf(dev)
	if *k.Creds.Identity.Pub != *r.keys.Creds.Identity.Pub || k.Creds.RegistrationID != r.keys.Creds.RegistrationID ||
		k.Creds.SignedPreKey.KeyID != r.keys.Creds.SignedPreKey.KeyID || *k.Creds.SignedPreKey.Pub != *r.keys.Creds.SignedPreKey.Pub {
		r.regen = true
		r.srv.Logf("restart: the device came up with other credentials")
	}
	for _, pk := range r.srv.Core.Unclaimed(dev.ID.SignalAddress()) {
		got, err := dev.PreKeys.GetPreKey(ctx, pk.KeyID)
		if err != nil {
			return fmt.Errorf("restart: prekey %d: %w", pk.KeyID, err)
		}
		if got == nil && !r.lostPK[pk.KeyID] {
			if r.lostPK == nil {
				r.lostPK = map[uint32]bool{}
			}
			r.lostPK[pk.KeyID] = true
			r.srv.Logf("restart: prekey %d, uploaded and not handed out, is gone from the store", pk.KeyID)
		}
	}
	return nil
}

// crash kills the client at this quiet point, as SIGKILL kills its
// process: whatever its goroutines are parked at never reaches the store,
// the connection drops (the server redelivers what was not acknowledged at
// the next login), the store loses what it had not made durable
// (stores.Crasher), and the client stays down until restart.
func (r *run) crash(op harness.CrashOp) error {
	if r.down || r.ctl == nil {
		return nil
	}
	point := "crash with " + strings.Join(r.ctl.parkedCalls(), ", ")
	if len(r.ctl.parkedCalls()) == 0 {
		point = "crash with nothing parked"
	}
	r.crashPoints = append(r.crashPoints, point)
	r.srv.Logf("%s", point)
	// whatsmeow handles message stanzas one at a time on its handler
	// queue's goroutine ("recv"), and acknowledges one after its handler
	// ran: a recv that stored a session since the last copy handled holds
	// the first unhandled copy, decrypted, stored and never acknowledged.
	if r.ctl.storedUnhandled("recv") {
		if id, ok := r.cv.L.InProgress(); ok && !slices.Contains(r.killedUnacked, id) {
			r.killedUnacked = append(r.killedUnacked, id)
			r.srv.Logf("crash: recv killed after storing the decrypt of %s, before its ack", id)
		}
	}
	// A killed process leaves no goroutine behind. Here its goroutines
	// unwind (every store call refused, nothing recorded), and the run
	// is not quiet until every one of them has ended (ctl.killClient): a
	// killed goroutine still there would hold its name (a restarted
	// client's "reply:r1" was "reply:r1#2" on some runs). The client's
	// own Disconnect, before the server drops the connection, makes every
	// one waiting for the connection give up at once: client.go
	// WaitForConnection returns on expectedDisconnect, where a send cut by
	// the drop alone would wait 5 s of wall clock in request.go
	// retryFrame. (Disconnect after the drop races whatsmeow's own read
	// pump on FrameSocket.closed, socket/framesocket.go:70 and 215.)
	r.bot.kill()
	r.bot.Client.Disconnect()
	r.srv.Kick()
	if c, ok := r.storage.(stores.Crasher); ok {
		c.Crash(op.Mode)
	}
	r.ctl.killClient(r.bot.client)
	r.ctl.releaseKilled()
	r.down = true
	return nil
}

// nudge pushes a chat state that makes the bot's handler send the next
// queued reply.
func (r *run) nudge(ctx context.Context) error {
	// Any peer will do: the chat state only wakes the handler; the reply
	// taken from the queue names its own recipient.
	if len(r.peers) == 0 {
		return nil
	}
	p, _ := r.cv.Peer(r.peers[0])
	r.cv.Nudge(p)
	return r.after(ctx)
}

func (r *run) close() {
	if r.ctl != nil {
		r.ctl.freeAll() // nothing parks any more: the client can stop
	}
	if r.bot != nil && !r.down {
		r.bot.Stop()
	}
	if r.srv != nil {
		r.srv.Close()
	}
	if r.storage != nil {
		r.storage.Close()
	}
	if r.closeDB != nil {
		r.closeDB()
		forgetContainer(r.db)
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// quiet waits until the client owes nothing: in controlled mode until it
// is quiet (ctl), when free until the ledger says so (waweb.Ledger.Busy).
func (r *run) quiet(ctx context.Context) error {
	if r.ctl != nil {
		return r.ctl.settle(ctx)
	}
	if r.down {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, r.settle)
	defer cancel()
	return r.cv.L.WaitQuiet(wctx)
}

// after is what follows an op that gave the client something to do:
// controlled, the client settles; serial, every parked goroutine also runs
// to its end, oldest first. A free client goes on by itself.
func (r *run) after(ctx context.Context) error {
	if r.ctl == nil {
		return nil
	}
	if err := r.ctl.settle(ctx); err != nil {
		return err
	}
	if r.mode != harness.Serial {
		return nil
	}
	for {
		rs := r.ctl.runnable()
		if len(rs) == 0 {
			return nil
		}
		if err := r.run(ctx, rs[0]); err != nil {
			return err
		}
	}
}

// step lets the goroutine parked as name make its call and settles; it
// does nothing when none is.
func (r *run) step(ctx context.Context, name string) error {
	g, _, ok := r.ctl.byName(name)
	if !ok {
		return nil
	}
	return r.release(ctx, name, g)
}

func (r *run) release(ctx context.Context, name string, g int64) error {
	call := r.ctl.release(g)
	r.srv.Logf("step %s: %s", name, call)
	return r.ctl.settle(ctx)
}

// run steps the goroutine parked as name until it is parked no more (it
// ended, or waits for something else).
func (r *run) run(ctx context.Context, name string) error {
	g, _, ok := r.ctl.byName(name)
	for ok {
		if err := r.release(ctx, name, g); err != nil {
			return err
		}
		ok = r.ctl.isParked(g)
	}
	return nil
}

func (r *run) apply(ctx context.Context, op harness.Op) error {
	if err := clientOps.Refuse(r.d.Name(), []harness.Op{op}, refused); err != nil {
		return err
	}
	r.srv.Logf("op %s", op)
	if harness.Inst(op) > 0 {
		return nil // one instance: an op for another does not apply
	}
	switch o := op.(type) {
	case harness.SendOp:
		p, ok := r.cv.Peer(o.Peer)
		if !ok || r.cv.L.Known(o.Msg) {
			return nil
		}
		return r.cv.Send(ctx, p, o.Msg, "hello "+o.Msg)
	case harness.GroupOp:
		p, ok := r.cv.Peer(o.Peer)
		if !ok || r.cv.L.Known(o.Msg) || r.group == "" {
			return nil
		}
		return r.cv.SendGroup(ctx, p, r.group, o.Msg, "hello "+o.Msg)
	case harness.DeliverOp:
		id, ok := r.cv.Deliver(o.ID)
		if !ok {
			return nil
		}
		if r.ctl != nil {
			return r.after(ctx)
		}
		return r.handled(ctx, id)
	case harness.StepOp, harness.RunOp:
		if r.ctl == nil || r.down {
			return nil // a free client schedules itself
		}
		var err error
		if s, ok := o.(harness.StepOp); ok {
			err = r.step(ctx, s.Task)
		} else {
			err = r.run(ctx, o.(harness.RunOp).Task)
		}
		if err == nil && r.mode == harness.Serial {
			err = r.after(ctx)
		}
		return err
	case harness.ReplyOp:
		p, ok := r.cv.Peer(o.Peer)
		if !ok || r.cv.L.Known(o.Msg) {
			return nil
		}
		r.cv.L.Expect(o.Msg, harness.Out, p.Name, "reply "+o.Msg)
		r.queue.Push(p.JID.ToNonAD(), o.Msg, "reply "+o.Msg)
		if !r.down {
			return r.nudge(ctx)
		}
	case harness.ReadOp:
		if r.ctl != nil {
			if r.cv.Read(ctx, o.ID) {
				return r.after(ctx)
			}
			return nil
		}
		return r.read(ctx, o.ID)
	case harness.DupOp:
		r.cv.Dup(o.ID)
	case harness.ReinstallOp:
		return r.contactOp(ctx, o.Peer, r.cv.Reinstall)
	case harness.RekeyOp:
		return r.contactOp(ctx, o.Peer, r.cv.Rekey)
	case harness.CrashOp:
		if err := r.crash(o); err != nil {
			return err
		}
		return r.ctl.settle(ctx)
	case harness.StopOp:
		return r.stop(ctx)
	case harness.RestartOp:
		return r.restart(ctx)
	case harness.DropOp:
		return r.drop(ctx)
	case harness.WaitOp:
		// The device has no virtual clock to move: nothing.
	default:
		return r.applyLID(ctx, op)
	}
	return nil
}

// stop is a clean shutdown: what the client is doing finishes (in
// controlled mode every parked goroutine runs to its end, oldest first),
// it disconnects, and the store writes out what it buffers.
func (r *run) stop(ctx context.Context) error {
	if r.down {
		return nil
	}
	if err := r.finish(ctx); err != nil {
		return err
	}
	r.bot.Stop()
	r.down = true
	if r.ctl != nil {
		// The connection's goroutines end; the server notes the close.
		if err := r.ctl.settle(ctx); err != nil {
			return err
		}
	}
	if st, ok := r.storage.(stores.Stopper); ok {
		if err := st.Stop(ctx); err != nil {
			return fmt.Errorf("store stop: %w", err)
		}
	}
	return nil
}

// finish lets the client finish what it is doing: controlled, every
// parked goroutine runs to its end, oldest first; free, until it owes
// nothing (quiet).
func (r *run) finish(ctx context.Context) error {
	if r.ctl == nil {
		return r.quiet(ctx)
	}
	for {
		if err := r.ctl.settle(ctx); err != nil {
			return err
		}
		rs := r.ctl.runnable()
		if len(rs) == 0 {
			return nil
		}
		if err := r.run(ctx, rs[0]); err != nil {
			return err
		}
	}
}

// handled waits until the client's handler queue has taken every copy of
// message id it was sent (decrypted it or failed to): what the client heard
// is then what the generator sees, as on the model, while the client's
// goroutines (async replies, retry receipts) go on across ops.
func (r *run) handled(ctx context.Context, id string) error {
	wctx, cancel := context.WithTimeout(ctx, r.settle)
	defer cancel()
	for {
		ch := r.cv.L.Changed()
		if r.down || r.cv.L.Handled(id) {
			return nil
		}
		select {
		case <-ch:
		case <-wctx.Done():
			return fmt.Errorf("waiting for the client to handle %s: %w", id, wctx.Err())
		}
	}
}

// read hands the held message name to its peer. A message the client is
// still sending (a reply, the copy a retry receipt asked for) is waited
// for until the client is quiet: a replayed schedule reads what the
// recorded run read, wherever the client's goroutines are.
func (r *run) read(ctx context.Context, name string) error {
	wctx, cancel := context.WithTimeout(ctx, r.settle)
	defer cancel()
	for {
		ch := r.cv.L.Changed()
		if r.cv.Read(ctx, name) || r.down || len(r.cv.L.Busy()) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-wctx.Done():
			return fmt.Errorf("waiting for %s: client still busy: %s", name, strings.Join(r.cv.L.Busy(), ", "))
		}
	}
}

func (r *run) restart(ctx context.Context) error {
	if !r.down {
		return nil
	}
	emptyLIDCache(r.db) // a new process: whatsmeow's LID cache starts empty
	dev, err := r.db.GetDevice(ctx, r.jid)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if dev == nil {
		return fmt.Errorf("restart: device %s not in the database", r.jid)
	}
	return r.start(ctx, dev)
}

// connect connects the controlled client and steps its login until
// loggedIn: what Connect does at once, the login's store calls
// (handleConnectSuccess) one step each.
func (r *run) connect(ctx context.Context, loggedIn func() bool) error {
	var err error
	r.ctl.do(r.bot.client, func() { err = r.bot.Client.Connect() })
	if err != nil {
		return fmt.Errorf("realclient: connect: %w", err)
	}
	for {
		if err := r.ctl.settle(ctx); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		if loggedIn() {
			return nil
		}
		g, _, ok := r.ctl.byName("login")
		if !ok {
			_, _, why := r.ctl.quiet()
			return fmt.Errorf("login: not connected, and the login goroutine is not at a store call (parked: %v; now: %s; run: %s; wire: %s; history: %s)",
				r.ctl.runnable(), why, describeSnap(snapshot(r.ctl.label, new([]byte))), r.srv.WireDebug(), strings.Join(r.srv.Log(), " | "))
		}
		if err := r.release(ctx, "login", g); err != nil {
			return err
		}
	}
}

// drain ends the run: a stopped client is restarted first, as a process
// manager would; then every parked goroutine is stepped (oldest first),
// every queued stanza delivered and every held message read, until the
// client owes nothing.
func (r *run) drain(ctx context.Context) error {
	for {
		if r.down {
			if err := r.restart(ctx); err != nil {
				return err
			}
		}
		if err := r.quiet(ctx); err != nil {
			return err
		}
		if r.ctl != nil {
			if rs := r.ctl.runnable(); len(rs) > 0 {
				r.srv.Logf("drain: step %s", rs[0])
				if err := r.step(ctx, rs[0]); err != nil {
					return err
				}
				continue
			}
		}
		in, out := r.cv.Held()
		switch {
		case len(in) > 0:
			r.srv.Logf("drain: deliver %s", in[0])
			r.cv.Deliver(in[0])
		case len(out) > 0:
			r.srv.Logf("drain: read %s", out[0])
			r.cv.Read(ctx, out[0])
		default:
			return nil
		}
		if err := r.after(ctx); err != nil {
			return err
		}
	}
}

// View (what a schedule's generator sees of the run).

func (r *run) Peers() []string { return append([]string(nil), r.peers...) }

// HeardFrom counts the messages from peer the client's handler accepted.
func (r *run) HeardFrom(peer string) int { return r.cv.L.HeardFrom(peer) }

// Runnable are the goroutines parked at a store call, by name (controlled
// mode; none when the client runs freely).
func (r *run) Runnable() []string {
	if r.ctl == nil {
		return nil
	}
	return r.ctl.runnable()
}

func (r *run) Pending() (inbound, outbound []string) { return r.cv.Held() }

func (r *run) Delivered() []string { return r.cv.Taken() }

func (r *run) Down() bool { return r.down }

// PendingWrites is what a crash of the candidate store would lose now
// (stores.Crasher), 0 for whatsmeow's sqlstore.
func (r *run) PendingWrites() int {
	if c, ok := r.storage.(stores.Crasher); ok {
		return c.PendingWrites()
	}
	return 0
}

// retriesAgree checks the ledger's retry receipts against the server's
// log, line for line: the receipts the device sent ("retry-receipt …")
// and those the contacts sent for its replies ("peer …: retry-receipt
// …"). The verdict comes from the ledger; a disagreement is a bookkeeping
// bug of the fake server, and the run an error rather than a verdict.
func retriesAgree(l *waweb.Ledger, log []string) error {
	in, out := l.Retries()
	logIn, logOut := 0, 0
	for _, line := range log {
		l, _ := weblog.Parse(line)
		switch l.Kind {
		case weblog.RetryReceipt:
			logIn++
		case weblog.PeerRetry:
			logOut++
		}
	}
	if logIn != in || logOut != out {
		return fmt.Errorf("ledger counts %d/%d retry receipts (device/contacts), server log %d/%d", in, out, logIn, logOut)
	}
	return nil
}
