package procs

import (
	"context"
	"errors"

	"github.com/badmac/badmac/devproto"
)

// Gated turns on gates (`badmac device -gates`, docs/device-protocol.md
// "The whatsmeow child"): a decrypt or encrypt starts a task that stops
// before each of its store calls (the endpoint's Probe, so every
// session, identity, prekey and sender-key call whatsmeow's store.Device
// makes for libsignal) and goes on when the parent steps its gate
// (devproto.Gates). The request's reply carries the task's first gate or
// its end; a step's reply the next. The reply's own fields for the task
// (receipt, prekey, reason, note, dropped) come on the reply that carries
// its end. Tasks run one at a time between gates; which task may start
// (the discipline's locks) is the parent's to decide, so a reply never
// ends two tasks. Calls outside tasks (provision, load, state) are not
// gated. Call it before the first request.
func (d *Handler) Gated() {
	d.gates = devproto.NewGates()
	d.ends = map[string]devproto.Reply{}
}

// Serve answers one request: Handle, or with gates the gated ops.
func (d *Handler) Serve(ctx context.Context, req devproto.Request) devproto.Reply {
	if d.gates == nil {
		return d.Handle(ctx, req)
	}
	var rep devproto.Reply
	var err error
	switch req.Op {
	case devproto.OpDecrypt, devproto.OpEncrypt:
		if req.StopAt > 0 {
			err = errors.New("stop_at with gates: a crash inside a request is a kill at a gate")
			break
		}
		if d.ep == nil {
			err = errors.New(req.Op + " before provision or load")
			break
		}
		var evs []devproto.Event
		if evs, err = d.gates.Start(ctx, req.Task, func(ctx context.Context) devproto.Event {
			d.ends[req.Task] = d.Handle(ctx, req)
			return devproto.Event{}
		}); err == nil {
			rep = d.ended(evs)
		}
	case devproto.OpStep:
		var evs []devproto.Event
		if evs, err = d.gates.Step(req.Gate); err == nil {
			rep = d.ended(evs)
		}
	case devproto.OpState:
		rep = d.Handle(ctx, req)
		rep.Parked, rep.Tasks = d.gates.Parked(), d.gates.Tasks()
		return rep
	default:
		return d.Handle(ctx, req)
	}
	d.answer(&rep, req, err)
	return rep
}

// ended is the reply carrying evs: a gate as it is; a task's end as the
// task's own reply (Handle's, kept when it returned) has it, with its
// fields.
func (d *Handler) ended(evs []devproto.Event) devproto.Reply {
	var rep devproto.Reply
	for _, e := range evs {
		if !e.Done {
			rep.Events = append(rep.Events, e)
			continue
		}
		end := d.ends[e.Task]
		delete(d.ends, e.Task)
		rep.Receipt, rep.PreKey, rep.Reason, rep.Note, rep.Dropped = end.Receipt, end.PreKey, end.Reason, end.Note, end.Dropped
		if !end.OK {
			// A request Handle refused (no task ran): its error is
			// the task's failure.
			rep.Events = append(rep.Events, devproto.Event{Task: e.Task, Done: true, Class: "Other", Err: end.Err})
		}
		rep.Events = append(rep.Events, end.Events...)
	}
	return rep
}
