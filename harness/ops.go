package harness

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Op is one step of a schedule: one type per verb (below), each printing
// as one line that ParseOp, the one parser of ops, reads back to an equal
// op. Devices apply ops with a type switch and declare the types they
// implement in one OpSet each (Implements), which their Check asks.
//
// An op that does not apply when it runs (a task that is finished or
// blocked, a delivery not queued) does nothing, so any subsequence of a
// schedule is a schedule: that is what lets shrinking delete ops freely.
type Op interface {
	// String prints the op in its text form, one schedule line.
	String() string
	// Verb is the op's first word: which type it is.
	Verb() string
}

// SendOp: peer P (alice.0) encrypts direct message M and queues it
// ("send P M").
type SendOp struct{ Peer, Msg string }

// GroupOp: peer P sends group message M (skmsg, with the sender key
// distribution in a DM part the first time) ("group P M").
type GroupOp struct{ Peer, Msg string }

// DeliverOp: device instance Inst starts a task receiving delivery ID
// ("deliver D [@I]").
type DeliverOp struct {
	ID   string
	Inst int
}

// ReplyOp: device instance Inst starts a task sending reply Msg to Peer
// ("reply P M [@I]").
type ReplyOp struct {
	Peer, Msg string
	Inst      int
}

// StepOp: run task T (named after its delivery; a device's own task, as
// the real client's "recv") to its next yield point ("step T").
type StepOp struct{ Task string }

// RunOp: step task T until it ends or blocks ("run T").
type RunOp struct{ Task string }

// ReadOp: the peer reads delivery D from the device ("read D").
type ReadOp struct{ ID string }

// DupOp: the server queues another copy of delivery D (offline queue
// redelivery after a lost ack) ("dup D").
type DupOp struct{ ID string }

// CrashOp: the device dies: live device tasks never run again, the
// storage drops its volatile state; Mode says per pending write whether it
// is kept (k), dropped (d) or torn (g), writes past its end are dropped
// (default, Mode "": all dropped) ("crash [MODE]").
type CrashOp struct{ Mode string }

// StopOp: a clean shutdown (a deploy's SIGTERM): the device finishes what
// it is doing, the store writes out what it buffered and closes, and the
// device is down until restart; not counted as a crash ("stop").
type StopOp struct{}

// RestartOp: a crashed or stopped device comes back from its durable
// state (the run restarts a crashed device itself at the end) ("restart").
type RestartOp struct{}

// SnapshotOp: a backup of the device storage's durable state ("snapshot").
type SnapshotOp struct{}

// RollbackOp: the device dies and its storage is restored from the last
// backup, then it restarts (no backup: a crash) ("rollback").
type RollbackOp struct{}

// ReinstallOp: contact device P reinstalls WhatsApp: new identity and
// registration id, its old session gone ("reinstall P").
type ReinstallOp struct{ Peer string }

// RekeyOp: contact device P starts a new session with the device from a
// fresh bundle, same identity ("rekey P").
type RekeyOp struct{ Peer string }

// WaitOp: Seconds pass on the device's clock (a device with a virtual
// clock fires its timers and expires its caches; the model has none:
// nothing) ("wait S").
type WaitOp struct{ Seconds float64 }

// DropOp: the server drops the device's connection (a network drop): a
// client reconnects by itself and the server redelivers every stanza the
// device did not acknowledge ("drop"). A device must declare it
// (optIn): Except does not give it.
type DropOp struct{}

// The LID addressing ops (docs/lid.md §5.2, issue 20): one contact with a
// phone-number address (PN) and a linked identity (LID). They run on the
// real whatsmeow client only (realclient): LID handling is whatsmeow's own
// code, which the in-process model does not model; the model does not
// implement them (Model.Check).

// PhaseOp: the server's phase for contact user U from now on: PN only;
// both forms (PN stanzas with sender_lid, LID stanzas with sender_pn);
// LID only ("phase U pn|mixed|lid").
type PhaseOp struct{ User, Phase string }

// ViaOp: the envelope form of contact device P's next stanzas and retry
// receipts (a queued stanza keeps its form, so dup redelivers it as it
// was) ("via P pn|lid").
type ViaOp struct{ Peer, Form string }

// MappingOp: the server tells the device U's LID without a message (a
// devices notification) ("mapping U").
type MappingOp struct{ User string }

// ForgetOp: contact device P drops its session with the device: its next
// decrypt of the device's message fails and it sends a retry receipt
// ("forget P").
type ForgetOp struct{ Peer string }

// MigrateOp: the account's LID migration: the bot's own phone sends the
// LID migration sync message, whatsmeow sets its LIDMigrationTimestamp and
// its later sends to a PN go to the contact's LID (a schedule with migrate
// logs in with the account's own LID, <success lid>; docs/lid.md §6.1)
// ("migrate").
type MigrateOp struct{}

func (SendOp) Verb() string      { return "send" }
func (GroupOp) Verb() string     { return "group" }
func (DeliverOp) Verb() string   { return "deliver" }
func (ReplyOp) Verb() string     { return "reply" }
func (StepOp) Verb() string      { return "step" }
func (RunOp) Verb() string       { return "run" }
func (ReadOp) Verb() string      { return "read" }
func (DupOp) Verb() string       { return "dup" }
func (CrashOp) Verb() string     { return "crash" }
func (StopOp) Verb() string      { return "stop" }
func (RestartOp) Verb() string   { return "restart" }
func (SnapshotOp) Verb() string  { return "snapshot" }
func (RollbackOp) Verb() string  { return "rollback" }
func (ReinstallOp) Verb() string { return "reinstall" }
func (RekeyOp) Verb() string     { return "rekey" }
func (WaitOp) Verb() string      { return "wait" }
func (PhaseOp) Verb() string     { return "phase" }
func (ViaOp) Verb() string       { return "via" }
func (MappingOp) Verb() string   { return "mapping" }
func (ForgetOp) Verb() string    { return "forget" }
func (MigrateOp) Verb() string   { return "migrate" }
func (DropOp) Verb() string      { return "drop" }

// opText prints verb and its arguments, then the instance when not 0.
func opText(verb string, inst int, args ...string) string {
	s := verb
	if len(args) > 0 {
		s += " " + strings.Join(args, " ")
	}
	if inst != 0 {
		s += fmt.Sprintf(" @%d", inst)
	}
	return s
}

func (o SendOp) String() string    { return opText("send", 0, o.Peer, o.Msg) }
func (o GroupOp) String() string   { return opText("group", 0, o.Peer, o.Msg) }
func (o DeliverOp) String() string { return opText("deliver", o.Inst, o.ID) }
func (o ReplyOp) String() string   { return opText("reply", o.Inst, o.Peer, o.Msg) }
func (o StepOp) String() string    { return opText("step", 0, o.Task) }
func (o RunOp) String() string     { return opText("run", 0, o.Task) }
func (o ReadOp) String() string    { return opText("read", 0, o.ID) }
func (o DupOp) String() string     { return opText("dup", 0, o.ID) }
func (o CrashOp) String() string {
	if o.Mode == "" {
		return "crash"
	}
	return opText("crash", 0, o.Mode)
}
func (StopOp) String() string        { return "stop" }
func (RestartOp) String() string     { return "restart" }
func (SnapshotOp) String() string    { return "snapshot" }
func (RollbackOp) String() string    { return "rollback" }
func (o ReinstallOp) String() string { return opText("reinstall", 0, o.Peer) }
func (o RekeyOp) String() string     { return opText("rekey", 0, o.Peer) }
func (o WaitOp) String() string {
	return opText("wait", 0, strconv.FormatFloat(o.Seconds, 'f', -1, 64))
}
func (o PhaseOp) String() string   { return opText("phase", 0, o.User, o.Phase) }
func (o ViaOp) String() string     { return opText("via", 0, o.Peer, o.Form) }
func (o MappingOp) String() string { return opText("mapping", 0, o.User) }
func (o ForgetOp) String() string  { return opText("forget", 0, o.Peer) }
func (MigrateOp) String() string   { return "migrate" }
func (DropOp) String() string      { return "drop" }

// opSyntax is how each verb's arguments parse: how many it takes (opt of
// them optional), whether it takes an instance, and the op they make
// (args already counted).
type opSyntax struct {
	n, opt int
	inst   bool
	make   func(a []string, inst int) (Op, error)
}

var opSyntaxes = map[string]opSyntax{
	"send":    {n: 2, make: func(a []string, _ int) (Op, error) { return SendOp{a[0], a[1]}, nil }},
	"group":   {n: 2, make: func(a []string, _ int) (Op, error) { return GroupOp{a[0], a[1]}, nil }},
	"deliver": {n: 1, inst: true, make: func(a []string, i int) (Op, error) { return DeliverOp{a[0], i}, nil }},
	"reply":   {n: 2, inst: true, make: func(a []string, i int) (Op, error) { return ReplyOp{a[0], a[1], i}, nil }},
	"step":    {n: 1, make: func(a []string, _ int) (Op, error) { return StepOp{a[0]}, nil }},
	"run":     {n: 1, make: func(a []string, _ int) (Op, error) { return RunOp{a[0]}, nil }},
	"read":    {n: 1, make: func(a []string, _ int) (Op, error) { return ReadOp{a[0]}, nil }},
	"dup":     {n: 1, make: func(a []string, _ int) (Op, error) { return DupOp{a[0]}, nil }},
	"crash": {n: 0, opt: 1, make: func(a []string, _ int) (Op, error) {
		if len(a) == 0 {
			return CrashOp{}, nil
		}
		if strings.Trim(a[0], "kdg") != "" {
			return nil, fmt.Errorf("crash mode %q: want letters k, d, g", a[0])
		}
		return CrashOp{a[0]}, nil
	}},
	"stop":      {make: func([]string, int) (Op, error) { return StopOp{}, nil }},
	"restart":   {make: func([]string, int) (Op, error) { return RestartOp{}, nil }},
	"snapshot":  {make: func([]string, int) (Op, error) { return SnapshotOp{}, nil }},
	"rollback":  {make: func([]string, int) (Op, error) { return RollbackOp{}, nil }},
	"reinstall": {n: 1, make: func(a []string, _ int) (Op, error) { return ReinstallOp{a[0]}, nil }},
	"rekey":     {n: 1, make: func(a []string, _ int) (Op, error) { return RekeyOp{a[0]}, nil }},
	"wait": {n: 1, make: func(a []string, _ int) (Op, error) {
		s, err := strconv.ParseFloat(a[0], 64)
		if err != nil || s < 0 || math.IsInf(s, 0) || math.IsNaN(s) {
			return nil, fmt.Errorf("wait %q: want seconds", a[0])
		}
		return WaitOp{s}, nil
	}},
	"phase": {n: 2, make: func(a []string, _ int) (Op, error) {
		return PhaseOp{a[0], a[1]}, oneOf("phase", a[1], "pn", "mixed", "lid")
	}},
	"via": {n: 2, make: func(a []string, _ int) (Op, error) {
		return ViaOp{a[0], a[1]}, oneOf("via", a[1], "pn", "lid")
	}},
	"mapping": {n: 1, make: func(a []string, _ int) (Op, error) { return MappingOp{a[0]}, nil }},
	"forget":  {n: 1, make: func(a []string, _ int) (Op, error) { return ForgetOp{a[0]}, nil }},
	"migrate": {make: func([]string, int) (Op, error) { return MigrateOp{}, nil }},
	"drop":    {make: func([]string, int) (Op, error) { return DropOp{}, nil }},
}

// optIn are the op types a device implements only by naming them
// (Implements, With): Except leaves them out, so that a device declared
// as "every op but …" before they existed refuses them, with the reason
// here unless it gives its own.
var optIn = map[string]string{
	"drop": "no connection to drop: whatsmeow's reconnect and the server's redelivery of what was not acknowledged are the real client's (realclient)",
}

func oneOf(verb, got string, forms ...string) error {
	if slices.Contains(forms, got) {
		return nil
	}
	return fmt.Errorf("%s %s: want one of %s", verb, got, strings.Join(forms, ", "))
}

// ParseOp parses one op line (no comment): the one place ops are read and
// their arguments checked. Its error is one line without a line number
// (Parse adds it).
func ParseOp(text string) (Op, error) {
	f := strings.Fields(text)
	if len(f) == 0 {
		return nil, fmt.Errorf("empty op")
	}
	syn, ok := opSyntaxes[f[0]]
	if !ok {
		return nil, fmt.Errorf("unknown op %q", f[0])
	}
	args, inst := f[1:], 0
	if len(args) > 0 && strings.HasPrefix(args[len(args)-1], "@") {
		i, err := strconv.Atoi(args[len(args)-1][1:])
		if err != nil || i < 0 {
			return nil, fmt.Errorf("bad instance %q", args[len(args)-1])
		}
		if !syn.inst {
			return nil, fmt.Errorf("%s takes no instance (only deliver and reply do)", f[0])
		}
		inst, args = i, args[:len(args)-1]
	}
	if len(args) < syn.n || len(args) > syn.n+syn.opt {
		return nil, fmt.Errorf("%s takes %d arguments, got %d", f[0], syn.n, len(args))
	}
	return syn.make(args, inst)
}

// Verbs are every op verb, sorted.
func Verbs() []string { return slices.Sorted(maps.Keys(opSyntaxes)) }

// Inst is the device instance an op is for: deliver's and reply's @I, 0
// for every other op.
func Inst(op Op) int {
	switch o := op.(type) {
	case DeliverOp:
		return o.Inst
	case ReplyOp:
		return o.Inst
	}
	return 0
}

// TaskOf is the task a step or run op names; ok is false for other ops.
func TaskOf(op Op) (task string, ok bool) {
	switch o := op.(type) {
	case StepOp:
		return o.Task, true
	case RunOp:
		return o.Task, true
	}
	return "", false
}

// SentBy is the new message a send, group or reply op names; ok is false
// for other ops.
func SentBy(op Op) (msg string, ok bool) {
	switch o := op.(type) {
	case SendOp:
		return o.Msg, true
	case GroupOp:
		return o.Msg, true
	case ReplyOp:
		return o.Msg, true
	}
	return "", false
}

// Ref is the delivery or task a deliver, step, run, read or dup op names
// (a message's id or one of its copies, "m3", "m3.2", or for step and
// run a device's own task); ok is false for other ops.
func Ref(op Op) (id string, ok bool) {
	switch o := op.(type) {
	case DeliverOp:
		return o.ID, true
	case ReadOp:
		return o.ID, true
	case DupOp:
		return o.ID, true
	}
	return TaskOf(op)
}

// LIDOp reports whether op is one of the LID addressing ops.
func LIDOp(op Op) bool {
	switch op.(type) {
	case PhaseOp, ViaOp, MappingOp, ForgetOp, MigrateOp:
		return true
	}
	return false
}

// AllOps is one op of every type, in Verbs order (for OpSets and tests).
func AllOps() []Op {
	var out []Op
	for _, v := range Verbs() {
		syn := opSyntaxes[v]
		args := make([]string, syn.n)
		for i := range args {
			args[i] = "x1"
		}
		switch v {
		case "wait":
			args[0] = "1"
		case "phase":
			args[1] = "pn"
		case "via":
			args[1] = "pn"
		}
		op, err := syn.make(args, 0)
		if err != nil {
			panic(err) // the table above is wrong
		}
		out = append(out, op)
	}
	return out
}

// OpSet is the op types a device implements, by verb: one declaration per
// device (Implements), which its Check asks (Refuse) and its apply
// trusts.
type OpSet struct{ verbs map[string]bool }

// Implements declares a device's op types: one op of each (its fields do
// not matter).
func Implements(ops ...Op) OpSet {
	s := OpSet{verbs: map[string]bool{}}
	for _, op := range ops {
		s.verbs[op.Verb()] = true
	}
	return s
}

// Except is every op type but those of ops and the opt-in ones (optIn).
func Except(ops ...Op) OpSet {
	s := Implements(AllOps()...)
	for _, op := range ops {
		delete(s.verbs, op.Verb())
	}
	for v := range optIn {
		delete(s.verbs, v)
	}
	return s
}

// With is s and the op types of ops.
func (s OpSet) With(ops ...Op) OpSet {
	out := Implements(ops...)
	maps.Copy(out.verbs, s.verbs)
	return out
}

// Has reports whether the device implements op's type.
func (s OpSet) Has(op Op) bool { return s.verbs[op.Verb()] }

// HasVerb reports whether the device implements the op type named verb.
func (s OpSet) HasVerb(verb string) bool { return s.verbs[verb] }

// Verbs are the verbs of the op types in s, sorted.
func (s OpSet) Verbs() []string { return slices.Sorted(maps.Keys(s.verbs)) }

// Refuse is the uniform refusal of an op a device does not implement:
// "device D does not implement op V" for the first of ops s lacks, with
// why[V] after it when given; nil when s has them all.
func (s OpSet) Refuse(device string, ops []Op, why map[string]string) error {
	for _, op := range ops {
		if s.Has(op) {
			continue
		}
		w := why[op.Verb()]
		if w == "" {
			w = optIn[op.Verb()]
		}
		if w != "" {
			return fmt.Errorf("device %s does not implement op %s (%s)", device, op.Verb(), w)
		}
		return fmt.Errorf("device %s does not implement op %s", device, op.Verb())
	}
	return nil
}
