package baileys

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/util/optional"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/seeded"
)

// Runner runs schedules on one device process, reset between schedules
// (starting Node and importing Baileys takes seconds). It runs one schedule
// at a time; Device serializes its callers.
type Runner struct {
	version  string
	start    func(ctx context.Context, dir string) (*devproto.Conn, error)
	conn     *devproto.Conn
	tmp      string
	n        int
	baseline string // the protocol baseline's variant
}

// NewRunner starts the device for a version ("6.17.16").
func NewRunner(ctx context.Context, version string, opt Options) (*Runner, error) {
	st, err := starter(version, opt)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "badmac-baileys-")
	if err != nil {
		return nil, err
	}
	rn := &Runner{version: version, start: st, tmp: tmp, baseline: opt.BaselineVariant}
	if rn.baseline == "" {
		rn.baseline = "locked"
	}
	if rn.conn, err = st(ctx, filepath.Join(tmp, "boot")); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return rn, nil
}

// Close ends the device process and removes its state.
func (rn *Runner) Close() {
	if rn.conn != nil {
		rn.conn.Close()
	}
	os.RemoveAll(rn.tmp)
}

// Device is the name the device greeted with.
func (rn *Runner) Device() string { return rn.conn.Hello.Device }

// alive brings back a device process a previous schedule left dead (one
// that failed between a crash and its restart).
func (rn *Runner) alive(ctx context.Context) error {
	if !rn.conn.Exited(0) {
		return nil
	}
	c, err := rn.start(ctx, filepath.Join(rn.tmp, "boot"))
	if err != nil {
		return err
	}
	rn.conn = c
	return nil
}

// gate is a task parked before a store call.
type gate struct {
	id, task, call string
	at             int // arrival order
}

// job is a live device task.
type job struct {
	kind    string // receive or send
	del     *fakeserver.Delivery
	peer    *fakeserver.Peer
	msg     string
	body    string
	retry   int
	fetched bool   // a send that already fetched a bundle for want of a session
	seq     int    // start order
	name    string // the task's name, kept when it is redone after a restart
}

// run is one schedule being executed; it is the harness.View its source
// sees.
type run struct {
	rn     *Runner
	ctx    context.Context
	s      *harness.Schedule
	serial bool
	dir    string
	// The harness side: server, contacts, messages, history, and the
	// View's Peers (in contact order), HeardFrom, Pending and Delivered
	// (every delivery taken, as taken: a receive parks mid-task).
	*harness.Contacts
	dev   *protocol.SignalAddress
	creds devproto.Creds
	// parked are the gates each parked task waits at, oldest first. A
	// task's own async context makes one call at a time; work it started
	// that another task waits on (7.x's LID-mapping lookup) is named for
	// it too and may park beside it (docs/device-protocol.md).
	parked map[string][]gate
	jobs   map[string]*job
	seq    int // tasks started
	// started is each task's start order (its latest start).
	started map[string]int
	gates   int // gates reached
	applied []harness.Op
	regen   bool
	crashes int
	// down: crashed (killed: the process is dead) or stopped, and not
	// restarted; redo are the tasks to requeue or run again at the restart.
	down, killed bool
	redo         []*job
}

// exec runs s's setup with ops from src (s's own ops when src is nil),
// then the drain. serial runs every task to its end as soon as it starts
// (the protocol baseline: step and run ops do nothing, a crash is a clean
// restart), on the runner's baseline variant.
func (rn *Runner) exec(ctx context.Context, s *harness.Schedule, serial bool, src harness.Source) (*harness.Schedule, *harness.Result, error) {
	if err := rn.alive(ctx); err != nil {
		return nil, nil, err
	}
	rn.n++
	r := &run{rn: rn, ctx: ctx, s: s, serial: serial, dir: filepath.Join(rn.tmp, fmt.Sprintf("s%d", rn.n)),
		Contacts: harness.NewContacts(contactRules),
		dev:      types.JID{User: harness.DeviceUser, Server: types.DefaultUserServer}.SignalAddress(),
		parked:   map[string][]gate{}, jobs: map[string]*job{}, started: map[string]int{}}
	defer os.RemoveAll(r.dir)
	// The Go side's randomness (peers' keys, padding) is seeded too, on
	// this goroutine; the device's comes from the reset's seed.
	defer seeded.Bind(seeded.NewStream(s.Seed, 0xba))()
	variant := s.Store
	if serial {
		variant = rn.baseline
	}
	if err := r.setup(variant); err != nil {
		return nil, nil, err
	}
	if src == nil {
		src = harness.Ops(s.Ops)
	}
	for {
		op, ok := src.Next(r)
		if !ok {
			break
		}
		if err := r.apply(op); err != nil {
			return nil, nil, err
		}
	}
	if err := r.drain(); err != nil {
		return nil, nil, err
	}
	res := r.Result()
	res.RegeneratedCreds, res.Crashes = r.regen, r.crashes
	out := s.Clone()
	out.Ops = r.applied
	return out, res, nil
}

// contactRules are the adapter's differences from the model's harness
// side: Peers in the schedule's contact order; Delivered lists each
// delivery as the device took it (a dup may copy one whose receive is still
// parked); the contacts' retry receipts always carry a fresh bundle (the
// device handles them as a send that rebuilds the session,
// sendMessagesAgain), and only an answer that queues a resend is logged.
var contactRules = harness.ContactRules{ContactOrder: true, DeliveredAsTaken: true, Receipts: harness.FreshBundleReceipts}

func (r *run) log(format string, a ...any) { r.Logf(format, a...) }

func (r *run) call(req devproto.Request) (devproto.Reply, error) {
	rep, err := r.rn.conn.Call(r.ctx, req)
	if err != nil {
		return rep, err
	}
	if !rep.OK {
		return rep, fmt.Errorf("device %s: %s failed: %s", r.rn.Device(), req.Op, rep.Err)
	}
	return rep, r.events(rep.Events)
}

func (r *run) setup(variant string) error {
	if _, err := r.call(devproto.Request{Op: devproto.OpReset, Dir: r.dir, Variant: variant, Seed: fmt.Sprint(r.s.Seed)}); err != nil {
		return err
	}
	rep, err := r.call(devproto.Request{Op: devproto.OpProvision, PreKeys: 50})
	if err != nil {
		return err
	}
	r.creds = *rep.Creds
	var pks []*keys.PreKey
	for _, p := range rep.PreKeys {
		pub := [32]byte(p.Pub)
		pks = append(pks, &keys.PreKey{KeyPair: keys.KeyPair{Pub: &pub}, KeyID: p.ID})
	}
	r.Server().Upload(r.dev, r.bundle, pks)
	return r.AddPeers(r.ctx, r.dev, r.s.Contacts)
}

// The harness.View of the run.

// Down reports the device crashed or stopped and not restarted.
func (r *run) Down() bool { return r.down }

// Runnable are the parked tasks in start order (none in serial mode: every
// task runs to its end as it starts).
func (r *run) Runnable() []string {
	if r.serial {
		return nil
	}
	var ts []string
	for t := range r.parked {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return r.started[ts[i]] < r.started[ts[j]] })
	return ts
}

// PendingWrites is 1 while the device is up: the creds.json save, the one
// write the adapter can crash inside (devproto tear). A crash mode's first
// letter is that write's fate: torn (g) tears it, kept (k) or dropped (d)
// is a plain kill (Baileys saved the file whole, or never began the save).
// Parked store calls are never made either way: their tasks die before them.
func (r *run) PendingWrites() int {
	if r.down || r.serial {
		return 0
	}
	return 1
}

// bundle is the device's bundle as the server hands it out: the
// credentials it reported at provisioning (a device that regenerated them
// after a crash serves stale bundles, as a real one would until it uploads).
func (r *run) bundle(pk *keys.PreKey) *prekey.Bundle {
	id := optional.NewEmptyUint32()
	var pub ecc.ECPublicKeyable
	if pk != nil {
		id, pub = optional.NewOptionalUint32(pk.KeyID), ecc.NewDjbECPublicKey(*pk.Pub)
	}
	return prekey.NewBundle(r.creds.Reg, 0, id, r.creds.SPKID, pub, ecc.NewDjbECPublicKey([32]byte(r.creds.SPK)),
		[64]byte(r.creds.Sig), identity.NewKey(ecc.NewDjbECPublicKey([32]byte(r.creds.Identity))))
}

// apply runs one op and records it; an op that does not apply does
// nothing (any subsequence of a schedule is a schedule).
func (r *run) apply(op harness.Op) error {
	if err := adapterOps.Refuse(r.rn.Device(), []harness.Op{op}, nil); err != nil {
		return err
	}
	if harness.Inst(op) != 0 {
		return fmt.Errorf("device %s: op %q: an instance (this device is one)", r.rn.Device(), op)
	}
	r.applied = append(r.applied, op)
	switch o := op.(type) {
	case harness.SendOp:
		if err := r.Send(r.ctx, op, ""); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	case harness.DeliverOp:
		if r.down {
			return nil
		}
		if d := r.Inbound(o); d != nil {
			return r.startReceive(d)
		}
	case harness.ReplyOp:
		if r.down {
			return nil
		}
		p, msg, id, body, ok := r.Reply(o)
		if !ok {
			return nil
		}
		return r.startSend(id, &job{kind: "send", peer: p, msg: msg, body: body}, nil)
	case harness.StepOp:
		if _, ok := r.parked[o.Task]; !ok || r.serial {
			return nil
		}
		return r.step(o.Task, "")
	case harness.RunOp:
		// Step the task until it ends or waits on something other than
		// a gate (a lock another task holds).
		for !r.serial {
			if _, ok := r.parked[o.Task]; !ok {
				break
			}
			if err := r.step(o.Task, ""); err != nil {
				return err
			}
		}
	case harness.ReadOp:
		if d := r.Outbound(o); d != nil {
			return r.read(d)
		}
	case harness.DupOp:
		r.Dup(o)
	case harness.CrashOp:
		return r.crash(o.Mode)
	case harness.StopOp:
		return r.stop()
	case harness.RestartOp:
		return r.restart()
	}
	return nil
}

// adapterOps are the harness ops the adapter runs; the others (group,
// snapshot, rollback, reinstall, rekey, wait, the LID ops) are refused by
// Device.Check.
var adapterOps = harness.Implements(harness.SendOp{}, harness.DeliverOp{}, harness.ReplyOp{}, harness.StepOp{}, harness.RunOp{},
	harness.ReadOp{}, harness.DupOp{}, harness.CrashOp{}, harness.StopOp{}, harness.RestartOp{})

// step lets task t make the store call it is parked at. The history shows
// the step, with prefix (the drain's); the serial baseline's steps are not
// ops and are not shown.
func (r *run) step(t, prefix string) error {
	g := r.parked[t][0]
	if r.parked[t] = r.parked[t][1:]; len(r.parked[t]) == 0 {
		delete(r.parked, t)
	}
	if !r.serial {
		r.log("%s%s %s", prefix, g.task, g.call)
	}
	_, err := r.call(devproto.Request{Op: devproto.OpStep, Gate: g.id})
	return err
}

// events folds a reply's events in: parked gates, finished tasks.
func (r *run) events(evs []devproto.Event) error {
	for _, e := range evs {
		if !e.Done {
			// A task can reach a store call after it reported its end
			// (7.x commits a transaction after the encrypt resolved).
			if r.started[e.Task] == 0 {
				return fmt.Errorf("device %s: gate %s for unknown task %q", r.rn.Device(), e.Gate, e.Task)
			}
			r.gates++
			r.parked[e.Task] = append(r.parked[e.Task], gate{id: e.Gate, task: e.Task, call: e.Call, at: r.gates})
			continue
		}
		j, ok := r.jobs[e.Task]
		if !ok {
			return fmt.Errorf("device %s: event for unknown task %q", r.rn.Device(), e.Task)
		}
		delete(r.jobs, e.Task)
		var err error
		if j.kind == "receive" {
			err = r.received(e, j)
		} else {
			err = r.sent(e, j)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *run) startReceive(d *fakeserver.Delivery) error {
	p := r.PeerAt(d.From)
	r.Took(d)
	return r.startTask(d.ID, &job{kind: "receive", del: d, peer: p, msg: d.Msg},
		devproto.Request{Op: devproto.OpDecrypt, Task: d.ID, Peer: p.JID.User, PeerDev: p.JID.Device, Kind: d.Kind, CT: d.CT})
}

func (r *run) startSend(id string, j *job, b *prekey.Bundle) error {
	pl := fakeserver.Payload{ID: j.msg, Body: j.body}
	req := devproto.Request{Op: devproto.OpEncrypt, Task: id, Peer: j.peer.JID.User, PeerDev: j.peer.JID.Device,
		PT: pl.Encode()}
	if b != nil {
		req.Bundle = devproto.FromBundle(b)
	}
	return r.startTask(id, j, req)
}

// startTask starts a device task; in serial mode it runs to its end.
func (r *run) startTask(id string, j *job, req devproto.Request) error {
	if _, dup := r.jobs[id]; dup {
		return fmt.Errorf("task %s started twice", id)
	}
	r.seq++
	j.seq = r.seq
	r.started[id] = r.seq
	r.jobs[id] = j
	if _, err := r.call(req); err != nil {
		return err
	}
	for r.serial && len(r.parked) > 0 {
		if err := r.step(r.first(), ""); err != nil {
			return err
		}
	}
	return nil
}

// first is the task parked longest (the one whose gate came first).
func (r *run) first() string {
	best := ""
	for t, gs := range r.parked {
		if best == "" || gs[0].at < r.parked[best][0].at {
			best = t
		}
	}
	return best
}

// received judges a finished receive and, on a failure other than old
// counter, sends the retry receipt with a fresh prekey of the device's, as
// Baileys' sendRetryRequest does; the peer answers it at once.
func (r *run) received(e devproto.Event, j *job) error {
	d := j.del
	a := r.Decrypted(d, e.OK, e.PT, endpoint.Class(e.Class), e.Err)
	if e.OK || a.Class == endpoint.OldCounter || d.Retry >= fakeserver.MaxRetries {
		return nil
	}
	rep, err := r.call(devproto.Request{Op: devproto.OpPreKey})
	if err != nil {
		return err
	}
	cur := *rep.Creds
	pub := [32]byte(rep.PreKey.Pub)
	saved := r.creds
	r.creds = cur
	b := r.bundle(&keys.PreKey{KeyPair: keys.KeyPair{Pub: &pub}, KeyID: rep.PreKey.ID})
	r.creds = saved
	return r.Answer(r.ctx, j.peer.Address(), d.Msg, d.Retry+1, b)
}

func (r *run) sent(e devproto.Event, j *job) error {
	if !e.OK && e.NeedBundle && !j.fetched {
		// No session: Baileys' assertSessions fetches the contact's keys
		// from the server and sends again on a new session (a pkmsg).
		b, err := r.Server().FetchBundle(j.peer.Address())
		if err != nil {
			return fmt.Errorf("%s: fetching %s's bundle: %w", e.Task, j.peer.Name, err)
		}
		r.log("%s: no session with %s, bundle fetched", e.Task, j.peer.Name)
		j.fetched = true
		return r.startSend(e.Task, j, b)
	}
	if !e.OK {
		r.log("%s: send failed: %s: %s", e.Task, e.Class, e.Err)
		return nil
	}
	r.ToPeer(j.peer, j.msg, e.Task, j.retry, e.Kind, e.CT)
	r.log("%s: sent (%s)", e.Task, e.Kind)
	return nil
}

// read is the peer taking a delivery from the device; a failure other than
// old counter is a retry receipt with the peer's fresh bundle
// (contactRules), which the device handles as a send that rebuilds the
// session (sendMessagesAgain).
func (r *run) read(d *fakeserver.Delivery) error {
	rc, err := r.Read(r.ctx, d)
	if err != nil || rc == nil {
		return err
	}
	return r.startSend(rc.ID, &job{kind: "send", peer: rc.Peer, msg: rc.Msg, body: rc.Body, retry: rc.Count}, rc.Bundle)
}

// crash kills the device (harness op crash MODE). A mode whose first
// letter is g tears the creds.json save (PendingWrites): the adapter
// writes a prefix of the file in place and dies (docs/design.md §3:
// useMultiFileAuthState writes with writeFile, no temp file and rename);
// otherwise the process is SIGKILLed. Live tasks die with it: receives were
// never acknowledged, so the server requeues them at the restart; sends
// run again then. In the serial baseline nothing is in flight and no write
// is torn: a crash is a clean restart.
func (r *run) crash(mode string) error {
	if r.down {
		return nil
	}
	if r.serial {
		return r.reload("crash")
	}
	tear := strings.HasPrefix(mode, "g")
	if tear {
		rep, err := r.rn.conn.Call(r.ctx, devproto.Request{Op: devproto.OpTear, Fraction: 0.5})
		if err == nil {
			return fmt.Errorf("device %s: tear answered (ok=%v %s) instead of dying", r.rn.Device(), rep.OK, rep.Err)
		}
		if !r.rn.conn.Exited(0) {
			return err // not the death it asked for
		}
		r.log("crash %q: the device died inside a creds.json write", mode)
	} else {
		r.rn.conn.Kill()
		r.log("crash %q: the device was killed", mode)
	}
	r.crashes++
	r.down, r.killed = true, true
	r.abandon()
	return nil
}

// abandon ends every live task: parked ones never run again, and they are
// redone at the restart in start order.
func (r *run) abandon() {
	var js []*job
	names := map[*job]string{}
	for n, j := range r.jobs {
		js = append(js, j)
		names[j] = n
	}
	sort.Slice(js, func(a, b int) bool { return js[a].seq < js[b].seq })
	for _, j := range js {
		j.name = names[j]
	}
	r.redo = append(r.redo, js...)
	r.jobs, r.parked = map[string]*job{}, map[string][]gate{}
}

// stop is a clean shutdown: parked tasks run to their ends (longest
// parked first), then the device is down until restart. A task that
// cannot finish (none, with a correct variant) ends with the process and
// is redone after the restart.
func (r *run) stop() error {
	if r.down {
		return nil
	}
	if r.serial {
		return r.reload("stop")
	}
	for len(r.parked) > 0 {
		if err := r.step(r.first(), "stop: "); err != nil {
			return err
		}
	}
	r.abandon()
	r.down = true
	r.log("stop: clean shutdown")
	return nil
}

// reload is the serial baseline's crash or stop: a clean restart in the
// same process (caches dropped, state reloaded from disk).
func (r *run) reload(what string) error {
	rep, err := r.call(devproto.Request{Op: devproto.OpRestart})
	if err != nil {
		return err
	}
	if what == "crash" {
		r.crashes++
	}
	r.log("%s: clean restart (serial)", what)
	return r.checkCreds(*rep.Creds)
}

// restart brings the device back from its folder: after a crash a new
// process loads the state on disk, after a stop the process reloads it.
// Then unacknowledged receives are requeued and interrupted sends run again.
func (r *run) restart() error {
	if !r.down {
		return nil
	}
	var rep devproto.Reply
	var err error
	if r.killed {
		if r.rn.conn, err = r.rn.start(r.ctx, r.dir); err != nil {
			return err
		}
		rep, err = r.call(devproto.Request{Op: devproto.OpLoad, Variant: r.s.Store, Seed: fmt.Sprint(r.s.Seed + uint64(r.crashes))})
	} else {
		rep, err = r.call(devproto.Request{Op: devproto.OpRestart})
	}
	if err != nil {
		return err
	}
	r.down, r.killed = false, false
	if err := r.checkCreds(*rep.Creds); err != nil {
		return err
	}
	redo := r.redo
	r.redo = nil
	for _, j := range redo {
		if j.kind == "receive" {
			r.Server().ToDevice(j.del)
			r.log("%s: requeued (never acknowledged)", j.name)
			continue
		}
		if err := r.startSend(j.name, j, nil); err != nil {
			return err
		}
	}
	return nil
}

// checkCreds compares the credentials the device came back with to those
// it was provisioned with: new ones are a failure of their own.
func (r *run) checkCreds(c devproto.Creds) error {
	if c.Reg != r.creds.Reg || string(c.Identity) != string(r.creds.Identity) || c.SPKID != r.creds.SPKID ||
		string(c.SPK) != string(r.creds.SPK) {
		r.regen = true
		r.log("restart: REGENERATED CREDENTIALS (registration id %d → %d)", r.creds.Reg, c.Reg)
	} else {
		r.log("restart: credentials intact")
	}
	return nil
}

// drain runs what is left: a crashed or stopped device is restarted, parked
// tasks run in arrival order, then queued deliveries both ways, until
// nothing is left. Not recorded: a replay drains the same way.
func (r *run) drain() error {
	for {
		var err error
		switch {
		case r.down:
			err = r.restart()
		case len(r.parked) > 0:
			err = r.step(r.first(), "drain: ")
		case len(r.jobs) > 0:
			var names []string
			for n := range r.jobs {
				names = append(names, n)
			}
			sort.Strings(names)
			return fmt.Errorf("device %s: deadlock: tasks %s neither parked nor finished; history:\n%s", r.rn.Device(), strings.Join(names, ", "), strings.Join(r.Result().History, "\n"))
		default:
			var done bool
			if done, err = r.DrainStep(false, r.startReceive, r.read); done {
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}
