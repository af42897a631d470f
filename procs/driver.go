package procs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// ErrDied is a request whose process died before answering.
var ErrDied = errors.New("device process died")

// Proc is one incarnation of the device: it answers device-protocol
// requests (docs/device-protocol.md "The whatsmeow child"). Do returns
// ErrDied when the process died of SIGKILL before answering (the failpoint,
// a StopAt stop, the parent's kill): a crash the driver expects. Any other
// error is the device misbehaving.
type Proc interface {
	Do(ctx context.Context, req devproto.Request) (devproto.Reply, error)
	Close() error
}

// Launcher starts incarnation inc of the device on the same database;
// dieAfter > 0 is its failpoint.
type Launcher func(ctx context.Context, inc, dieAfter int) (Proc, error)

// Child launches `exe args... device-flags` processes: exe and args name
// the `badmac device` subcommand (or a test binary standing in for it).
type Child struct {
	Exe  string
	Args []string
	Env  []string
	Loc  sqlstores.Locator
	Seed uint64
	Txn  bool
	// WriteBehind > 0: the child's non-durable setting (-write-behind).
	WriteBehind int
	// Timeout bounds the hello and each answer (0: DefaultTimeout); a
	// child silent past it is killed and the request fails. A hang
	// detector, not a measurement.
	Timeout time.Duration
}

// Argv is the child's command line for incarnation inc with failpoint
// dieAfter.
func (c Child) Argv(inc, dieAfter int) []string {
	args := append([]string{c.Exe}, c.Args...)
	args = append(args,
		"-driver", c.Loc.Driver, "-dsn", c.Loc.DSN, "-database", c.Loc.Database, "-jid", c.Loc.JID.String(),
		"-seed", strconv.FormatUint(c.Seed, 10), "-incarnation", strconv.Itoa(inc), "-die-after", strconv.Itoa(dieAfter), "-report-writes")
	if c.Txn {
		args = append(args, "-txn")
	}
	if c.WriteBehind > 0 {
		args = append(args, "-write-behind", strconv.Itoa(c.WriteBehind))
	}
	return args
}

// Launch starts a child process and reads its hello (devproto.StartCmd).
func (c Child) Launch(ctx context.Context, inc, dieAfter int) (Proc, error) {
	argv := c.Argv(inc, dieAfter)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = c.Env
	p := &childProc{}
	cmd.Stderr = &p.stderr
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	conn, err := devproto.StartCmd(ctx, cmd, timeout)
	if err != nil {
		return nil, fmt.Errorf("start device process: %w", err)
	}
	if conn.Hello.Device != ChildName {
		conn.Kill()
		return nil, fmt.Errorf("start device process: hello from %q, want %s", conn.Hello.Device, ChildName)
	}
	p.conn = conn
	return p, nil
}

type childProc struct {
	conn    *devproto.Conn
	stderr  syncBuffer
	done    bool
	stopped *devproto.Reply
}

// syncBuffer is the child's whole stderr (its write reports), written by
// exec's copying goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (p *childProc) Do(ctx context.Context, req devproto.Request) (devproto.Reply, error) {
	rep, err := p.conn.Call(ctx, req)
	if err == nil && !rep.Stopped {
		return rep, nil
	}
	p.done = true
	if err == nil {
		// The child is waiting at its StopAt step: kill it there.
		p.stopped = &rep
		p.conn.Kill()
		return devproto.Reply{}, ErrDied
	}
	// The process is gone. Only a SIGKILL (the failpoint, or the
	// parent's Kill) counts as the expected death; a malformed reply, a
	// silent child or any other exit is the device misbehaving.
	if devproto.Killed(err) {
		return devproto.Reply{}, ErrDied
	}
	return devproto.Reply{}, fmt.Errorf("device process: %w", err)
}

// Kill sends SIGKILL now and waits for the process: the kill at a random
// moment, or between requests. Safe to call while Do runs.
func (p *childProc) Kill() { p.conn.Kill() }

// StoppedAt is the step a StopAt request reached before the process was
// killed there, and the store writes the incarnation had completed then.
func (p *childProc) StoppedAt() (step, writes int, ok bool) {
	if p.stopped == nil {
		return 0, 0, false
	}
	return p.stopped.Step, p.stopped.Writes, true
}

// ReportedWrites is the store writes the process reported as completed on
// stderr before it died (-report-writes); valid after Do returned ErrDied.
// A write can commit and the process die before it reports it.
func (p *childProc) ReportedWrites() int {
	return strings.Count(p.stderr.String(), writeLine)
}

// errText is the process's stderr without its write reports.
func (p *childProc) errText() string {
	return strings.TrimSpace(strings.ReplaceAll(p.stderr.String(), writeLine, ""))
}

func (p *childProc) Close() error {
	if p.done {
		return nil
	}
	p.done = true
	_ = p.conn.Close()
	if err := p.conn.ExitStatus(); err != nil {
		return fmt.Errorf("device process: %v: %s", err, p.errText())
	}
	return nil
}

// Local runs the device in this process over storage: the model the real
// child is compared with. Its failpoint unwinds the request with a panic
// and leaves the storage as it is, as a kill would.
func Local(storage stores.Storage, txn bool) Launcher {
	return func(ctx context.Context, inc, dieAfter int) (Proc, error) {
		d, err := NewHandler(ctx, storage, txn, dieAfter, func() { panic(killed{}) })
		if err != nil {
			return nil, err
		}
		return newLocalProc(d), nil
	}
}

type killed struct{}

type localProc struct {
	d    *Handler
	dead bool
	// LocalAt's failpoint: request number atReq dies after atWrites of
	// its writes, or after it.
	reqs, atReq, atWrites int
	ids                   int // requests so far: the next one's id
	// stopStep, stopWrites: where a StopAt request stopped (stopStep > 0).
	stopStep, stopWrites int
}

func newLocalProc(d *Handler) *localProc {
	p := &localProc{d: d}
	d.OnStop(func(step, writes int) {
		p.stopStep, p.stopWrites = step, writes
		panic(killed{})
	})
	return p
}

func (p *localProc) StoppedAt() (step, writes int, ok bool) {
	return p.stopStep, p.stopWrites, p.stopStep > 0
}

func (p *localProc) Do(ctx context.Context, req devproto.Request) (rep devproto.Reply, err error) {
	if p.dead {
		return devproto.Reply{}, ErrDied
	}
	p.ids++
	req.V, req.ID = 1, p.ids
	at := false
	if req.Op == devproto.OpDecrypt || req.Op == devproto.OpEncrypt {
		p.reqs++
		at = p.atReq > 0 && p.reqs == p.atReq
	}
	if at && p.atWrites == 0 {
		p.dead = true
		return devproto.Reply{}, ErrDied
	}
	if at {
		p.d.writes.mu.Lock()
		p.d.writes.after = p.d.writes.n + p.atWrites
		p.d.writes.mu.Unlock()
		defer func() {
			if err == nil {
				p.dead = true
				rep, err = devproto.Reply{}, ErrDied
			}
		}()
	}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(killed); !ok {
				panic(r)
			}
			p.dead = true
			rep, err = devproto.Reply{}, ErrDied
		}
	}()
	rep = p.d.Handle(ctx, req)
	// The same checks as the child's replies get (devproto.Conn).
	line, err := json.Marshal(rep)
	if err == nil {
		_, err = devproto.ParseReply(line, req)
	}
	if err != nil {
		return devproto.Reply{}, fmt.Errorf("device in process: malformed reply to request %d (%s): %w", req.ID, req.Op, err)
	}
	return rep, nil
}

func (p *localProc) Close() error { return nil }

// Kill is the kill between requests: the process is gone, the storage is
// left as it is.
func (p *localProc) Kill() { p.dead = true }

// Config is a conversation: the contact sends Messages messages, now and
// then two at once, and the bot replies to about Reply of them.
type Config struct {
	Seed     uint64
	Messages int
	Reply    float64
}

// Run is a driven conversation: what the oracle saw, as the harness's
// one result type (harness.Result: the messages, the history, the
// credentials check, Crashes for the incarnations that died at the
// failpoint; its verdict filled by harness.Judge: JudgeKill, JudgeAlone),
// and what only this driver counts.
type Run struct {
	*harness.Result
	// KillPoints says where each death happened.
	KillPoints []KillPoint
	// Requests counts recv and send requests sent (redone ones included).
	Requests int
	// Calls is the store calls of each answered recv or send request, in
	// order: the steps NewRandomKill picks from.
	Calls []int
	// Overlapped counts requests sent while another process had one in
	// flight (replicas).
	Overlapped int
	// Writes is the store writes made by all incarnations after init.
	Writes int
}

// Converse runs the conversation against the device, killed right after
// its dieAfter-th store write (0: never) and restarted.
func Converse(ctx context.Context, cfg Config, launch Launcher, dieAfter int) (*Run, error) {
	return converse(ctx, cfg, launch, dieAfter, nil)
}

func converse(ctx context.Context, cfg Config, launch Launcher, dieAfter int, rk *RandomKill) (*Run, error) {
	defer withRandom(cfg.Seed, 0)()
	c, w, err := start(ctx, launch, dieAfter)
	if err != nil {
		return nil, err
	}
	defer func() { w.proc.Close() }()
	c.rk = rk
	c.mu.Lock()
	defer c.mu.Unlock()
	rng := mrand.New(mrand.NewPCG(cfg.Seed, 0x70726f6373))
	for i := 1; i <= cfg.Messages; {
		var ds []*fakeserver.Delivery
		for n := 1 + rng.IntN(2); n > 0 && i <= cfg.Messages; n-- {
			d, err := c.send(fmt.Sprintf("m%d", i))
			if err != nil {
				return nil, err
			}
			i++
			ds = append(ds, d)
		}
		for _, d := range ds {
			if err := c.deliver(w, d); err != nil {
				return nil, err
			}
		}
		if rng.Float64() < cfg.Reply {
			if err := c.reply(w, fmt.Sprintf("r%d", i-1)); err != nil {
				return nil, err
			}
		}
	}
	return c.finish(w), nil
}

// start makes the conversation's server and contact, launches incarnation 0
// (failpoint dieAfter) and initializes it: credentials and prekeys saved,
// the bundle uploaded.
func start(ctx context.Context, launch Launcher, dieAfter int) (*conv, *worker, error) {
	c := &conv{ctx: ctx, launch: launch, srv: fakeserver.New(), msgs: map[string]*harness.Message{}, res: &Run{Result: &harness.Result{}}}
	var err error
	if c.alice, err = fakeserver.NewPeer(ctx, c.srv, "alice", 0); err != nil {
		return nil, nil, err
	}
	w := &worker{}
	if w.proc, err = launch(ctx, 0, dieAfter); err != nil {
		return nil, nil, err
	}
	var pks []*keys.PreKey
	if c.creds, pks, err = provision(ctx, w.proc); err != nil {
		w.proc.Close()
		return nil, nil, err
	}
	c.dev = &endpoint.Endpoint{JID: DeviceJID, Creds: c.creds}
	c.srv.Upload(c.dev.Address(), c.dev.Bundle, pks)
	return c, w, nil
}

// send has the contact send message id to the device; the server holds it.
func (c *conv) send(id string) (*fakeserver.Delivery, error) {
	d, err := c.alice.Send(c.ctx, c.dev.Address(), id, "hello "+id)
	if err != nil {
		return nil, err
	}
	c.srv.TakeInbound(d.ID)
	c.add(&harness.Message{ID: id, Dir: harness.In, Peer: c.alice.Name, Body: "hello " + id})
	return d, nil
}

// finish totals the writes and lists the messages in order.
func (c *conv) finish(ws ...*worker) *Run {
	for _, w := range ws {
		c.res.Writes += w.writes
	}
	for _, id := range c.order {
		c.res.Messages = append(c.res.Messages, c.msgs[id])
	}
	return c.res
}

// worker is one device process slot: its current incarnation.
type worker struct {
	proc   Proc
	inc    int
	writes int // of the current incarnation
}

// conv is the parent side of a conversation. mu guards everything in it
// (the contact, the server, the oracle's messages); deliver and reply hold
// it except while a request is in flight, so that requests to different
// processes run at once.
type conv struct {
	ctx      context.Context
	launch   Launcher
	mu       sync.Mutex
	rk       *RandomKill
	inflight int
	srv      *fakeserver.Server
	alice    *fakeserver.Peer
	dev      *endpoint.Endpoint // public side of the device, for bundles
	creds    endpoint.Creds
	msgs     map[string]*harness.Message
	order    []string
	res      *Run
}

func (c *conv) add(m *harness.Message) { c.msgs[m.ID] = m; c.order = append(c.order, m.ID) }

func (c *conv) log(format string, a ...any) {
	c.res.History = append(c.res.History, fmt.Sprintf(format, a...))
}

// do sends a request; if the process dies, it is restarted (reloading its
// credentials from the database) and ErrDied returned for the caller to
// redo its work.
func (c *conv) do(w *worker, req devproto.Request) (devproto.Reply, error) {
	c.res.Requests++
	if c.rk != nil && c.res.Requests == c.rk.Request {
		req.StopAt = c.rk.Step
	}
	if c.inflight++; c.inflight > 1 {
		c.res.Overlapped++
	}
	c.mu.Unlock()
	resp, err := w.proc.Do(c.ctx, req)
	c.mu.Lock()
	c.inflight--
	if err == nil {
		w.writes = resp.Writes
		c.res.Calls = append(c.res.Calls, resp.Calls)
		return resp, nil
	}
	if !errors.Is(err, ErrDied) {
		return resp, err
	}
	kp := KillPoint{Request: c.res.Requests, Op: req.Op, WritesBefore: w.writes, Writes: -1}
	if s, ok := w.proc.(interface{ StoppedAt() (int, int, bool) }); ok {
		if step, writes, ok := s.StoppedAt(); ok {
			kp.Step, kp.Writes = step, writes
		}
	}
	if r, ok := w.proc.(interface{ ReportedWrites() int }); ok && kp.Step == 0 {
		kp.Writes = r.ReportedWrites()
	}
	c.res.KillPoints = append(c.res.KillPoints, kp)
	c.res.Crashes++
	c.res.CrashPoints = append(c.res.CrashPoints, kp.String())
	c.res.Writes += w.writes
	w.inc++
	c.log("killed during %s after %d writes; restart %d", req.Op, w.writes, w.inc)
	w.writes = 0
	if w.proc, err = c.launch(c.ctx, w.inc, 0); err != nil {
		return devproto.Reply{}, fmt.Errorf("restart: %w", err)
	}
	creds, err := load(c.ctx, w.proc)
	if err != nil {
		return devproto.Reply{}, fmt.Errorf("restart: %w", err)
	}
	if !creds.Same(c.creds) {
		c.res.RegeneratedCreds = true
		c.log("restart: CREDENTIALS CHANGED (%v)", nil)
	}
	return devproto.Reply{}, ErrDied
}

// deliver hands a delivery to the device until it is accepted, fails for
// good, or retries run out; a death redelivers the same ciphertext (it was
// never acknowledged). The device's retry receipts follow whatsmeow's
// sendRetryReceipt (Handler.Handle): at most 4 a message, <keys> from
// count 2; the contact answers each as handleRetryReceipt does
// (fakeserver.Peer.Retry: without keys it re-encrypts on its session).
func (c *conv) deliver(w *worker, d *fakeserver.Delivery) error {
	for d != nil {
		resp, err := c.do(w, devproto.Request{Op: devproto.OpDecrypt, Task: d.ID, Peer: d.From.Name(), PeerDev: uint16(d.From.DeviceID()),
			Kind: d.Kind, CT: d.CT, Msg: d.Msg, Count: d.Retry})
		if errors.Is(err, ErrDied) {
			cp := *d
			cp.ID, cp.Copy = c.srv.NextCopy(d.Msg)
			c.log("server redelivers %s as %s", d.ID, cp.ID)
			d = &cp
			continue
		} else if err != nil {
			return err
		}
		m := c.msgs[d.Msg]
		e := outcome(resp, d.ID)
		a := harness.Attempt{Delivery: d.ID, OK: e.OK}
		if e.OK {
			pl, err := fakeserver.DecodePayload(e.PT)
			a.Wrong = err != nil || pl.ID != d.Msg || pl.Body != m.Body
			m.Attempts = append(m.Attempts, a)
			c.log("%s: ok", d.ID)
			return nil
		}
		a.Class, a.Err = endpoint.Class(e.Class), e.Err
		m.Attempts = append(m.Attempts, a)
		c.log("%s: %s (%s)", d.ID, a.Class, a.Err)
		if resp.Note != "" {
			c.log("%s: %s", d.ID, resp.Note)
		}
		if resp.Receipt == 0 {
			return nil
		}
		var b *prekey.Bundle
		with := ""
		if resp.PreKey != nil {
			b, with = c.dev.Bundle(resp.PreKey.Key()), " with keys"
		}
		c.log("%s: retry receipt %d to %s%s", d.ID, resp.Receipt, c.alice.Name, with)
		if d, err = c.alice.Retry(c.ctx, c.dev.Address(), d.Msg, resp.Receipt, b); err != nil {
			return err
		}
		if d != nil {
			c.srv.TakeInbound(d.ID)
		}
	}
	return nil
}

// reply has the device send msg to the contact, who reads it; a failed read
// sends a retry receipt by whatsmeow's sendRetryReceipt (counted by the
// contact, at most 4, its fresh bundle from count 2), and the device
// answers it as handleRetryReceipt does: from a session rebuilt from the
// keys, else re-encrypted on its session, or rebuilt from a fetched bundle
// when it has none (shouldRecreateSession at count 1; from count 2 a
// receipt here always carries keys).
func (c *conv) reply(w *worker, msg string) error {
	body := "reply " + msg
	c.add(&harness.Message{ID: msg, Dir: harness.Out, Peer: c.alice.Name, Body: body})
	m := c.msgs[msg]
	pt := fakeserver.Payload{ID: msg, Body: body}.Encode()
	to := c.alice.Address()
	var bundle *devproto.Bundle
	retry := 0
	for {
		resp, err := c.do(w, devproto.Request{Op: devproto.OpEncrypt, Task: msg, Peer: to.Name(), PeerDev: uint16(to.DeviceID()), PT: pt,
			Bundle: bundle, Retry: retry > 0})
		if errors.Is(err, ErrDied) {
			continue // the send runs again
		} else if err != nil {
			return err
		}
		e := outcome(resp, msg)
		if e.NeedBundle {
			b, err := c.srv.FetchBundle(to)
			if err != nil {
				return err
			}
			bundle = devproto.FromBundle(b)
			continue
		}
		if !e.OK {
			c.log("%s: send failed: %s", msg, e.Err)
			return nil
		}
		id, n := c.srv.NextCopy(msg)
		d := &fakeserver.Delivery{ID: id, Msg: msg, Copy: n, Retry: retry, From: c.dev.Address(), To: to, Kind: e.Kind, CT: e.CT}
		pl, err := c.alice.Read(c.ctx, d)
		a := harness.Attempt{Delivery: id, OK: err == nil}
		if err == nil {
			a.Wrong = pl.ID != msg || pl.Body != body
			m.Attempts = append(m.Attempts, a)
			c.log("%s: read ok", id)
			return nil
		}
		a.Class, a.Err = endpoint.ClassOf(err), err.Error()
		m.Attempts = append(m.Attempts, a)
		c.log("%s: read %s", id, a.Class)
		if a.Class == endpoint.OldCounter {
			return nil
		}
		if retry = c.alice.Retries.Next(msg, retry); retry >= fakeserver.MaxRetries {
			c.log("%s: no retry receipt (count %d)", id, retry)
			return nil
		}
		bundle = nil
		with := ""
		if fakeserver.WantsKeys(retry, false) {
			b, err := c.alice.FreshBundle(c.ctx)
			if err != nil {
				return err
			}
			bundle, with = devproto.FromBundle(b), " with keys"
		}
		c.log("%s: retry receipt %d from %s%s", id, retry, c.alice.Name, with)
	}
}

// provision asks p for fresh credentials and one-time prekeys: their
// public halves, which the parent uploads to its server.
func provision(ctx context.Context, p Proc) (endpoint.Creds, []*keys.PreKey, error) {
	rep, err := p.Do(ctx, devproto.Request{Op: devproto.OpProvision, PreKeys: provisionPreKeys})
	if err == nil && !rep.OK {
		err = errors.New(rep.Err)
	}
	if err != nil {
		return endpoint.Creds{}, nil, fmt.Errorf("device provision: %w", err)
	}
	var pks []*keys.PreKey
	for _, k := range rep.PreKeys {
		pks = append(pks, k.Key())
	}
	return wireCreds(rep.Creds), pks, nil
}

// load has p load its credentials from the database (a restart).
func load(ctx context.Context, p Proc) (endpoint.Creds, error) {
	rep, err := p.Do(ctx, devproto.Request{Op: devproto.OpLoad})
	if err == nil && !rep.OK {
		err = errors.New(rep.Err)
	}
	if err != nil {
		return endpoint.Creds{}, err
	}
	return wireCreds(rep.Creds), nil
}

// wireCreds are the parent's copy of the device's credentials: the public
// halves the wire carries (devproto.ParseReply checked their lengths), all
// the parent uses (bundles, Creds.Same).
func wireCreds(c *devproto.Creds) endpoint.Creds {
	id, spk, sig := [32]byte(c.Identity), [32]byte(c.SPK), [64]byte(c.Sig)
	return endpoint.Creds{
		Identity:       &keys.KeyPair{Pub: &id},
		SignedPreKey:   &keys.PreKey{KeyPair: keys.KeyPair{Pub: &spk}, KeyID: c.SPKID, Signature: &sig},
		RegistrationID: c.Reg,
	}
}

// outcome is the end of task in a decrypt's or an encrypt's reply, with
// the reply's err when the request failed (the device refused it, or a
// retry receipt's keys could not be drawn).
func outcome(rep devproto.Reply, task string) devproto.Event {
	for _, e := range rep.Events {
		if e.Task == task && e.Done {
			if !rep.OK {
				e.OK, e.Err = false, rep.Err
			}
			return e
		}
	}
	return devproto.Event{Task: task, Done: true, Class: string(endpoint.Other), Err: rep.Err}
}
