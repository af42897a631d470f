// Package harness runs schedules: the device under test over a candidate
// store, the fake peers and server, the deterministic scheduler that decides
// interleavings, the history, and the oracle that judges each message.
package harness

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
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
			r.record(RestartOp{})
		}
		if r.mode == Free {
			r.wg.Wait()
			r.afterStep()
		}
		if r.sim != nil {
			if rs := r.sim.Runnable(); len(rs) > 0 {
				r.sim.Step(rs[0])
				r.afterStep()
				r.record(StepOp{Task: rs[0].Name})
				continue
			}
			if len(r.sim.Live()) > 0 {
				r.fail(errors.New("deadlock: live tasks that can never run"))
				break
			}
		}
		take := func(d *fakeserver.Delivery) error {
			r.startReceive(0, d)
			r.record(DeliverOp{ID: d.ID})
			return nil
		}
		read := func(d *fakeserver.Delivery) error {
			r.read(d)
			r.record(ReadOp{ID: d.ID})
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
