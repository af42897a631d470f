// Package harness runs schedules: the device under test over a candidate
// store, the fake peers and server, the deterministic scheduler that decides
// interleavings, the history, and the oracle that judges each message.
package harness

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/signalerror"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/sim"
	"github.com/badmac/badmac/stores"
)

// Mode is how tasks are scheduled.
type Mode string

const (
	// Controlled: one task at a time, interleaving fixed by the ops.
	Controlled Mode = "controlled"
	// Free: real goroutines and real locks; step ops are ignored.
	Free Mode = "free"
	// Serial: every task runs to its end as soon as it starts; the protocol
	// baseline the oracle compares against.
	Serial Mode = "serial"
)

// DeviceUser is the account of the device under test.
const DeviceUser = "bot"

// Run is one schedule being executed, op by op.
type Run struct {
	sched   *Schedule // setup; Ops grows as ops are applied
	restore func()
	mode    Mode
	variant stores.Variant
	ctx     context.Context
	storage stores.Storage
	sim     *sim.Scheduler
	srv     *fakeserver.Server
	peers   map[string]*fakeserver.Peer
	byAddr  map[string]*fakeserver.Peer
	devs    []*device
	wg      sync.WaitGroup

	mu       sync.Mutex // guards what free-mode tasks touch
	msgs     map[string]*Message
	order    []string
	tasks    map[string]*sim.Task
	receipts []receipt
	history  []string
	err      error
	// received counts completed receives per peer address, for generators
	// that only reply to contacts the bot has heard from.
	received map[string]int

	// Crash and restart (DESIGN §7).
	jobs        map[string]job // device tasks by name, to redo after a crash
	down        bool           // crashed and not restarted (or refused to start)
	redo        []job          // killed or refused work to redo at restart
	crashes     int
	regenerated bool // a restart came up with other credentials
	lostPreKeys int  // uploaded, unclaimed prekeys missing after restarts
	refused     bool // a restart refused to start
	// What the verdict needs beyond the ops (execute.go).
	verdict verdictState
	// Store-write points, for crash-point enumeration.
	lastCall map[string]string // task name -> last store call traced
	writes   []string          // every write call entered, "PutSession alice:0 (m3)"
	writer   []string          // task that entered each write
	snap     map[string][]byte // the last backup (snapshot op)
}

// job is a device task as started, so a crash can redo it: a receive is
// requeued by the server (never acknowledged), a send runs again.
type job struct {
	name, kind, addr string
	inst             int
	msg              string
	requeue          *fakeserver.Delivery
	fn               func(ctx context.Context, d *device, tk *ticket, id string)
}

type receipt struct {
	msg   string
	peer  *protocol.SignalAddress
	retry int
	b     *prekey.Bundle
}

// Open sets up a run: storage, device instances, peers and server. ops are
// not applied yet. The variant may differ from s.Store (the baseline runs a
// candidate's schedule on the reference store).
func Open(ctx context.Context, s *Schedule, v stores.Variant, mode Mode) (*Run, error) {
	if len(s.Contacts) == 0 {
		return nil, errors.New("schedule has no contacts")
	}
	if _, err := ParseDiscipline(string(s.Discipline)); err != nil {
		return nil, err
	}
	r := &Run{
		sched: s.Clone(), mode: mode, variant: v, ctx: ctx,
		srv: fakeserver.New(), peers: map[string]*fakeserver.Peer{}, byAddr: map[string]*fakeserver.Peer{},
		msgs: map[string]*Message{}, tasks: map[string]*sim.Task{}, received: map[string]int{},
		jobs: map[string]job{}, lastCall: map[string]string{},
	}
	r.sched.Ops = nil
	if mode == Controlled {
		r.sim = sim.New()
	}
	st, err := v.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", v.Name, err)
	}
	r.storage = st
	creds := endpoint.NewCreds()
	if err := r.newDevices(creds); err != nil {
		st.Close()
		return nil, err
	}
	if err := r.register(); err != nil {
		st.Close()
		return nil, err
	}
	for _, c := range s.Contacts {
		for dev := range c.Devices {
			p, err := fakeserver.NewPeer(ctx, r.srv, c.User, uint16(dev))
			if err != nil {
				st.Close()
				return nil, fmt.Errorf("peer %s: %w", c.User, err)
			}
			r.peers[p.Name] = p
			r.byAddr[p.Address().String()] = p
		}
	}
	return r, nil
}

// newDevices builds the device instances over fresh store instances.
func (r *Run) newDevices(creds endpoint.Creds) error {
	n := max(r.sched.Instances, 1)
	jid := types.JID{User: DeviceUser, Server: types.DefaultUserServer}
	r.devs = nil
	for i := range n {
		set, err := r.storage.Instance(r.ctx)
		if err != nil {
			return fmt.Errorf("store %s instance %d: %w", r.variant.Name, i, err)
		}
		if err := set.Complete(); err != nil {
			return fmt.Errorf("store %s: %w", r.variant.Name, err)
		}
		if r.sched.Discipline == Txn {
			if _, ok := set.Sessions.(store.EventBuffer); !ok {
				return fmt.Errorf("store %s has no DoDecryptionTxn (the txn discipline needs a store.EventBuffer)", r.variant.Name)
			}
			if n > 1 && r.mode == Controlled {
				// A transaction held across a yield point blocks the other
				// instance inside the database, where the scheduler cannot
				// switch back to the holder.
				return fmt.Errorf("txn discipline with %d instances needs -mode free", n)
			}
		}
		d := &device{Endpoint: endpoint.New(jid, creds, set), inst: i}
		inst := i
		d.Probe.Trace = func(ctx context.Context, call string) {
			if t := sim.TaskFrom(ctx); t != nil {
				r.logLine(t.Name + instSuffix(inst) + " " + call)
				r.noteCall(t.Name, call)
			}
		}
		r.devs = append(r.devs, d)
	}
	return nil
}

// register is pairing: prekeys generated and uploaded, credentials saved in
// the store if it keeps them, then a flush point.
func (r *Run) register() error {
	ctx := r.ctx
	d := r.devs[0]
	pks, err := d.Device.PreKeys.GetOrGenPreKeys(ctx, 50)
	if err == nil && len(pks) > 0 {
		err = d.Device.PreKeys.MarkPreKeysAsUploaded(ctx, pks[len(pks)-1].KeyID)
	}
	if err != nil {
		return fmt.Errorf("store %s: generating prekeys: %w", r.variant.Name, err)
	}
	r.srv.Upload(d.Address(), d.Bundle, pks)
	if cs, ok := r.storage.(stores.CredsStore); ok {
		if err := cs.SaveCreds(ctx, d.Creds.Encode()); err != nil {
			return fmt.Errorf("store %s: saving creds: %w", r.variant.Name, err)
		}
	}
	if f, ok := r.storage.(stores.Flusher); ok {
		if err := f.Flush(ctx); err != nil {
			return fmt.Errorf("store %s: flush: %w", r.variant.Name, err)
		}
	}
	return nil
}

func instSuffix(i int) string {
	if i == 0 {
		return ""
	}
	return fmt.Sprintf("@%d", i)
}

func (r *Run) log(format string, a ...any) { r.logLine(fmt.Sprintf(format, a...)) }

// logLine appends a history line; the store-call trace, the hottest
// caller, builds its line by concatenation rather than fmt.
func (r *Run) logLine(line string) {
	r.mu.Lock()
	r.history = append(r.history, line)
	r.mu.Unlock()
}

func (r *Run) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// Close releases the storage.
func (r *Run) Close() error { return r.storage.Close() }

// Schedule returns the schedule as applied so far.
func (r *Run) Schedule() *Schedule { return r.sched.Clone() }

// Peers returns the peer names in order.
func (r *Run) Peers() []string {
	var out []string
	for n := range r.peers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// HeardFrom reports how many receives from peer have completed.
func (r *Run) HeardFrom(peer string) int {
	p, ok := r.peers[peer]
	if !ok {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.received[p.Address().String()]
}

// Runnable returns the names of tasks that can be stepped, in start order.
func (r *Run) Runnable() []string {
	if r.sim == nil {
		return nil
	}
	var out []string
	for _, t := range r.sim.Runnable() {
		out = append(out, t.Name)
	}
	return out
}

// Pending returns the queued deliveries to the device and to the peers.
func (r *Run) Pending() (inbound, outbound []string) { return r.srv.Pending() }

// Delivered lists inbound deliveries taken so far (for dup).
func (r *Run) Delivered() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range r.order {
		m := r.msgs[id]
		if m.Dir == In {
			for _, a := range m.Attempts {
				out = append(out, a.Delivery)
			}
		}
	}
	return out
}

// applyOp runs one op and records it (Apply, in execute.go, wraps it).
// Ops that do not apply do nothing.
func (r *Run) applyOp(op Op) error {
	if r.err != nil {
		return r.err
	}
	r.sched.Ops = append(r.sched.Ops, op)
	ctx := r.ctx
	switch op.Verb {
	case "send", "group":
		p, ok := r.peers[op.Args[0]]
		if !ok {
			return nil
		}
		msg := op.Args[1]
		if _, dup := r.msgs[msg]; dup {
			return nil
		}
		body := "hello " + msg
		var d *fakeserver.Delivery
		var err error
		if op.Verb == "group" {
			group := r.sched.Group
			if group == "" {
				group = "group"
			}
			d, err = p.SendGroup(ctx, r.devs[0].Address(), group, msg, body)
		} else {
			d, err = p.Send(ctx, r.devs[0].Address(), msg, body)
		}
		if err != nil {
			r.fail(fmt.Errorf("%s: %w", op, err))
			return r.err
		}
		r.addMessage(&Message{ID: msg, Dir: In, Peer: p.Name, Body: body})
		r.log("%s: %s %s", op, d.Kind, d.ID)
	case "deliver":
		if r.down || op.Inst >= len(r.devs) {
			return nil
		}
		d := r.srv.TakeInbound(op.Args[0])
		if d == nil {
			return nil
		}
		r.log("%s", op)
		r.startReceive(op.Inst, d)
	case "reply":
		p, ok := r.peers[op.Args[0]]
		if !ok || r.down || op.Inst >= len(r.devs) {
			return nil
		}
		msg := op.Args[1]
		if _, dup := r.msgs[msg]; dup {
			return nil
		}
		body := "reply " + msg
		r.addMessage(&Message{ID: msg, Dir: Out, Peer: p.Name, Body: body})
		id, _ := r.srv.NextCopy(msg)
		r.log("%s", op)
		r.start(job{name: id, inst: op.Inst, kind: "send", addr: p.Address().String(), msg: msg,
			fn: func(ctx context.Context, d *device, tk *ticket, id string) {
				r.send(ctx, d, p, msg, id, body, 0, nil, tk)
			}})
	case "step":
		if r.sim == nil {
			return nil
		}
		t := r.tasks[op.Args[0]]
		if t == nil || !t.Runnable() {
			return nil
		}
		r.sim.Step(t)
		r.afterStep()
	case "run":
		if r.sim == nil {
			return nil
		}
		// Only a receive that failed queues work for afterStep (a retry
		// receipt), after its last store call: nothing is left undone by
		// running the task through its yield points.
		if r.sim.Run(r.tasks[op.Args[0]]) {
			r.afterStep()
		}
	case "read":
		d := r.srv.TakeOutbound(op.Args[0])
		if d == nil {
			return nil
		}
		r.log("%s", op)
		r.read(d)
	case "dup":
		d := r.findDelivered(op.Args[0])
		if d == nil {
			return nil
		}
		c := r.srv.Redeliver(d)
		r.log("%s: queued %s", op, c.ID)
	case "crash":
		mode := ""
		if len(op.Args) > 0 {
			mode = op.Args[0]
		}
		r.crash(mode)
	case "restart":
		r.restart()
	case "snapshot":
		if sn, ok := r.storage.(stores.Snapshotter); ok && r.mode != Serial {
			r.snap = sn.Snapshot()
			r.log("%s: backup of the durable state taken", op)
		}
	case "rollback":
		r.rollback()
	case "reinstall":
		p, ok := r.peers[op.Args[0]]
		if !ok {
			return nil
		}
		if err := p.Reinstall(ctx); err != nil {
			r.fail(fmt.Errorf("%s: %w", op, err))
			return r.err
		}
		delete(r.byAddr, p.Address().String())
		r.byAddr[p.Address().String()] = p
		r.log("%s: new identity and registration id", op)
	default:
		return fmt.Errorf("unknown op %q", op.Verb)
	}
	return r.err
}

func (r *Run) addMessage(m *Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs[m.ID] = m
	r.order = append(r.order, m.ID)
}

// findDelivered returns a delivery the device already took, by id.
func (r *Run) findDelivered(id string) *fakeserver.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if m.Dir != In {
			continue
		}
		for _, d := range m.copies {
			if d.ID == id {
				return d
			}
		}
	}
	return nil
}

// start begins a device task: parked in controlled mode, run to its end in
// serial mode, a goroutine in free mode. While the device is down the job
// waits for the restart.
func (r *Run) start(j job) {
	if r.down {
		r.redo = append(r.redo, j)
		return
	}
	r.jobs[j.name] = j
	name, inst := j.name, j.inst
	d := r.devs[inst]
	tk := r.reserve(d, j.kind, j.addr)
	fn := func(ctx context.Context) { j.fn(ctx, d, tk, name) }
	switch r.mode {
	case Controlled:
		t := r.sim.Spawn(r.ctx, name, fn)
		r.tasks[name] = t
	case Serial:
		fn(r.ctx)
		r.afterStep()
	case Free:
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			fn(r.ctx)
		}()
	}
}

// startReceive starts the device task that takes delivery d.
func (r *Run) startReceive(inst int, d *fakeserver.Delivery) {
	r.start(job{name: d.ID, inst: inst, kind: "receive", addr: d.From.String(), msg: d.Msg, requeue: d,
		fn: func(ctx context.Context, dev *device, tk *ticket, _ string) { r.receive(ctx, dev, d, tk) }})
}

// afterStep lets the peers answer the retry receipts the device sent.
func (r *Run) afterStep() {
	r.mu.Lock()
	rs := r.receipts
	r.receipts = nil
	r.mu.Unlock()
	for _, rc := range rs {
		p := r.byAddr[rc.peer.String()]
		d, err := p.Retry(r.ctx, r.devs[0].Address(), rc.msg, rc.retry, rc.b)
		if err != nil {
			r.fail(fmt.Errorf("peer %s answering retry %d of %s: %w", p.Name, rc.retry, rc.msg, err))
			return
		}
		if d != nil {
			r.log("%s: retry %d of %s queued as %s (%s)", p.Name, rc.retry, rc.msg, d.ID, d.Kind)
		} else {
			r.log("%s: gives up on %s after %d retries", p.Name, rc.msg, fakeserver.MaxRetries)
		}
	}
}

// Finish drains the run: remaining tasks run in start order, queued
// deliveries are taken, retries answered, until nothing is left.
func (r *Run) Finish() (*Result, error) {
	for r.err == nil {
		if r.down {
			r.restart() // the process manager brings a crashed device back
		}
		if r.mode == Free {
			r.wg.Wait()
			r.afterStep()
		}
		if r.sim != nil {
			if rs := r.sim.Runnable(); len(rs) > 0 {
				r.sim.Step(rs[0])
				r.afterStep()
				continue
			}
			if len(r.sim.Live()) > 0 {
				r.fail(errors.New("deadlock: live tasks that can never run"))
				break
			}
		}
		in, out := r.srv.Pending()
		if len(in) > 0 && !r.down {
			d := r.srv.TakeInbound(in[0])
			r.log("drain: deliver %s", d.ID)
			r.startReceive(0, d)
			continue
		}
		if len(out) > 0 {
			d := r.srv.TakeOutbound(out[0])
			r.log("drain: read %s", d.ID)
			r.read(d)
			continue
		}
		if r.mode == Free {
			r.mu.Lock()
			more := len(r.receipts) > 0
			r.mu.Unlock()
			if more {
				continue
			}
		}
		break
	}
	if r.err != nil {
		return nil, r.err
	}
	return r.result(), nil
}

// device is one instance of the device under test (one process).
type device struct {
	*endpoint.Endpoint
	inst  int
	addrs sim.KeyedFIFO // locked: one queue per Signal address
	recv  sim.FIFO      // whatsmeow: one receive at a time, in arrival order
	send  sim.Mutex     // whatsmeow: messageSendLock
	// txn: one event at a time, so that one process's transactions never
	// wait on each other inside the database.
	events sim.FIFO
}

// ticket is a place reserved in a discipline's lock when a task starts.
type ticket struct {
	fifo *sim.FIFO
	n    int
	mu   *sim.Mutex
}

// reserve takes the place a task will wait for under the run's discipline:
// locked queues every task on its peer's address; whatsmeow queues receives
// and serializes sends, and lets retry handling run free.
func (r *Run) reserve(d *device, kind, addr string) *ticket {
	switch r.sched.Discipline {
	case Locked:
		f := d.addrs.Get(addr)
		return &ticket{fifo: f, n: f.Reserve()}
	case Txn:
		return &ticket{fifo: &d.events, n: d.events.Reserve()}
	case Whatsmeow:
		switch kind {
		case "receive":
			return &ticket{fifo: &d.recv, n: d.recv.Reserve()}
		case "send":
			return &ticket{mu: &d.send}
		}
	}
	return nil
}

// lock waits for the ticket and returns its release.
func (t *ticket) lock(ctx context.Context) func() {
	switch {
	case t == nil:
		return func() {}
	case t.mu != nil:
		t.mu.Lock(ctx)
		return func() { t.mu.Unlock(ctx) }
	}
	t.fifo.Lock(ctx, t.n)
	return t.fifo.Unlock
}

// receive is the device's handling of one delivery, like whatsmeow's
// handleEncryptedMessage: decrypt the DM part (sender key distribution) if
// any, then the message; on failure send a retry receipt with a fresh
// prekey, except for old counter, which whatsmeow ignores.
func (r *Run) receive(ctx context.Context, d *device, del *fakeserver.Delivery, tk *ticket) {
	r.noteCopy(del)
	unlock := tk.lock(ctx)
	var pl fakeserver.Payload
	var err error
	if r.sched.Discipline == Txn {
		pl, err = r.bufferedDecrypt(ctx, d, del)
	} else {
		pl, err = r.decrypt(ctx, d, del)
	}
	unlock()
	a := Attempt{Delivery: del.ID}
	if err != nil {
		a.Class = endpoint.ClassOf(err)
		a.Err = err.Error()
	} else {
		a.OK = true
		m := r.message(del.Msg)
		a.Wrong = pl.ID != del.Msg || pl.Body != m.Body
		r.mu.Lock()
		r.received[del.From.String()]++
		r.mu.Unlock()
	}
	r.record(del.Msg, a)
	if err == nil || a.Class == endpoint.OldCounter {
		return
	}
	if del.Retry >= fakeserver.MaxRetries {
		return
	}
	pk, gerr := d.Device.PreKeys.GenOnePreKey(ctx)
	if gerr != nil {
		r.log("%s: retry receipt: %v", del.ID, gerr)
		return
	}
	r.mu.Lock()
	r.receipts = append(r.receipts, receipt{msg: del.Msg, peer: del.From, retry: del.Retry + 1, b: d.Bundle(pk)})
	r.mu.Unlock()
}

// bufferedDecrypt is whatsmeow's bufferedDecrypt (EnableDecryptedEventBuffer):
// a ciphertext already in the buffer is answered from it; otherwise decrypt
// and buffer the plaintext in one DoDecryptionTxn. A task killed inside the
// transaction cancels its context, which rolls the transaction back, as
// the database does for a dead process's connection.
func (r *Run) bufferedDecrypt(ctx context.Context, d *device, del *fakeserver.Delivery) (fakeserver.Payload, error) {
	buf := d.Probe.Set.Sessions.(store.EventBuffer) // checked in newDevices
	hash := sha256.Sum256(append(append([]byte(nil), del.DMCT...), del.CT...))
	if ev, err := buf.GetBufferedEvent(ctx, hash); err != nil {
		return fakeserver.Payload{}, &endpoint.StoreErr{Err: err}
	} else if ev != nil && ev.Plaintext != nil {
		r.log("%s: answered from the decrypted-event buffer", del.ID)
		return fakeserver.DecodePayload(ev.Plaintext)
	} else if ev != nil {
		// whatsmeow's EventAlreadyProcessed: a replay, dropped like an
		// old counter (not a failure once the message was accepted).
		return fakeserver.Payload{}, &endpoint.Failure{Class: endpoint.OldCounter, Err: errors.New("event already processed (decrypted-event buffer)")}
	}
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var pl fakeserver.Payload
	err := buf.DoDecryptionTxn(tctx, func(ctx context.Context) error {
		var err error
		if pl, err = r.decrypt(ctx, d, del); err != nil {
			return err
		}
		return buf.PutBufferedEvent(ctx, hash, pl.Encode(), time.Unix(0, 0))
	})
	if err == nil {
		// Handled: whatsmeow then clears the plaintext, keeping the hash.
		if cerr := buf.ClearBufferedEventPlaintext(ctx, hash); cerr != nil {
			r.log("%s: clearing the buffered plaintext: %v", del.ID, cerr)
		}
	}
	return pl, err
}

func (r *Run) decrypt(ctx context.Context, d *device, del *fakeserver.Delivery) (fakeserver.Payload, error) {
	if del.DMCT != nil {
		pt, err := decryptDM(ctx, d, del.From, del.DMKind, del.DMCT)
		if err != nil {
			return fakeserver.Payload{}, err
		}
		dm, err := fakeserver.DecodePayload(pt)
		if err != nil {
			return dm, &endpoint.Failure{Class: endpoint.Other, Err: err}
		}
		if err := d.ProcessSenderKeyDistribution(ctx, del.Group, del.From, dm.SKDM); err != nil {
			return dm, err
		}
	}
	var pt []byte
	var err error
	if del.Kind == endpoint.SkMsg {
		pt, err = d.GroupDecrypt(ctx, del.Group, del.From, del.CT)
	} else {
		pt, err = decryptDM(ctx, d, del.From, del.Kind, del.CT)
	}
	if err != nil {
		return fakeserver.Payload{}, err
	}
	pl, err := fakeserver.DecodePayload(pt)
	if err != nil {
		return pl, &endpoint.Failure{Class: endpoint.Other, Err: err}
	}
	return pl, nil
}

// decryptDM is whatsmeow's decryptDM: a pkmsg from a contact whose identity
// key changed (a reinstall) clears the stored identity and session
// (clearUntrustedIdentity) and is decrypted again.
func decryptDM(ctx context.Context, d *device, from *protocol.SignalAddress, kind string, ct []byte) ([]byte, error) {
	pt, err := d.DecryptDM(ctx, from, kind, ct)
	if err == nil || kind != endpoint.PkMsg || endpoint.ClassOf(err) != endpoint.UntrustedIdentity {
		return pt, err
	}
	if err := d.Device.Identities.DeleteIdentity(ctx, from.String()); err != nil {
		return nil, err
	}
	if err := d.Device.Sessions.DeleteSession(ctx, from.String()); err != nil {
		return nil, err
	}
	return d.DecryptDM(ctx, from, kind, ct)
}

// processBundle is whatsmeow's encryptMessageForDevice around a bundle: a
// bundle with a changed identity key clears the stored identity (and
// session) and is processed again.
func processBundle(ctx context.Context, d *device, to *protocol.SignalAddress, b *prekey.Bundle) error {
	err := d.ProcessBundle(ctx, to, b)
	if !errors.Is(err, signalerror.ErrUntrustedIdentity) {
		return err
	}
	if err := d.Device.Identities.DeleteIdentity(ctx, to.String()); err != nil {
		return err
	}
	if err := d.Device.Sessions.DeleteSession(ctx, to.String()); err != nil {
		return err
	}
	return d.ProcessBundle(ctx, to, b)
}

// send encrypts a reply (or, with a bundle, rebuilds the session from a
// retry receipt's keys first, as whatsmeow's handleRetryReceipt does) and
// queues it for the peer.
func (r *Run) send(ctx context.Context, d *device, p *fakeserver.Peer, msg, id, body string, retry int, b *prekey.Bundle, tk *ticket) {
	unlock := tk.lock(ctx)
	defer unlock()
	fail := func(err error) { r.log("%s: send failed: %v", id, err) }
	if b != nil {
		if err := processBundle(ctx, d, p.Address(), b); err != nil {
			fail(err)
			return
		}
	} else if has, err := d.Device.ContainsSession(ctx, p.Address()); err != nil {
		fail(err)
		return
	} else if !has {
		bundle, err := r.srv.FetchBundle(p.Address())
		if err == nil {
			err = processBundle(ctx, d, p.Address(), bundle)
		}
		if err != nil {
			fail(err)
			return
		}
	}
	pl := fakeserver.Payload{ID: msg, Body: body}
	k, ct, err := d.Encrypt(ctx, p.Address(), pl.Encode())
	if err != nil {
		fail(err)
		return
	}
	n := 1
	if i := strings.LastIndexByte(id, '.'); i >= 0 {
		fmt.Sscanf(id[i+1:], "%d", &n)
	}
	r.srv.ToPeer(&fakeserver.Delivery{ID: id, Msg: msg, Copy: n, Retry: retry, From: d.Address(), To: p.Address(), Kind: k, CT: ct})
}

// read is the peer taking a delivery from the device. A failure other than
// old counter sends a retry receipt with the peer's fresh bundle; the device
// handles it in a task of its own that takes no receive lock.
func (r *Run) read(del *fakeserver.Delivery) {
	p := r.byAddr[del.To.String()]
	pl, err := p.Read(r.ctx, del)
	a := Attempt{Delivery: del.ID}
	m := r.message(del.Msg)
	if err != nil {
		a.Class = endpoint.ClassOf(err)
		a.Err = err.Error()
	} else {
		a.OK = true
		a.Wrong = pl.ID != del.Msg || pl.Body != m.Body
	}
	r.record(del.Msg, a)
	if err == nil || a.Class == endpoint.OldCounter || del.Retry >= fakeserver.MaxRetries {
		return
	}
	b, berr := p.FreshBundle(r.ctx)
	if berr != nil {
		r.fail(fmt.Errorf("peer %s: fresh bundle: %w", p.Name, berr))
		return
	}
	id, _ := r.srv.NextCopy(del.Msg)
	r.log("%s: retry %d of %s to the device, resent as %s", p.Name, del.Retry+1, del.Msg, id)
	retry := del.Retry + 1
	r.start(job{name: id, kind: "retry-handling", addr: p.Address().String(), msg: del.Msg,
		fn: func(ctx context.Context, d *device, tk *ticket, id string) {
			r.send(ctx, d, p, del.Msg, id, m.Body, retry, b, tk)
		}})
}

func (r *Run) message(id string) *Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[id]
}

func (r *Run) noteCopy(d *fakeserver.Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.msgs[d.Msg]; m != nil {
		m.copies = append(m.copies, d)
	}
}

func (r *Run) record(msg string, a Attempt) {
	r.mu.Lock()
	m := r.msgs[msg]
	m.Attempts = append(m.Attempts, a)
	r.mu.Unlock()
	if a.OK {
		r.log("%s: ok%s", a.Delivery, map[bool]string{true: " WRONG PLAINTEXT", false: ""}[a.Wrong])
	} else {
		r.log("%s: %s (%s)", a.Delivery, a.Class, a.Err)
	}
}
