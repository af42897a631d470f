// Package devprototest is the device protocol's conformance suite
// (docs/device-protocol.md "Conformance"), beside package devproto as
// testing/fstest sits beside io/fs: any implementation's test calls
// TestDevice on its command and gets every way it breaks the protocol
// reported. It checks the hello and its version, ids echoed and strict
// lines (every reply through devproto.ParseReply), provision's credentials
// and prekeys, a decrypt and an encrypt round trip against a real
// libsignal peer (fakeserver.Peer: go.mau.fi/libsignal v0.2.1 through
// whatsmeow's store.Device), requests it must refuse with a reply (an
// unknown op; load on a device without durable state), a garbage
// ciphertext answered as a failed task, not a crash, and, for a device
// with a durable store, a load after a SIGKILL that keeps what was saved.
package devprototest

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/fakeserver"
)

// T is the part of *testing.T the suite uses (a test of the suite passes
// a recorder). Fatalf must not return.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// Options say how to run the device under test.
//
// A device that takes reset (Variant set) is one the harness steps gate
// by gate, and speaks the whole op table of docs/device-protocol.md: the
// suite also checks reset, state, step, restart and prekey. One without
// (the whatsmeow child) is checked on provision, load, state, decrypt and
// encrypt.
type Options struct {
	// Start starts incarnation inc of the device with its state in dir
	// (the same dir after a kill). nil: argv, in dir.
	Start func(ctx context.Context, dir string, inc int) (*devproto.Conn, error)
	// Variant is the variant reset asks for; empty for a device that
	// starts on its state and takes no reset (the whatsmeow child).
	// The variant must deliver everything when its tasks run one at a
	// time.
	Variant string
	// Durable: the device keeps its state across a kill, so load in a new
	// process must find the credentials and sessions saved before it.
	// Without it, load must be refused with a reply.
	Durable bool
	// Timeout bounds each request (0: devproto.DefaultTimeout).
	Timeout time.Duration
}

// prekeys is how many one-time prekeys the suite provisions.
const prekeys = 5

// deviceUser is the device's user in the peer's Signal address.
const deviceUser = "bot"

// TestDevice runs the conformance suite on the device argv starts.
func TestDevice(t T, argv []string, opts Options) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	start := opts.Start
	if start == nil {
		start = func(ctx context.Context, dir string, _ int) (*devproto.Conn, error) {
			return devproto.Start(ctx, argv, dir, opts.Timeout)
		}
	}
	// Start checks the hello (devproto.ParseHello: v 1 and the version).
	c, err := start(ctx, dir, 0)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	s := &suite{t: t, ctx: ctx, c: c}
	defer func() { s.c.Kill() }()
	t.Logf("device %s, variant %s", c.Hello.Device, c.Hello.Variant)

	if opts.Variant != "" {
		if rep := s.call(devproto.Request{Op: devproto.OpReset, Dir: t.TempDir(), Variant: "no-such-variant", Seed: "1"}); rep.OK {
			t.Errorf("reset accepted an unknown variant")
		}
		if rep := s.call(devproto.Request{Op: devproto.OpState}); rep.OK {
			t.Errorf("state answered before provisioning")
		}
		if rep := s.call(devproto.Request{Op: devproto.OpReset, Dir: dir, Variant: opts.Variant, Seed: "7"}); !rep.OK {
			t.Fatalf("reset to variant %s refused: %s", opts.Variant, rep.Err)
		}
	}
	if rep := s.call(devproto.Request{Op: "no-such-op"}); rep.OK {
		t.Errorf("an unknown op was accepted")
	}
	prov := s.call(devproto.Request{Op: devproto.OpProvision, PreKeys: prekeys})
	if !prov.OK {
		t.Fatalf("provision refused: %s", prov.Err)
	}
	if opts.Variant != "" {
		s.harnessOps(prov)
	}
	ids := map[uint32]bool{}
	for _, pk := range prov.PreKeys {
		ids[pk.ID] = true
	}
	if len(prov.PreKeys) != prekeys || len(ids) != prekeys {
		t.Errorf("provision: %d prekeys, %d distinct ids; want %d", len(prov.PreKeys), len(ids), prekeys)
	}

	// A real libsignal peer, and the device's bundle on a server.
	srv := fakeserver.New()
	alice, err := fakeserver.NewPeer(ctx, srv, "alice", 0)
	if err != nil {
		t.Fatalf("peer: %v", err)
	}
	me := protocol.NewSignalAddress(deviceUser, 0)
	var bundleErr error
	var pks []*keys.PreKey
	for _, pk := range prov.PreKeys {
		pks = append(pks, pk.Key())
	}
	creds := prov.Creds
	srv.Upload(me, func(pk *keys.PreKey) *prekey.Bundle {
		var w *devproto.PreKey
		if pk != nil {
			w = &devproto.PreKey{ID: pk.KeyID, Pub: pk.Pub[:]}
		}
		b, err := creds.Bundle(0, w)
		bundleErr = err
		return b
	}, pks)

	s.receive(alice, me, "m1") // a pkmsg: the session built from the bundle
	if bundleErr != nil {
		t.Fatalf("the device's bundle: %v", bundleErr)
	}
	s.reply(alice, me, "r1")
	s.receive(alice, me, "m2") // a msg on the session, after the reply's ratchet step

	if opts.Durable {
		// A crash: SIGKILL, a new process on the same state, load.
		s.c.Kill()
		if s.c, err = start(ctx, dir, 1); err != nil {
			t.Fatalf("start after a kill: %v", err)
		}
		ld := s.call(devproto.Request{Op: devproto.OpLoad, Variant: opts.Variant, Seed: "8"})
		if !ld.OK {
			t.Fatalf("load after a kill refused: %s", ld.Err)
		}
		if !sameCreds(ld.Creds, prov.Creds) {
			t.Errorf("load after a kill: credentials differ from provisioning")
		}
		s.receive(alice, me, "m3") // the session saved before the kill
		s.reply(alice, me, "r3")
	} else if rep := s.call(devproto.Request{Op: devproto.OpLoad, Variant: opts.Variant, Seed: "8"}); rep.OK {
		t.Errorf("load accepted by a device without durable state")
	}

	// Garbage: answered, as a failed task (or a refused request), never a
	// crash; the device still answers afterwards.
	e := s.task(devproto.Request{Op: devproto.OpDecrypt, Task: "junk", Peer: "alice", Kind: "msg", CT: []byte("not a signal message"), Msg: "junk"})
	if e.OK {
		t.Errorf("a garbage ciphertext decrypted")
	}
	if rep := s.call(devproto.Request{Op: devproto.OpState}); !rep.OK {
		t.Errorf("state after a garbage ciphertext refused: %s", rep.Err)
	}
}

// harnessOps checks the ops of a device the harness steps gate by gate
// (one that takes reset): step, state, restart, prekey.
func (s *suite) harnessOps(prov devproto.Reply) {
	s.t.Helper()
	if rep := s.call(devproto.Request{Op: devproto.OpStep, Gate: "g999"}); rep.OK {
		s.t.Errorf("step of a gate that is not parked was accepted")
	}
	if st := s.call(devproto.Request{Op: devproto.OpState}); !st.OK || !sameCreds(st.Creds, prov.Creds) {
		s.t.Errorf("state: ok=%v err=%q, or credentials differ from provisioning", st.OK, st.Err)
	}
	if rs := s.call(devproto.Request{Op: devproto.OpRestart}); !rs.OK || !sameCreds(rs.Creds, prov.Creds) {
		s.t.Errorf("restart: ok=%v err=%q, or credentials changed", rs.OK, rs.Err)
	}
	pk := s.call(devproto.Request{Op: devproto.OpPreKey})
	if !pk.OK {
		s.t.Errorf("prekey refused: %s", pk.Err)
		return
	}
	for _, p := range prov.PreKeys {
		if pk.PreKey.ID == p.ID {
			s.t.Errorf("prekey: id %d reused", p.ID)
		}
	}
}

type suite struct {
	t   T
	ctx context.Context
	c   *devproto.Conn
}

// call sends one request; the device misbehaving (a malformed reply, an
// id not echoed, an exit, silence) is fatal.
func (s *suite) call(req devproto.Request) devproto.Reply {
	s.t.Helper()
	rep, err := s.c.Call(s.ctx, req)
	if err != nil {
		s.t.Fatalf("%s: %v", req.Op, err)
	}
	return rep
}

// task starts a decrypt or an encrypt and steps its gates one at a time
// until it ends; a refused request is a failed end.
func (s *suite) task(req devproto.Request) devproto.Event {
	s.t.Helper()
	rep := s.call(req)
	if !rep.OK {
		return devproto.Event{Task: req.Task, Done: true, Class: "Other", Err: rep.Err}
	}
	var parked []string
	for steps := 0; ; steps++ {
		for _, e := range rep.Events {
			switch {
			case e.Task == req.Task && e.Done:
				return e
			case e.Task == req.Task && e.Gate != "":
				parked = append(parked, e.Gate)
			}
		}
		if len(parked) == 0 || steps > 1000 {
			s.t.Fatalf("%s %s: neither ended nor parked at a gate (%d steps)", req.Op, req.Task, steps)
		}
		g := parked[0]
		parked = parked[1:]
		if rep = s.call(devproto.Request{Op: devproto.OpStep, Gate: g}); !rep.OK {
			s.t.Fatalf("step %s of %s refused: %s", g, req.Task, rep.Err)
		}
	}
}

// receive has the peer send msg and the device decrypt it to the same
// plaintext.
func (s *suite) receive(p *fakeserver.Peer, me *protocol.SignalAddress, msg string) {
	s.t.Helper()
	d, err := p.Send(s.ctx, me, msg, "hello "+msg)
	if err != nil {
		s.t.Fatalf("peer send %s: %v", msg, err)
	}
	e := s.task(devproto.Request{Op: devproto.OpDecrypt, Task: msg, Peer: d.From.Name(), PeerDev: uint16(d.From.DeviceID()),
		Kind: d.Kind, CT: d.CT, Msg: msg})
	if !e.OK {
		s.t.Errorf("decrypt %s (%s): %s: %s", msg, d.Kind, e.Class, e.Err)
		return
	}
	want := fakeserver.Payload{ID: msg, Body: "hello " + msg}.Encode()
	if !bytes.Equal(e.PT, want) {
		s.t.Errorf("decrypt %s: plaintext %q, want %q", msg, e.PT, want)
	}
}

// reply has the device encrypt msg to the peer (from the peer's bundle
// when it says it has no session), and the peer decrypt it.
func (s *suite) reply(p *fakeserver.Peer, me *protocol.SignalAddress, msg string) {
	s.t.Helper()
	to := p.Address()
	pt := fakeserver.Payload{ID: msg, Body: "reply " + msg}
	req := devproto.Request{Op: devproto.OpEncrypt, Task: msg, Peer: to.Name(), PeerDev: uint16(to.DeviceID()), PT: pt.Encode(), Msg: msg}
	e := s.task(req)
	if e.NeedBundle {
		s.t.Errorf("encrypt %s: no session after decrypting the peer's messages", msg)
		return
	}
	if !e.OK {
		s.t.Errorf("encrypt %s: %s: %s", msg, e.Class, e.Err)
		return
	}
	got, err := p.Read(s.ctx, &fakeserver.Delivery{ID: msg, Msg: msg, Copy: 1, From: me, To: to, Kind: e.Kind, CT: e.CT})
	if err != nil {
		s.t.Errorf("the peer cannot read %s (%s): %v", msg, e.Kind, err)
	} else if got.ID != pt.ID || got.Body != pt.Body {
		s.t.Errorf("the peer read %s as %+v, want %+v", msg, got, pt)
	}
}

func sameCreds(a, b *devproto.Creds) bool {
	return a.Reg == b.Reg && a.SPKID == b.SPKID && bytes.Equal(a.Identity, b.Identity) && bytes.Equal(a.SPK, b.SPK)
}

// Failures runs the suite with a T that records instead of failing t,
// and returns what it reported (nil: the device conforms): for tests that
// a broken device is caught.
func Failures(t T, argv []string, opts Options) []string {
	r := &recorder{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		TestDevice(r, argv, opts)
	}()
	<-done
	return r.errors
}

// recorder records failures; Fatalf ends the suite's goroutine as
// testing.T's does.
type recorder struct {
	T
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}
