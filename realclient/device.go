package realclient

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// Device is the unmodified whatsmeow Client as a harness.Device
// (docs/design.md §4.1): a schedule's ops drive the loopback server and the
// client's own goroutines run freely, so the oracle judges the real
// client's handler queue, session cache and retry handling on any store.
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
//	stop         the client finishes what it was sent, disconnects, and its
//	             store is stopped (stores.Stopper)
//	restart      a new Client opens the device from the database again, on
//	             a new instance of the store, and logs in (the server
//	             redelivers what was not acknowledged)
//	step, run    nothing: the client schedules itself
//
// The server answers the client's retry receipts by itself, at once, as
// WhatsApp does (waweb.Conversation). The run ends with the drain: every
// queued stanza delivered, every held message read, until the ledger says
// the client owes nothing (waweb.Ledger.Busy). Waiting is on the server's
// ledger, never on a clock; Settle only bounds a wait that would hang.
//
// Mode free: a schedule replays (its ops again, harness.Ops) on the same
// device, but not byte for byte: the client's goroutines interleave as
// they will, so replays fail again with a rate, not the same history.
// Mode serial is one op in flight: after each op the run waits until the
// client owes nothing, so an async reply never overlaps a receive; the
// generator then sees the same client at every op and a seed gives the
// same schedule and the same outcome for every message (the history's
// lines within one op may come in another order). crash, snapshot,
// rollback, reinstall, rekey, group messages, contacts with several
// devices and two instances are refused.
type Device struct {
	// Reply is how the bot sends a reply op: Inline or Async.
	Reply Reply
	// Buffer turns on whatsmeow's EnableDecryptedEventBuffer (stores
	// sqlite and postgres: it needs sqlstore's transaction).
	Buffer bool
	// Variant, when set, is the candidate key store instead of the
	// schedule's store (storetest puts the user's store here).
	Variant *stores.Variant
	// Dir is where each run's SQLite database goes, in a directory of its
	// own that is removed after the run ("": the system's temp dir).
	Dir string
	// Settle bounds each wait for the client (default 2 minutes): reached,
	// the run is an error naming what the client still owed.
	Settle time.Duration
	// Log receives the client's warnings and errors (nil: dropped).
	Log func(string)
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

// Name is the discipline column of the device's rows.
func (d *Device) Name() string {
	n := "client-" + string(d.Reply)
	if d.Buffer {
		n += "+buffer"
	}
	return n
}

// refused are the op verbs the device has no way to perform, and why.
var refused = map[string]string{
	"crash":     "no crash: the client runs in this process, which cannot die at a store write (badmac procs kills real processes)",
	"snapshot":  "no snapshot or rollback of the database",
	"rollback":  "no snapshot or rollback of the database",
	"reinstall": "no contact reinstall",
	"rekey":     "no contact rekey",
	"group":     "no group messages",
}

// scenarioOps are the ops a scenario's generator emits beyond send,
// deliver, reply, read, dup and step (scenarios/generate.go crashOp).
func scenarioOps(sc scenarios.Scenario) []string {
	var ops []string
	if sc.Group {
		ops = append(ops, "group")
	}
	switch sc.Crash {
	case scenarios.CrashRandom, scenarios.CrashTorn:
		ops = append(ops, "crash")
	case scenarios.CrashRollback:
		ops = append(ops, "rollback")
	case scenarios.CrashReinstall, scenarios.CrashRekey:
		ops = append(ops, string(sc.Crash))
	}
	return ops
}

// Check refuses what the device cannot run: a mode other than free, a
// scenario or ops it lacks, several devices per contact (a reply goes to
// every device of a contact), two instances, an unknown store, the buffer
// off sqlstore.
func (d *Device) Check(setup *harness.Schedule, mode harness.Mode) error {
	name := d.Name()
	if mode != harness.Free && mode != harness.Serial {
		return fmt.Errorf("device %s: mode %s: the real client's goroutines run freely, so it runs in mode free, or serial (one op at a time, each to its end)", name, mode)
	}
	if setup.Device != "" && setup.Device != name {
		return fmt.Errorf("device %s: the schedule is for device %s", name, setup.Device)
	}
	if setup.Instances > 1 {
		return fmt.Errorf("device %s: instances %d: one client process per run", name, setup.Instances)
	}
	if setup.Group != "" {
		return fmt.Errorf("device %s: group %s: %s", name, setup.Group, refused["group"])
	}
	for _, c := range setup.Contacts {
		if c.Devices > 1 {
			return fmt.Errorf("device %s: contact %s:%d: one device per contact (the client's reply goes to every device of a contact, the schedule's to one)", name, c.User, c.Devices)
		}
	}
	if sc, err := scenarios.Lookup(setup.Scenario); err == nil {
		for _, op := range scenarioOps(sc) {
			return fmt.Errorf("device %s: scenario %s has op %s: %s", name, sc.Name, op, refused[op])
		}
	}
	for _, op := range setup.Ops {
		if why, ok := refused[op.Verb]; ok {
			return fmt.Errorf("device %s: op %s: %s", name, op, why)
		}
		if op.Inst > 0 {
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

// Baseline is the protocol baseline of the real client: the explicit
// schedule on the in-process model of whatsmeow (harness.Whatsmeow), one
// task at a time, on the reference store. A message the client ends worse
// than that is pair-blamed: worse than the serial protocol.
func (d *Device) Baseline(ctx context.Context, s *harness.Schedule) (*harness.Result, error) {
	s = s.Clone()
	s.Discipline, s.Device = harness.Whatsmeow, ""
	return harness.Baseline(ctx, s)
}

// Exec runs setup with ops from src on a new server, database and client,
// then drains; see Device.
func (d *Device) Exec(ctx context.Context, setup *harness.Schedule, mode harness.Mode, src harness.Source) (*harness.Schedule, *harness.Result, error) {
	if err := d.Check(setup, mode); err != nil {
		return nil, nil, err
	}
	r, err := d.open(ctx, setup)
	if err != nil {
		return nil, nil, fmt.Errorf("device %s: seed %d: %w", d.Name(), setup.Seed, err)
	}
	defer r.close()
	sched := setup.Clone()
	sched.Ops, sched.Device = nil, d.Name()
	for {
		op, ok := src.Next(r)
		if !ok {
			// The client may still be at work (an async reply, a retry):
			// a generator decides again once it owes nothing.
			if err := r.quiet(ctx); err != nil {
				return nil, nil, fmt.Errorf("device %s: seed %d: %w", d.Name(), setup.Seed, err)
			}
			if op, ok = src.Next(r); !ok {
				break
			}
		}
		sched.Ops = append(sched.Ops, op)
		if err := r.apply(ctx, op); err != nil {
			return nil, nil, fmt.Errorf("device %s: seed %d: %s: %w", d.Name(), setup.Seed, op, err)
		}
		if mode == harness.Serial {
			// One op in flight: the client finishes what the op gave it
			// (a copy decrypted and answered, a reply at the server, a
			// retry answered) before the next.
			if err := r.quiet(ctx); err != nil {
				return nil, nil, fmt.Errorf("device %s: seed %d: after %s: %w", d.Name(), setup.Seed, op, err)
			}
		}
	}
	if err := r.drain(ctx); err != nil {
		return nil, nil, fmt.Errorf("device %s: seed %d: drain: %w", d.Name(), setup.Seed, err)
	}
	// Only the messages the schedule sent: the ledger also notes ids it
	// saw only in a stray ack or receipt (direction unknown).
	res := &harness.Result{History: r.srv.Log()}
	for _, m := range r.cv.L.Messages() {
		if m.Dir == harness.In || m.Dir == harness.Out {
			res.Messages = append(res.Messages, m)
		} else {
			res.History = append(res.History, "ledger: "+m.ID+" seen in an ack or receipt only")
		}
	}
	return sched, res, nil
}

// run is one schedule on the real client.
type run struct {
	d       *Device
	dir     string
	srv     *waweb.Server
	cv      *waweb.Conversation
	peers   []string
	db      *sqlstore.Container
	jid     types.JID // the device's JID in db
	closeDB func()
	storage stores.Storage // the plugged candidate store; nil on sqlstore
	bot     *Bot
	queue   *ReplyQueue
	down    bool
	settle  time.Duration
}

func (d *Device) open(ctx context.Context, setup *harness.Schedule) (r *run, err error) {
	r = &run{d: d, queue: &ReplyQueue{}, settle: d.Settle}
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
	if r.srv, err = waweb.Listen(ca); err != nil {
		return nil, err
	}
	r.cv = waweb.NewConversation(r.srv)
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
	storeName := setup.Store
	if d.Variant != nil {
		storeName = "" // the whole device on SQLite, the Signal keys on the variant
	}
	if r.db, r.jid, r.closeDB, err = openDevice(ctx, Config{Store: storeName, Dir: r.dir, Seed: setup.Seed}); err != nil {
		return nil, err
	}
	v := d.Variant
	if v == nil && setup.Store != "sqlite" && setup.Store != "postgres" {
		lv, err := stores.Lookup(setup.Store)
		if err != nil {
			return nil, err
		}
		v = &lv
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
	if err := r.start(ctx, dev); err != nil {
		return nil, err
	}
	return r, nil
}

// start plugs a new instance of the candidate store under dev and connects
// a client on it.
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
	sctx, cancel := context.WithTimeout(ctx, r.settle)
	defer cancel()
	bot, err := Start(sctx, r.srv.HTTPClient(), r.cv.L, dev, Options{Reply: r.d.Reply, Buffer: r.d.Buffer,
		Log: r.d.Log, Queue: r.queue})
	if err != nil {
		return err
	}
	r.bot, r.down = bot, false
	// Replies asked for while the client was down (or whose chat state
	// went to a connection that closed) are sent now.
	for range r.queue.Len() {
		r.nudge()
	}
	return nil
}

func (r *run) nudge() {
	// Any peer will do: the chat state only wakes the handler; the reply
	// taken from the queue names its own recipient.
	if len(r.peers) == 0 {
		return
	}
	p, _ := r.cv.Peer(r.peers[0])
	r.cv.Nudge(p)
}

func (r *run) close() {
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
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// quiet waits until the client owes nothing (waweb.Ledger.Busy).
func (r *run) quiet(ctx context.Context) error {
	if r.down {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, r.settle)
	defer cancel()
	return r.cv.L.WaitQuiet(wctx)
}

func (r *run) apply(ctx context.Context, op harness.Op) error {
	if why, ok := refused[op.Verb]; ok {
		return errors.New(why)
	}
	r.srv.Logf("op %s", op)
	if op.Inst > 0 {
		return nil // one instance: an op for another does not apply
	}
	switch op.Verb {
	case "send":
		p, ok := r.cv.Peer(op.Args[0])
		if !ok || r.cv.L.Known(op.Args[1]) {
			return nil
		}
		return r.cv.Send(ctx, p, op.Args[1], "hello "+op.Args[1])
	case "deliver":
		if id, ok := r.cv.Deliver(op.Args[0]); ok {
			return r.handled(ctx, id)
		}
	case "reply":
		p, ok := r.cv.Peer(op.Args[0])
		if !ok || r.cv.L.Known(op.Args[1]) {
			return nil
		}
		r.cv.L.Expect(op.Args[1], harness.Out, p.Name, "reply "+op.Args[1])
		r.queue.Push(p.JID.ToNonAD(), op.Args[1], "reply "+op.Args[1])
		if !r.down {
			r.nudge()
		}
	case "read":
		return r.read(ctx, op.Args[0])
	case "dup":
		r.cv.Dup(op.Args[0])
	case "stop":
		if r.down {
			return nil
		}
		if err := r.quiet(ctx); err != nil {
			return err
		}
		r.bot.Stop()
		r.down = true
		if st, ok := r.storage.(stores.Stopper); ok {
			if err := st.Stop(ctx); err != nil {
				return fmt.Errorf("store stop: %w", err)
			}
		}
	case "restart":
		return r.restart(ctx)
	}
	return nil
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
	dev, err := r.db.GetDevice(ctx, r.jid)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if dev == nil {
		return fmt.Errorf("restart: device %s not in the database", r.jid)
	}
	return r.start(ctx, dev)
}

// drain delivers what is queued and reads what is held until the client
// owes nothing; a stopped client is restarted first, as a process manager
// would.
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
		in, out := r.cv.Held()
		for _, id := range in {
			r.srv.Logf("drain: deliver %s", id)
			r.cv.Deliver(id)
		}
		for _, id := range out {
			r.srv.Logf("drain: read %s", id)
			r.cv.Read(ctx, id)
		}
		if len(in) == 0 && len(out) == 0 {
			return nil
		}
	}
}

// View (what a schedule's generator sees of the run).

func (r *run) Peers() []string { return append([]string(nil), r.peers...) }

// HeardFrom counts the messages from peer the client's handler accepted.
func (r *run) HeardFrom(peer string) int { return r.cv.L.HeardFrom(peer) }

func (r *run) Runnable() []string { return nil }

func (r *run) Pending() (inbound, outbound []string) { return r.cv.Held() }

func (r *run) Delivered() []string { return r.cv.Taken() }

func (r *run) Down() bool { return r.down }

func (r *run) PendingWrites() int { return 0 }
