package baileys

import (
	"context"
	"fmt"
	"math/rand/v2"
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
)

// Runner runs schedules on one device process, reset between schedules
// (starting Node and importing Baileys takes seconds).
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

// gate is a task parked before a store call.
type gate struct{ id, task, call string }

// job is a live device task.
type job struct {
	kind    string // receive or send
	del     *fakeserver.Delivery
	peer    *fakeserver.Peer
	msg     string
	body    string
	retry   int
	fetched bool // a send that already fetched a bundle for want of a session
}

// run is one schedule being executed.
type run struct {
	rn     *Runner
	ctx    context.Context
	s      *Schedule
	serial bool
	dir    string
	srv    *fakeserver.Server
	peers  map[string]*fakeserver.Peer
	byAddr map[string]*fakeserver.Peer
	dev    *protocol.SignalAddress
	creds  devproto.Creds
	msgs   map[string]*harness.Message
	order  []string
	parked []gate
	jobs   map[string]job
	heard  map[string]int
	// delivered are the deliveries the device took, by id (for dup).
	delivered map[string]*fakeserver.Delivery
	history   []string
	applied   []Op
	regen     bool
	crashes   int
}

// Exec runs s on the device: its ops in order, then the drain. serial runs
// every task to its end as soon as it starts (the protocol baseline; step
// ops are skipped). gen, when not nil, is asked for more ops before the
// drain (a generated schedule); the ops applied are in the returned
// schedule.
func (rn *Runner) Exec(ctx context.Context, s *Schedule, serial bool, gen Generator) (*harness.Result, *Schedule, error) {
	rn.n++
	r := &run{rn: rn, ctx: ctx, s: s, serial: serial, dir: filepath.Join(rn.tmp, fmt.Sprintf("s%d", rn.n)),
		srv: fakeserver.New(), peers: map[string]*fakeserver.Peer{}, byAddr: map[string]*fakeserver.Peer{},
		dev:  types.JID{User: harness.DeviceUser, Server: types.DefaultUserServer}.SignalAddress(),
		msgs: map[string]*harness.Message{}, jobs: map[string]job{}, heard: map[string]int{},
		delivered: map[string]*fakeserver.Delivery{}}
	defer os.RemoveAll(r.dir)
	// The Go side's randomness (peers' keys, padding) is seeded too; the
	// device's comes from the reset's seed.
	defer harness.SeedRandom(s.Seed, 0xba)()
	variant := s.Variant
	if serial {
		variant = rn.baseline
	}
	if err := r.setup(variant); err != nil {
		return nil, nil, err
	}
	for _, op := range s.Ops {
		if err := r.apply(op); err != nil {
			return nil, nil, err
		}
	}
	if gen != nil {
		rng := rand.New(rand.NewPCG(s.Seed, 0x6a7e))
		for {
			op, ok := gen.Next(r, rng)
			if !ok {
				break
			}
			if err := r.apply(op); err != nil {
				return nil, nil, err
			}
		}
	}
	if err := r.drain(); err != nil {
		return nil, nil, err
	}
	res := &harness.Result{History: r.history, RegeneratedCreds: r.regen, Crashes: r.crashes}
	for _, id := range r.order {
		res.Messages = append(res.Messages, r.msgs[id])
	}
	out := *s
	out.Ops = r.applied
	return res, &out, nil
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
		p, err := fakeserver.NewPeer(r.ctx, r.srv, c, 0)
		if err != nil {
			return fmt.Errorf("peer %s: %w", c, err)
		}
		r.peers[p.Name] = p
		r.byAddr[p.Address().String()] = p
	}
	return nil
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

// apply runs one op; an op that does not apply does nothing (any
// subsequence of a schedule is a schedule).
func (r *run) apply(op Op) error {
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
		r.applied = append(r.applied, op)
		r.log("%s: %s %s", op, d.Kind, d.ID)
	case "deliver":
		d := r.srv.TakeInbound(op.Args[0])
		if d == nil {
			return nil
		}
		r.applied = append(r.applied, op)
		r.log("%s", op)
		return r.startReceive(d)
	case "reply":
		p, ok := r.peers[op.Args[0]]
		if !ok || r.msgs[op.Args[1]] != nil {
			return nil
		}
		msg := op.Args[1]
		body := "reply " + msg
		r.addMessage(&harness.Message{ID: msg, Dir: harness.Out, Peer: p.Name, Body: body})
		id, _ := r.srv.NextCopy(msg)
		r.applied = append(r.applied, op)
		r.log("%s", op)
		return r.startSend(id, job{kind: "send", peer: p, msg: msg, body: body}, nil)
	case "step":
		if r.serial {
			return nil
		}
		i := r.parkedAt(op.Args[0])
		if i < 0 {
			return nil
		}
		g := r.parked[i]
		r.parked = append(r.parked[:i], r.parked[i+1:]...)
		r.applied = append(r.applied, op)
		r.log("%s %s", g.task, g.call)
		_, err := r.call(devproto.Request{Op: devproto.OpStep, Gate: g.id})
		return err
	case "read":
		d := r.srv.TakeOutbound(op.Args[0])
		if d == nil {
			return nil
		}
		r.applied = append(r.applied, op)
		r.log("%s", op)
		return r.read(d)
	case "dup":
		d := r.delivered[op.Args[0]]
		if d == nil {
			return nil
		}
		c := r.srv.Redeliver(d)
		r.applied = append(r.applied, op)
		r.log("%s: queued %s", op, c.ID)
	case "tear":
		r.applied = append(r.applied, op)
		return r.tear()
	default:
		return fmt.Errorf("unknown op %q", op.Verb)
	}
	return nil
}

func (r *run) parkedAt(id string) int {
	for i, g := range r.parked {
		if g.id == id {
			return i
		}
	}
	return -1
}

// events folds a reply's events in: parked gates, finished tasks.
func (r *run) events(evs []devproto.Event) error {
	for _, e := range evs {
		if !e.Done {
			r.parked = append(r.parked, gate{id: e.Gate, task: e.Task, call: e.Call})
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
	r.delivered[d.ID] = d
	return r.startTask(d.ID, job{kind: "receive", del: d, peer: p, msg: d.Msg},
		devproto.Request{Op: devproto.OpDecrypt, Task: d.ID, Peer: p.JID.User, PeerDev: p.JID.Device, Kind: d.Kind, CT: d.CT})
}

func (r *run) startSend(id string, j job, b *prekey.Bundle) error {
	pl := fakeserver.Payload{ID: j.msg, Body: j.body}
	req := devproto.Request{Op: devproto.OpEncrypt, Task: id, Peer: j.peer.JID.User, PeerDev: j.peer.JID.Device,
		PT: pl.Encode()}
	if b != nil {
		req.Bundle = devproto.FromBundle(b)
	}
	return r.startTask(id, j, req)
}

// startTask starts a device task; in serial mode it runs to its end.
func (r *run) startTask(id string, j job, req devproto.Request) error {
	if _, dup := r.jobs[id]; dup {
		return fmt.Errorf("task %s started twice", id)
	}
	r.jobs[id] = j
	if _, err := r.call(req); err != nil {
		return err
	}
	for r.serial && len(r.parked) > 0 {
		g := r.parked[0]
		r.parked = r.parked[1:]
		if _, err := r.call(devproto.Request{Op: devproto.OpStep, Gate: g.id}); err != nil {
			return err
		}
	}
	return nil
}

// received judges a finished receive and, on a failure other than old
// counter, sends the retry receipt with a fresh prekey of the device's, as
// Baileys' sendRetryRequest does; the peer answers it at once.
func (r *run) received(e devproto.Event, j job) error {
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

func (r *run) sent(e devproto.Event, j job) error {
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
	return r.startSend(id, job{kind: "send", peer: p, msg: d.Msg, body: m.Body, retry: d.Retry + 1}, b)
}

// tear is a crash inside a creds.json write: the device writes a prefix of
// the file in place and dies (docs/design.md §3: useMultiFileAuthState writes
// with writeFile, no temp file and rename), then comes back on the same
// folder. Live receives are redelivered (never acknowledged); live sends run
// again. The protocol baseline has no torn writes: serial runs skip it.
func (r *run) tear() error {
	if r.serial {
		return nil
	}
	rep, err := r.rn.conn.Call(r.ctx, devproto.Request{Op: devproto.OpTear, Fraction: 0.5})
	if err == nil {
		return fmt.Errorf("device %s: tear answered (ok=%v %s) instead of dying", r.rn.Device(), rep.OK, rep.Err)
	}
	if !r.rn.conn.Exited(0) {
		return err // not the death it asked for
	}
	r.crashes++
	r.log("tear: the device died inside a creds.json write")
	if r.rn.conn, err = r.rn.start(r.ctx, r.dir); err != nil {
		return err
	}
	rep, err = r.call(devproto.Request{Op: devproto.OpLoad, Variant: r.s.Variant, Seed: fmt.Sprint(r.s.Seed + 1)})
	if err != nil {
		return err
	}
	if c := *rep.Creds; c.Reg != r.creds.Reg || string(c.Identity) != string(r.creds.Identity) || c.SPKID != r.creds.SPKID ||
		string(c.SPK) != string(r.creds.SPK) {
		r.regen = true
		r.log("restart: REGENERATED CREDENTIALS (registration id %d → %d)", r.creds.Reg, c.Reg)
	} else {
		r.log("restart: credentials intact")
	}
	r.parked = nil
	jobs := r.jobs
	r.jobs = map[string]job{}
	var names []string
	for n := range jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		j := jobs[n]
		if j.kind == "receive" {
			r.srv.ToDevice(j.del)
			r.log("%s: requeued (never acknowledged)", n)
			continue
		}
		if err := r.startSend(n, j, nil); err != nil {
			return err
		}
	}
	return nil
}

// drain runs what is left: parked tasks in arrival order, then queued
// deliveries both ways, until nothing is left. Not recorded: a replay
// drains the same way.
func (r *run) drain() error {
	for {
		switch in, out := r.srv.Pending(); {
		case len(r.parked) > 0:
			g := r.parked[0]
			r.parked = r.parked[1:]
			r.log("drain: %s %s", g.task, g.call)
			if _, err := r.call(devproto.Request{Op: devproto.OpStep, Gate: g.id}); err != nil {
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
