// Package godevice is the Go device speaking the device protocol (package
// devproto, docs/device-protocol.md): whatsmeow's store.Device over the
// in-memory reference store, with the same libsignal calls as the harness's
// in-process device (package endpoint), every store call a gate. It is the
// protocol's second implementation: the conformance test runs the same
// schedules against it and against the Baileys adapter.
//
// Its one variant, "concurrent", holds nothing across load→decrypt→store:
// tasks run at once and only the harness's steps order them. State lives in
// memory, so load (a restart in a new process) and tear are refused.
package godevice

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// Name is the device name in the hello line.
const Name = "go@whatsmeow"

type device struct {
	ctx     context.Context
	ep      *endpoint.Endpoint
	restore func()
	gates   *devproto.Gates
	writes  int
	variant string
}

// Serve answers requests on in with replies on out until in closes.
func Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	d := &device{ctx: ctx, variant: "concurrent"}
	defer func() {
		if d.restore != nil {
			d.restore()
		}
	}()
	enc := json.NewEncoder(out)
	if err := enc.Encode(devproto.Hello{V: 1, Hello: devproto.Version, Device: Name, Variant: d.variant}); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		// Strict (devproto.ParseRequest): a request with an unknown field
		// is refused with a reply; one without an id cannot be answered.
		req, err := devproto.ParseRequest(sc.Bytes())
		if err != nil && req.ID <= 0 {
			return fmt.Errorf("request: %w", err)
		}
		var rep devproto.Reply
		if err == nil {
			rep, err = d.handle(req)
		}
		rep.V, rep.ID = 1, req.ID
		if rep.Events == nil {
			rep.Events = []devproto.Event{}
		}
		if err != nil {
			rep.OK, rep.Err = false, err.Error()
		} else {
			rep.OK = true
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (d *device) handle(req devproto.Request) (devproto.Reply, error) {
	var rep devproto.Reply
	switch req.Op {
	case devproto.OpReset:
		if req.Variant != "concurrent" {
			return rep, fmt.Errorf("unknown variant %q (known: concurrent)", req.Variant)
		}
		seed, err := strconv.ParseUint(req.Seed, 10, 64)
		if err != nil {
			return rep, fmt.Errorf("reset: seed: %w", err)
		}
		if d.restore != nil {
			d.restore()
		}
		// The process's crypto/rand is the device's: seeded per schedule.
		d.restore = harness.SeedRandom(seed, 0x9d)
		d.ep, d.gates, d.writes = nil, devproto.NewGates(), 0
		return rep, nil
	case devproto.OpProvision:
		if d.gates == nil {
			return rep, errors.New("provision before reset")
		}
		st, err := stores.MustLookup("reference").Open(d.ctx)
		if err != nil {
			return rep, err
		}
		set, err := st.Instance(d.ctx)
		if err != nil {
			return rep, err
		}
		d.ep = endpoint.New(types.JID{User: harness.DeviceUser, Server: types.DefaultUserServer}, endpoint.NewCreds(), set)
		d.ep.Probe.Trace = devproto.Gate
		n := req.PreKeys
		if n <= 0 {
			n = 50
		}
		pks, err := d.ep.Device.PreKeys.GetOrGenPreKeys(d.ctx, uint32(n))
		if err == nil {
			err = d.ep.Device.PreKeys.MarkPreKeysAsUploaded(d.ctx, pks[len(pks)-1].KeyID)
		}
		if err != nil {
			return rep, err
		}
		rep.Creds = d.creds()
		for _, pk := range pks {
			rep.PreKeys = append(rep.PreKeys, wirePreKey(pk))
		}
		return rep, nil
	case devproto.OpLoad, devproto.OpTear:
		return rep, fmt.Errorf("%s: the Go device keeps its state in memory", req.Op)
	}
	if d.ep == nil {
		return rep, errors.New("not provisioned")
	}
	switch req.Op {
	case devproto.OpRestart:
		// Tasks are dropped (their goroutines stay parked until the
		// process ends); the reference store has no cache to empty.
		d.gates.Drop()
		rep.Creds = d.creds()
	case devproto.OpPreKey:
		pk, err := d.ep.Device.PreKeys.GenOnePreKey(d.ctx)
		if err != nil {
			return rep, err
		}
		p := wirePreKey(pk)
		rep.Creds, rep.PreKey = d.creds(), &p
	case devproto.OpState:
		rep.Creds, rep.Writes = d.creds(), d.writes
		rep.Parked, rep.Tasks = d.gates.Parked(), d.gates.Tasks()
	case devproto.OpDecrypt, devproto.OpEncrypt:
		addr := protocol.NewSignalAddress(req.Peer, uint32(req.PeerDev))
		run := func(ctx context.Context) devproto.Event { return d.decrypt(ctx, addr, req) }
		if req.Op == devproto.OpEncrypt {
			run = func(ctx context.Context) devproto.Event { return d.encrypt(ctx, addr, req) }
		}
		evs, err := d.gates.Start(d.ctx, req.Task, run)
		if err != nil {
			return rep, err
		}
		rep.Events = d.count(evs)
	case devproto.OpStep:
		evs, err := d.gates.Step(req.Gate)
		if err != nil {
			return rep, err
		}
		rep.Events = d.count(evs)
	default:
		return rep, fmt.Errorf("unknown op %q", req.Op)
	}
	return rep, nil
}

// count counts the store writes among the gates reached.
func (d *device) count(evs []devproto.Event) []devproto.Event {
	for _, e := range evs {
		if e.Gate != "" && isWrite(e.Call) {
			d.writes++
		}
	}
	return evs
}

func isWrite(call string) bool {
	for _, w := range []string{"Put", "Remove", "Delete", "Store", "Mark"} {
		if len(call) >= len(w) && call[:len(w)] == w {
			return true
		}
	}
	return false
}

func (d *device) decrypt(ctx context.Context, addr *protocol.SignalAddress, req devproto.Request) devproto.Event {
	pt, err := d.ep.DecryptDM(ctx, addr, req.Kind, req.CT)
	var ev devproto.Event
	if err != nil {
		ev.Class, ev.Err = string(endpoint.ClassOf(err)), err.Error()
	} else {
		ev.OK, ev.PT = true, pt
		if ev.PT == nil {
			ev.PT = []byte{}
		}
	}
	return ev
}

func (d *device) encrypt(ctx context.Context, addr *protocol.SignalAddress, req devproto.Request) devproto.Event {
	var ev devproto.Event
	err := func() error {
		if req.Bundle != nil {
			b, err := req.Bundle.ToBundle()
			if err != nil {
				return err
			}
			if err := d.ep.ProcessBundle(ctx, addr, b); err != nil {
				return err
			}
		} else if has, err := d.ep.Device.ContainsSession(ctx, addr); err != nil {
			return err
		} else if !has {
			ev.NeedBundle = true
			return &endpoint.Failure{Class: endpoint.NoSession, Err: errors.New("no session and no bundle")}
		}
		kind, ct, err := d.ep.Encrypt(ctx, addr, req.PT)
		ev.Kind, ev.CT = kind, ct
		return err
	}()
	if err != nil {
		ev.Kind, ev.CT = "", nil
		ev.Class, ev.Err = string(endpoint.ClassOf(err)), err.Error()
	} else {
		ev.OK = true
	}
	return ev
}

func (d *device) creds() *devproto.Creds {
	c := d.ep.Creds
	return &devproto.Creds{Reg: c.RegistrationID, Identity: c.Identity.Pub[:], SPKID: c.SignedPreKey.KeyID,
		SPK: c.SignedPreKey.Pub[:], Sig: c.SignedPreKey.Signature[:]}
}

func wirePreKey(pk *keys.PreKey) devproto.PreKey {
	return devproto.PreKey{ID: pk.KeyID, Pub: pk.Pub[:]}
}
