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
	srv    *fakeserver.Server
	peers  map[string]*fakeserver.Peer
	names  []string // peer names in contact order
	byAddr map[string]*fakeserver.Peer
	dev    *protocol.SignalAddress
	creds  devproto.Creds
	msgs   map[string]*harness.Message
	order  []string
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
	heard   map[string]int
	// delivered are the deliveries the device took, by id (for dup), and
	// their ids in the order taken.
	delivered map[string]*fakeserver.Delivery
	taken     []string
	history   []string
	applied   []harness.Op
	regen     bool
	crashes   int
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
		srv: fakeserver.New(), peers: map[string]*fakeserver.Peer{}, byAddr: map[string]*fakeserver.Peer{},
		dev:  types.JID{User: harness.DeviceUser, Server: types.DefaultUserServer}.SignalAddress(),
		msgs: map[string]*harness.Message{}, parked: map[string][]gate{}, jobs: map[string]*job{}, started: map[string]int{}, heard: map[string]int{},
		delivered: map[string]*fakeserver.Delivery{}}
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
	res := &harness.Result{History: r.history, RegeneratedCreds: r.regen, Crashes: r.crashes}
	for _, id := range r.order {
		res.Messages = append(res.Messages, r.msgs[id])
	}
	out := s.Clone()
	out.Ops = r.applied
	return out, res, nil
}

func (r *run) log(format string, a ...any) { r.history = append(r.history, fmt.Sprintf(format, a...)) }

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
	r.srv.Upload(r.dev, r.bundle, pks)
	for _, c := range r.s.Contacts {
		for d := range c.Devices {
			p, err := fakeserver.NewPeer(r.ctx, r.srv, c.User, uint16(d))
			if err != nil {
				return fmt.Errorf("peer %s.%d: %w", c.User, d, err)
			}
			r.peers[p.Name] = p
			r.names = append(r.names, p.Name)
			r.byAddr[p.Address().String()] = p
		}
	}
	return nil
}

// The harness.View of the run.

func (r *run) Peers() []string             { return append([]string(nil), r.names...) }
func (r *run) HeardFrom(peer string) int   { return r.heard[peer] }
func (r *run) Pending() (in, out []string) { return r.srv.Pending() }
func (r *run) Delivered() []string         { return append([]string(nil), r.taken...) }
func (r *run) Down() bool                  { return r.down }

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

func (r *run) addMessage(m *harness.Message) {
	r.msgs[m.ID] = m
	r.order = append(r.order, m.ID)
}

// apply runs one op and records it; an op that does not apply does
// nothing (any subsequence of a schedule is a schedule).
func (r *run) apply(op harness.Op) error {
	want, ok := supported[op.Verb]
	if !ok {
		return fmt.Errorf("device %s: op %q not supported", r.rn.Device(), op.Verb)
	}
	if len(op.Args) < want || op.Inst != 0 {
		return fmt.Errorf("device %s: op %q: bad arguments (or an instance: this device is one)", r.rn.Device(), op)
	}
	r.applied = append(r.applied, op)
	switch op.Verb {
	case "send":
		p, ok := r.peers[op.Args[0]]
		if !ok || r.msgs[op.Args[1]] != nil {
			return nil
		}
		msg := op.Args[1]
		body := "hello " + msg
		d, err := p.Send(r.ctx, r.dev, msg, body)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		r.addMessage(&harness.Message{ID: msg, Dir: harness.In, Peer: p.Name, Body: body})
		r.log("%s: %s %s", op, d.Kind, d.ID)
	case "deliver":
		if r.down {
			return nil
		}
		d := r.srv.TakeInbound(op.Args[0])
		if d == nil {
			return nil
		}
		r.log("%s", op)
		return r.startReceive(d)
	case "reply":
		p, ok := r.peers[op.Args[0]]
		if !ok || r.down || r.msgs[op.Args[1]] != nil {
			return nil
		}
		msg := op.Args[1]
		body := "reply " + msg
		r.addMessage(&harness.Message{ID: msg, Dir: harness.Out, Peer: p.Name, Body: body})
		id, _ := r.srv.NextCopy(msg)
		r.log("%s", op)
		return r.startSend(id, &job{kind: "send", peer: p, msg: msg, body: body}, nil)
	case "step":
		if _, ok := r.parked[op.Args[0]]; !ok || r.serial {
			return nil
		}
		return r.step(op.Args[0], "")
	case "run":
		// Step the task until it ends or waits on something other than
		// a gate (a lock another task holds).
		for !r.serial {
			if _, ok := r.parked[op.Args[0]]; !ok {
				break
			}
			if err := r.step(op.Args[0], ""); err != nil {
				return err
			}
		}
	case "read":
		d := r.srv.TakeOutbound(op.Args[0])
		if d == nil {
			return nil
		}
		r.log("%s", op)
		return r.read(d)
	case "dup":
		d := r.delivered[op.Args[0]]
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
		return r.crash(mode)
	case "stop":
		return r.stop()
	case "restart":
		return r.restart()
	}
	return nil
}

// supported are the harness ops the adapter runs and their arity; the
// others (group, snapshot, rollback, reinstall, rekey) are refused by
// Device.Check.
var supported = map[string]int{"send": 2, "deliver": 1, "reply": 2, "step": 1, "run": 1, "read": 1, "dup": 1,
	"crash": 0, "stop": 0, "restart": 0}

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
	p := r.byAddr[d.From.String()]
	if r.delivered[d.ID] == nil {
		r.taken = append(r.taken, d.ID)
	}
	r.delivered[d.ID] = d
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
	a := harness.Attempt{Delivery: d.ID, OK: e.OK}
	if e.OK {
		pl, err := fakeserver.DecodePayload(e.PT)
		m := r.msgs[d.Msg]
		a.Wrong = err != nil || pl.ID != d.Msg || pl.Body != m.Body
		r.heard[j.peer.Name]++
	} else {
		a.Class, a.Err = endpoint.Class(e.Class), e.Err
	}
	r.record(d.Msg, a)
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
	nd, err := j.peer.Retry(r.ctx, r.dev, d.Msg, d.Retry+1, b)
	if err != nil {
		return fmt.Errorf("peer %s answering retry %d of %s: %w", j.peer.Name, d.Retry+1, d.Msg, err)
	}
	if nd != nil {
		r.log("%s: retry %d of %s queued as %s (%s)", j.peer.Name, d.Retry+1, d.Msg, nd.ID, nd.Kind)
	}
	return nil
}

func (r *run) sent(e devproto.Event, j *job) error {
	if !e.OK && e.NeedBundle && !j.fetched {
		// No session: Baileys' assertSessions fetches the contact's keys
		// from the server and sends again on a new session (a pkmsg).
		b, err := r.srv.FetchBundle(j.peer.Address())
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
	n := 1
	if i := strings.LastIndexByte(e.Task, '.'); i >= 0 {
		fmt.Sscanf(e.Task[i+1:], "%d", &n)
	}
	r.srv.ToPeer(&fakeserver.Delivery{ID: e.Task, Msg: j.msg, Copy: n, Retry: j.retry, From: r.dev, To: j.peer.Address(),
		Kind: e.Kind, CT: e.CT})
	r.log("%s: sent (%s)", e.Task, e.Kind)
	return nil
}

func (r *run) record(msg string, a harness.Attempt) {
	m := r.msgs[msg]
	m.Attempts = append(m.Attempts, a)
	switch {
	case a.OK && a.Wrong:
		r.log("%s: ok WRONG PLAINTEXT", a.Delivery)
	case a.OK:
		r.log("%s: ok", a.Delivery)
	default:
		r.log("%s: %s (%s)", a.Delivery, a.Class, a.Err)
	}
}

// read is the peer taking a delivery from the device; a failure other than
// old counter is a retry receipt with the peer's fresh bundle, which the
// device handles as a send that rebuilds the session (sendMessagesAgain).
func (r *run) read(d *fakeserver.Delivery) error {
	p := r.byAddr[d.To.String()]
	pl, err := p.Read(r.ctx, d)
	a := harness.Attempt{Delivery: d.ID}
	m := r.msgs[d.Msg]
	if err != nil {
		a.Class, a.Err = endpoint.ClassOf(err), err.Error()
	} else {
		a.OK = true
		a.Wrong = pl.ID != d.Msg || pl.Body != m.Body
	}
	r.record(d.Msg, a)
	if err == nil || a.Class == endpoint.OldCounter || d.Retry >= fakeserver.MaxRetries {
		return nil
	}
	b, berr := p.FreshBundle(r.ctx)
	if berr != nil {
		return fmt.Errorf("peer %s: fresh bundle: %w", p.Name, berr)
	}
	id, _ := r.srv.NextCopy(d.Msg)
	r.log("%s: retry %d of %s to the device, resent as %s", p.Name, d.Retry+1, d.Msg, id)
	return r.startSend(id, &job{kind: "send", peer: p, msg: d.Msg, body: m.Body, retry: d.Retry + 1}, b)
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
			r.srv.ToDevice(j.del)
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
		switch in, out := r.srv.Pending(); {
		case r.down:
			if err := r.restart(); err != nil {
				return err
			}
		case len(r.parked) > 0:
			if err := r.step(r.first(), "drain: "); err != nil {
				return err
			}
		case len(r.jobs) > 0:
			var names []string
			for n := range r.jobs {
				names = append(names, n)
			}
			sort.Strings(names)
			return fmt.Errorf("device %s: deadlock: tasks %s neither parked nor finished; history:\n%s", r.rn.Device(), strings.Join(names, ", "), strings.Join(r.history, "\n"))
		case len(in) > 0:
			d := r.srv.TakeInbound(in[0])
			r.log("drain: deliver %s", d.ID)
			if err := r.startReceive(d); err != nil {
				return err
			}
		case len(out) > 0:
			d := r.srv.TakeOutbound(out[0])
			r.log("drain: read %s", d.ID)
			if err := r.read(d); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}
