// Package harness runs schedules: the device under test over a candidate
// store, the fake peers and server, the deterministic scheduler that decides
// interleavings, the history, and the oracle that judges each message.
package harness

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/signalerror"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/seeded"
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
	devs    []*device
	wg      sync.WaitGroup
	// The harness side: server, peers, messages, history, the View's
	// Peers, HeardFrom, Pending and Delivered.
	*Contacts

	mu       sync.Mutex // guards what free-mode tasks touch
	tasks    map[string]*sim.Task
	receipts []receipt
	err      error

	// Crash and restart (docs/design.md §7).
	jobs        map[string]job // device tasks by name, to redo after a crash
	down        bool           // crashed and not restarted (or refused to start)
	redo        []job          // killed or refused work to redo at restart
	crashes     int
	regenerated bool // a restart came up with other credentials
	lostPreKeys int  // uploaded, unclaimed prekeys missing after restarts
	refused     bool // a restart refused to start
	// What the verdict needs beyond the ops (execute.go), and each device
	// task's progress through its store calls (follow.go). following: this
	// is a same-client run following another run's actions.
	verdict   verdictState
	prog      map[string]*progress
	following bool
	// restores: a serial run that takes and restores backups
	// (RestoreBaseline); the protocol baseline does neither.
	restores bool
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
		sched: s.Clone(), mode: mode, variant: v, ctx: ctx, Contacts: NewContacts(ContactRules{}),
		tasks: map[string]*sim.Task{}, jobs: map[string]job{}, lastCall: map[string]string{},
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
	if err := r.AddPeers(ctx, r.devs[0].Address(), s.Contacts); err != nil {
		st.Close()
		return nil, err
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
		if r.sched.Discipline == Txn && r.mode == Controlled {
			d.Probe.Gate = func(ctx context.Context, call string) {
				switch {
				case !isWrite(call):
				case ctx.Value(inTxnKey{}) != nil:
					// The transaction's first write takes the database's
					// write lock (SQLite) or the row's (PostgreSQL) until
					// it commits.
					if !d.txnWrote {
						d.txn.Lock(ctx)
						d.txnWrote = true
					}
				default:
					d.txn.Lock(ctx) // a write waits for a transaction that wrote
					d.txn.Unlock(ctx)
				}
			}
		}
		inst := i
		d.Probe.Trace = func(ctx context.Context, call string) {
			if t := sim.TaskFrom(ctx); t != nil {
				r.logLine(t.Name + instSuffix(inst) + " " + call)
				r.noteCall(t.Name, call)
			}
		}
		d.Probe.Exit = func(ctx context.Context, call string) {
			inTxn := ctx.Value(inTxnKey{}) != nil
			r.noteProgress(ctx, func(p *progress) {
				p.finished++
				p.stored = p.stored || (isWrite(call) && !inTxn)
			})
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
		if err := r.Send(ctx, op, r.sched.Group); err != nil {
			r.fail(fmt.Errorf("%s: %w", op, err))
			return r.err
		}
	case "deliver":
		if r.down || op.Inst >= len(r.devs) {
			return nil
		}
		if d := r.Inbound(op); d != nil {
			r.startReceive(op.Inst, d)
		}
	case "reply":
		if r.down || op.Inst >= len(r.devs) {
			return nil
		}
		p, msg, id, body, ok := r.Reply(op)
		if !ok {
			return nil
		}
		r.start(job{name: id, inst: op.Inst, kind: "send", addr: p.Address().String(), msg: msg,
			fn: func(ctx context.Context, d *device, tk *ticket, id string) {
				r.sendMessage(ctx, d, p, msg, id, body, tk)
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
		if d := r.Outbound(op); d != nil {
			r.read(d)
		}
	case "dup":
		r.Dup(op)
	case "crash":
		r.crash(CrashMode(op))
	case "stop":
		r.stop()
	case "restart":
		r.restart()
	case "snapshot":
		if sn, ok := r.storage.(stores.Snapshotter); ok && (r.mode != Serial || r.restores) {
			r.snap = sn.Snapshot()
			r.log("%s: backup of the durable state taken", op)
		}
	case "rollback":
		r.rollback()
	case "reinstall":
		if _, ok := r.Peer(op.Args[0]); !ok {
			return nil
		}
		if r.mode == Free {
			// In-flight sends read the peer's endpoint: like a crash, the
			// reinstall lands between free-mode tasks (go test -race).
			r.wg.Wait()
			r.afterStep()
		}
		if err := r.Reinstall(ctx, op); err != nil {
			r.fail(fmt.Errorf("%s: %w", op, err))
			return r.err
		}
	case "rekey":
		if err := r.Rekey(ctx, op); err != nil {
			r.fail(fmt.Errorf("%s: %w", op, err))
			return r.err
		}
	case "wait":
		// The model has no clock (stores keep logical time).
	default:
		return fmt.Errorf("unknown op %q", op.Verb)
	}
	return r.err
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
	fn := func(ctx context.Context) {
		r.noteProgress(ctx, func(p *progress) { p.started = true })
		j.fn(ctx, d, tk, name)
	}
	switch r.mode {
	case Controlled:
		t := r.sim.Spawn(r.ctx, name, fn)
		r.tasks[name] = t
	case Serial:
		fn(r.ctx)
		r.afterStep()
	case Free:
		r.wg.Add(1)
		seeded.Go(func() { // on the run's crypto/rand stream
			defer r.wg.Done()
			fn(r.ctx)
		})
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
		if err := r.Answer(r.ctx, rc.peer, rc.msg, rc.retry, rc.b); err != nil {
			r.fail(err)
			return
		}
	}
}

// Finish drains the run: remaining tasks run in start order, queued
// deliveries are taken, retries answered, until nothing is left.
func (r *Run) Finish() (*Result, error) {
	for r.err == nil {
		if r.down {
			r.restart() // the process manager brings a crashed device back
			r.record(Op{Verb: "restart"})
		}
		if r.mode == Free {
			r.wg.Wait()
			r.afterStep()
		}
		if r.sim != nil {
			if rs := r.sim.Runnable(); len(rs) > 0 {
				r.sim.Step(rs[0])
				r.afterStep()
				r.record(Op{Verb: "step", Args: []string{rs[0].Name}})
				continue
			}
			if len(r.sim.Live()) > 0 {
				r.fail(errors.New("deadlock: live tasks that can never run"))
				break
			}
		}
		take := func(d *fakeserver.Delivery) error {
			r.startReceive(0, d)
			r.record(Op{Verb: "deliver", Args: []string{d.ID}})
			return nil
		}
		read := func(d *fakeserver.Delivery) error {
			r.read(d)
			r.record(Op{Verb: "read", Args: []string{d.ID}})
			return nil
		}
		if done, _ := r.DrainStep(r.down, take, read); !done {
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
	// txn, controlled mode: held by a receive's DoDecryptionTxn from its
	// first write to its end. A write outside the transaction waits for
	// it, as SQLite's writer lock and PostgreSQL's row locks make it wait;
	// the scheduler must see that wait or it would block inside the
	// database (docs/design.md §6). Before the transaction's first write
	// nothing waits: an outside write commits, and the database decides
	// what the transaction's own write then meets (SQLite:
	// SQLITE_BUSY_SNAPSHOT; PostgreSQL READ COMMITTED: it overwrites).
	txn      sim.Mutex
	txnWrote bool
	// whatsmeow's in-memory retry state (retry.go), per process: the
	// receipts it sent (messageRetries) and its side of the receipts it
	// got (incomingRetryRequestCounter, sessionRecreateHistory).
	retries fakeserver.RetryCounter
	handler fakeserver.RetryHandler
}

type inTxnKey struct{}

// ticket is a place reserved in a discipline's lock when a task starts.
type ticket struct {
	fifo *sim.FIFO
	n    int
	mu   *sim.Mutex
}

// reserve takes the place a task will wait for under the run's discipline:
// locked queues every task on its peer's address; whatsmeow (and txn, which
// only adds the transaction) queues receives, serializes sends
// (messageSendLock, whatsmeow send.go SendMessage) and lets retry handling
// run free (receipt.go handleReceipt starts handleRetryReceipt in a
// goroutine of its own, under no lock).
func (r *Run) reserve(d *device, kind, addr string) *ticket {
	switch r.sched.Discipline {
	case Locked:
		f := d.addrs.Get(addr)
		return &ticket{fifo: f, n: f.Reserve()}
	case Whatsmeow, Txn:
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
	r.Took(del)
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
	}
	r.Received(del, a, pl)
	r.noteProgress(ctx, func(p *progress) { p.acked = true })
	if err == nil || a.Class == endpoint.OldCounter {
		return // whatsmeow's decryptMessages ignores an old counter
	}
	r.sendRetryReceipt(ctx, d, del, err)
}

// sendRetryReceipt is whatsmeow's (retry.go): count the failure per message,
// stop at MaxRetries, attach a fresh prekey bundle only from count 2, or at
// once for a group message whose sender key is unknown and that came with
// no DM part (decryptMessages' isUnavailable, passed as
// forceIncludeIdentity). A failed GenOnePreKey sends the receipt without keys.
func (r *Run) sendRetryReceipt(ctx context.Context, d *device, del *fakeserver.Delivery, err error) {
	count := d.retries.Next(del.Msg, del.Retry)
	if count >= fakeserver.MaxRetries {
		r.log("%s: no retry receipt (count %d)", del.ID, count)
		return
	}
	force := del.Kind == endpoint.SkMsg && del.DMCT == nil && errors.Is(err, signalerror.ErrNoSenderKeyForUser)
	var b *prekey.Bundle
	if fakeserver.WantsKeys(count, force) {
		pk, gerr := d.Device.PreKeys.GenOnePreKey(ctx)
		if gerr != nil {
			r.log("%s: retry receipt without keys: %v", del.ID, gerr)
		} else {
			b = d.Bundle(pk)
		}
	}
	r.mu.Lock()
	r.receipts = append(r.receipts, receipt{msg: del.Msg, peer: del.From, retry: count, b: b})
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
	tctx, cancel := context.WithCancel(context.WithValue(ctx, inTxnKey{}, true))
	defer cancel()
	defer func() {
		if d.txnWrote {
			d.txnWrote = false
			d.txn.Unlock(ctx)
		}
	}()
	var pl fakeserver.Payload
	err := buf.DoDecryptionTxn(tctx, func(ctx context.Context) error {
		var err error
		if pl, err = r.decrypt(ctx, d, del); err != nil {
			return err
		}
		return buf.PutBufferedEvent(ctx, hash, pl.Encode(), time.Unix(0, 0))
	})
	if err == nil {
		r.noteProgress(ctx, func(p *progress) { p.stored = true }) // committed
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
	if del.Kind != endpoint.SkMsg && del.Group != "" && pl.SKDM != nil {
		// A group message resent on a retry receipt: a DM carrying the
		// sender key distribution (handleRetryReceipt adds it).
		if err := d.ProcessSenderKeyDistribution(ctx, del.Group, del.From, pl.SKDM); err != nil {
			return pl, err
		}
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

// sendMessage is whatsmeow's SendMessage to one contact device (send.go
// SendMessage, sendDM, encryptMessageForDevices): load the sessions with
// GetManySessions into a per-send cache (store/sessioncache.go
// WithCachedSessions), fetch a bundle for a device with none, encrypt from
// the cache, write the cache back with PutManySessions
// (PutCachedSessions). Identity calls go to the store directly.
func (r *Run) sendMessage(ctx context.Context, d *device, p *fakeserver.Peer, msg, id, body string, tk *ticket) {
	unlock := tk.lock(ctx)
	defer unlock()
	addr := p.Address()
	existing, cctx, err := d.Device.WithCachedSessions(ctx, []string{addr.String()})
	if err != nil {
		r.log("%s: send failed: %v", id, err)
		return
	}
	var b *prekey.Bundle
	if has, ok := existing[addr.String()]; ok && !has {
		// fetchPreKeysNoError: a device without a bundle is skipped.
		if b, err = r.srv.FetchBundle(addr); err != nil {
			r.log("%s: fetching a bundle: %v", id, err)
		}
	}
	kind, ct, err := encryptForDevice(cctx, d, addr, msg, body, b, existing)
	if perr := d.Device.PutCachedSessions(cctx); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		r.log("%s: send failed: %v", id, err)
		return
	}
	r.ToPeer(p, msg, id, 0, kind, ct)
}

// handleRetryReceipt is whatsmeow's (retry.go) for a receipt from p with
// count retry and, when the receipt had <keys>, bundle b: dropped from the
// tenth receipt for one message; without keys, shouldRecreateSession
// decides whether to rebuild from a fetched bundle; then
// encryptMessageForDevice with no session cache (GetSession/PutSession).
func (r *Run) handleRetryReceipt(ctx context.Context, d *device, p *fakeserver.Peer, msg, id, body string, retry int, b *prekey.Bundle, tk *ticket) {
	unlock := tk.lock(ctx)
	defer unlock()
	addr := p.Address()
	if !d.handler.Admit(addr, msg) {
		r.log("%s: retry receipt %d dropped", id, retry)
		return
	}
	if b == nil {
		if reason, ok := d.handler.ShouldRecreate(ctx, d.Endpoint, addr, retry); ok {
			var err error
			if b, err = r.srv.FetchBundle(addr); err != nil {
				r.log("%s: send failed: fetching a bundle: %v", id, err)
				return
			}
			r.log("%s: recreating the session (%s)", id, reason)
		}
	}
	kind, ct, err := encryptForDevice(ctx, d, addr, msg, body, b, nil)
	if err != nil {
		r.log("%s: send failed: %v", id, err)
		return
	}
	r.ToPeer(p, msg, id, retry, kind, ct)
}

// encryptForDevice is whatsmeow's encryptMessageForDevice (send.go): with a
// bundle, build a session from it first; without, a device with no session
// is an error (existing, when given, is what the send's prefetch found).
func encryptForDevice(ctx context.Context, d *device, to *protocol.SignalAddress, msg, body string, b *prekey.Bundle, existing map[string]bool) (string, []byte, error) {
	if b != nil {
		if err := processBundle(ctx, d, to, b); err != nil {
			return "", nil, fmt.Errorf("failed to process prekey bundle: %w", err)
		}
	} else {
		has, checked := existing[to.String()]
		if !checked {
			var err error
			if has, err = d.Device.ContainsSession(ctx, to); err != nil {
				return "", nil, err
			}
		}
		if !has {
			return "", nil, fmt.Errorf("no signal session established with %s", to)
		}
	}
	pl := fakeserver.Payload{ID: msg, Body: body}
	return d.Encrypt(ctx, to, pl.Encode())
}

// read is the peer taking a delivery from the device. A failure other than
// old counter makes the peer send a retry receipt by whatsmeow's rules
// (Contacts.Read); the device handles it in a task of its own.
func (r *Run) read(del *fakeserver.Delivery) {
	rc, err := r.Read(r.ctx, del)
	if err != nil {
		r.fail(err)
		return
	}
	if rc == nil {
		return
	}
	r.start(job{name: rc.ID, kind: "retry-handling", addr: rc.Peer.Address().String(), msg: rc.Msg,
		fn: func(ctx context.Context, d *device, tk *ticket, id string) {
			r.handleRetryReceipt(ctx, d, rc.Peer, rc.Msg, id, rc.Body, rc.Count, rc.Bundle, tk)
		}})
}
