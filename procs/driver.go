package procs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os/exec"
	"strconv"
	"strings"

	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// ErrDied is a request whose process died before answering.
var ErrDied = errors.New("device process died")

// Proc is one incarnation of the device.
type Proc interface {
	Do(ctx context.Context, req Request) (Response, error)
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
}

// Launch starts a child process.
func (c Child) Launch(ctx context.Context, inc, dieAfter int) (Proc, error) {
	args := append(append([]string(nil), c.Args...),
		"-driver", c.Loc.Driver, "-dsn", c.Loc.DSN, "-database", c.Loc.Database, "-jid", c.Loc.JID.String(),
		"-seed", strconv.FormatUint(c.Seed, 10), "-incarnation", strconv.Itoa(inc), "-die-after", strconv.Itoa(dieAfter))
	if c.Txn {
		args = append(args, "-txn")
	}
	cmd := exec.CommandContext(ctx, c.Exe, args...)
	cmd.Env = c.Env
	p := &childProc{cmd: cmd}
	cmd.Stderr = &p.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start device process: %w", err)
	}
	p.in, p.out = in, bufio.NewScanner(out)
	p.out.Buffer(make([]byte, 1<<20), 16<<20)
	return p, nil
}

type childProc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr bytes.Buffer
	done   bool
}

func (p *childProc) Do(_ context.Context, req Request) (Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	if _, err := p.in.Write(append(b, '\n')); err == nil && p.out.Scan() {
		var resp Response
		if err := json.Unmarshal(p.out.Bytes(), &resp); err != nil {
			return Response{}, fmt.Errorf("device process: bad response: %w", err)
		}
		return resp, nil
	}
	// Write or read failed: the process is gone. Only a SIGKILL (the
	// failpoint) counts as the expected death.
	p.done = true
	werr := p.cmd.Wait()
	if strings.Contains(fmt.Sprint(werr), "signal: killed") {
		return Response{}, ErrDied
	}
	return Response{}, fmt.Errorf("device process exited (%v): %s", werr, strings.TrimSpace(p.stderr.String()))
}

func (p *childProc) Close() error {
	if p.done {
		return nil
	}
	p.done = true
	_ = p.in.Close()
	err := p.cmd.Wait()
	if err != nil {
		return fmt.Errorf("device process: %v: %s", err, strings.TrimSpace(p.stderr.String()))
	}
	return nil
}

// Local runs the device in this process over storage: the model the real
// child is compared with. Its failpoint unwinds the request with a panic
// and leaves the storage as it is, as a kill would.
func Local(storage stores.Storage, txn bool) Launcher {
	return func(ctx context.Context, inc, dieAfter int) (Proc, error) {
		d, err := NewDevice(ctx, storage, txn, dieAfter, func() { panic(killed{}) })
		if err != nil {
			return nil, err
		}
		return &localProc{d: d}, nil
	}
}

type killed struct{}

type localProc struct {
	d    *Device
	dead bool
}

func (p *localProc) Do(ctx context.Context, req Request) (resp Response, err error) {
	if p.dead {
		return Response{}, ErrDied
	}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(killed); !ok {
				panic(r)
			}
			p.dead = true
			resp, err = Response{}, ErrDied
		}
	}()
	return p.d.Handle(ctx, req), nil
}

func (p *localProc) Close() error { return nil }

// Config is a conversation: the contact sends Messages messages, now and
// then two at once, and the bot replies to about Reply of them.
type Config struct {
	Seed     uint64
	Messages int
	Reply    float64
}

// Result is what the oracle saw.
type Result struct {
	Messages []*harness.Message
	History  []string
	Kills    int // incarnations that died at the failpoint
	// RegeneratedCreds: a restart loaded other credentials than the first
	// incarnation saved.
	RegeneratedCreds bool
	// Writes is the store writes made by all incarnations after init.
	Writes int
}

// Converse runs the conversation against the device, killed right after
// its dieAfter-th store write (0: never) and restarted.
func Converse(ctx context.Context, cfg Config, launch Launcher, dieAfter int) (*Result, error) {
	defer withRandom(cfg.Seed, 0)()
	c := &conv{ctx: ctx, launch: launch, srv: fakeserver.New(), msgs: map[string]*harness.Message{}, res: &Result{}}
	var err error
	if c.alice, err = fakeserver.NewPeer(ctx, c.srv, "alice", 0); err != nil {
		return nil, err
	}
	if c.proc, err = launch(ctx, 0, dieAfter); err != nil {
		return nil, err
	}
	defer func() { c.proc.Close() }()
	resp, err := c.proc.Do(ctx, Request{Op: OpInit})
	if err == nil && !resp.OK {
		err = errors.New(resp.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if c.creds, err = endpoint.DecodeCreds(resp.Creds); err != nil {
		return nil, err
	}
	var pks []*keys.PreKey
	for _, w := range resp.PreKeys {
		pk, err := w.Key()
		if err != nil {
			return nil, err
		}
		pks = append(pks, pk)
	}
	c.dev = &endpoint.Endpoint{JID: DeviceJID, Creds: c.creds}
	c.srv.Upload(c.dev.Address(), c.dev.Bundle, pks)

	rng := mrand.New(mrand.NewPCG(cfg.Seed, 0x70726f6373))
	for i := 1; i <= cfg.Messages; {
		var ds []*fakeserver.Delivery
		for n := 1 + rng.IntN(2); n > 0 && i <= cfg.Messages; n-- {
			id := fmt.Sprintf("m%d", i)
			i++
			d, err := c.alice.Send(ctx, c.dev.Address(), id, "hello "+id)
			if err != nil {
				return nil, err
			}
			c.srv.TakeInbound(d.ID)
			c.add(&harness.Message{ID: id, Dir: harness.In, Peer: c.alice.Name, Body: "hello " + id})
			ds = append(ds, d)
		}
		for _, d := range ds {
			if err := c.deliver(d); err != nil {
				return nil, err
			}
		}
		if rng.Float64() < cfg.Reply {
			if err := c.reply(fmt.Sprintf("r%d", i-1)); err != nil {
				return nil, err
			}
		}
	}
	c.res.Writes += c.writes
	for _, id := range c.order {
		c.res.Messages = append(c.res.Messages, c.msgs[id])
	}
	return c.res, nil
}

type conv struct {
	ctx    context.Context
	launch Launcher
	proc   Proc
	inc    int
	writes int // of the current incarnation
	srv    *fakeserver.Server
	alice  *fakeserver.Peer
	dev    *endpoint.Endpoint // public side of the device, for bundles
	creds  endpoint.Creds
	msgs   map[string]*harness.Message
	order  []string
	res    *Result
}

func (c *conv) add(m *harness.Message) { c.msgs[m.ID] = m; c.order = append(c.order, m.ID) }

func (c *conv) log(format string, a ...any) {
	c.res.History = append(c.res.History, fmt.Sprintf(format, a...))
}

// do sends a request; if the process dies, it is restarted (reloading its
// credentials from the database) and ErrDied returned for the caller to
// redo its work.
func (c *conv) do(req Request) (Response, error) {
	resp, err := c.proc.Do(c.ctx, req)
	if err == nil {
		c.writes = resp.Writes
		return resp, nil
	}
	if !errors.Is(err, ErrDied) {
		return resp, err
	}
	c.res.Kills++
	c.res.Writes += c.writes
	c.inc++
	c.log("killed during %s after %d writes; restart %d", req.Op, c.writes, c.inc)
	c.writes = 0
	if c.proc, err = c.launch(c.ctx, c.inc, 0); err != nil {
		return Response{}, fmt.Errorf("restart: %w", err)
	}
	h, err := c.proc.Do(c.ctx, Request{Op: OpHello})
	if err == nil && !h.OK {
		err = errors.New(h.Err)
	}
	if err != nil {
		return Response{}, fmt.Errorf("restart: %w", err)
	}
	if creds, err := endpoint.DecodeCreds(h.Creds); err != nil || !creds.Same(c.creds) {
		c.res.RegeneratedCreds = true
		c.log("restart: CREDENTIALS CHANGED (%v)", err)
	}
	return Response{}, ErrDied
}

// deliver hands a delivery to the device until it is accepted, fails for
// good, or retries run out; a death redelivers the same ciphertext (it was
// never acknowledged).
func (c *conv) deliver(d *fakeserver.Delivery) error {
	for d != nil {
		resp, err := c.do(Request{Op: OpRecv, Peer: d.From.Name(), PeerID: d.From.DeviceID(), Kind: d.Kind, CT: d.CT})
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
		a := harness.Attempt{Delivery: d.ID, OK: resp.OK}
		if resp.OK {
			pl, err := fakeserver.DecodePayload(resp.PT)
			a.Wrong = err != nil || pl.ID != d.Msg || pl.Body != m.Body
			m.Attempts = append(m.Attempts, a)
			c.log("%s: ok", d.ID)
			return nil
		}
		a.Class, a.Err = endpoint.Class(resp.Class), resp.Err
		m.Attempts = append(m.Attempts, a)
		c.log("%s: %s (%s)", d.ID, a.Class, a.Err)
		if len(resp.PreKeys) == 0 || d.Retry >= fakeserver.MaxRetries {
			return nil
		}
		pk, err := resp.PreKeys[0].Key()
		if err != nil {
			return err
		}
		if d, err = c.alice.Retry(c.ctx, c.dev.Address(), d.Msg, d.Retry+1, c.dev.Bundle(pk)); err != nil {
			return err
		}
		if d != nil {
			c.srv.TakeInbound(d.ID)
		}
	}
	return nil
}

// reply has the device send msg to the contact, who reads it; a failed read
// sends a retry receipt with the contact's fresh bundle, and the device
// resends from a rebuilt session.
func (c *conv) reply(msg string) error {
	body := "reply " + msg
	c.add(&harness.Message{ID: msg, Dir: harness.Out, Peer: c.alice.Name, Body: body})
	m := c.msgs[msg]
	pt := fakeserver.Payload{ID: msg, Body: body}.Encode()
	to := c.alice.Address()
	var bundle *Bundle
	retry := 0
	for {
		resp, err := c.do(Request{Op: OpSend, Peer: to.Name(), PeerID: to.DeviceID(), PT: pt, Bundle: bundle})
		if errors.Is(err, ErrDied) {
			continue // the send runs again
		} else if err != nil {
			return err
		}
		if resp.NeedBundle {
			b, err := c.srv.FetchBundle(to)
			if err != nil {
				return err
			}
			bundle = FromBundle(b)
			continue
		}
		if !resp.OK {
			c.log("%s: send failed: %s", msg, resp.Err)
			return nil
		}
		id, n := c.srv.NextCopy(msg)
		d := &fakeserver.Delivery{ID: id, Msg: msg, Copy: n, Retry: retry, From: c.dev.Address(), To: to, Kind: resp.Kind, CT: resp.CT}
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
		if a.Class == endpoint.OldCounter || retry >= fakeserver.MaxRetries {
			return nil
		}
		b, err := c.alice.FreshBundle(c.ctx)
		if err != nil {
			return err
		}
		bundle, retry = FromBundle(b), retry+1
	}
}
