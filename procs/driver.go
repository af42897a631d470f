package procs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/endpoint"
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
	// Gates: every store call of a task waits at a gate (-gates).
	Gates bool
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
		"-seed", strconv.FormatUint(c.Seed, 10), "-incarnation", strconv.Itoa(inc), "-die-after", strconv.Itoa(dieAfter))
	if c.Txn {
		args = append(args, "-txn")
	}
	if c.WriteBehind > 0 {
		args = append(args, "-write-behind", strconv.Itoa(c.WriteBehind))
	}
	if c.Gates {
		args = append(args, "-gates")
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
	conn   *devproto.Conn
	stderr syncBuffer
	done   bool
}

// syncBuffer is the child's whole stderr, written by
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

// errText is the process's stderr.
func (p *childProc) errText() string {
	return strings.TrimSpace(p.stderr.String())
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
func Local(storage stores.Storage, txn bool) Launcher { return local(storage, txn, false) }

// local is Local, with gates when gated (Handler.Gated).
func local(storage stores.Storage, txn, gated bool) Launcher {
	return func(ctx context.Context, inc, dieAfter int) (Proc, error) {
		d, err := NewHandler(ctx, storage, txn, dieAfter, func() { panic(killed{}) })
		if err != nil {
			return nil, err
		}
		if gated {
			d.Gated()
		}
		return newLocalProc(d), nil
	}
}

type killed struct{}

type localProc struct {
	d    *Handler
	dead bool
	ids  int // requests so far: the next one's id
}

func newLocalProc(d *Handler) *localProc {
	p := &localProc{d: d}
	d.OnStop(func(step, writes int) { panic(killed{}) })
	return p
}

func (p *localProc) Do(ctx context.Context, req devproto.Request) (rep devproto.Reply, err error) {
	if p.dead {
		return devproto.Reply{}, ErrDied
	}
	p.ids++
	req.V, req.ID = 1, p.ids
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(killed); !ok {
				panic(r)
			}
			p.dead = true
			rep, err = devproto.Reply{}, ErrDied
		}
	}()
	rep = p.d.Serve(ctx, req)
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
func (p *localProc) Kill() {
	p.dead = true
	if p.d.gates != nil {
		p.d.gates.Kill()
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
