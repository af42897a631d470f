package scenarios

import (
	"fmt"
	"slices"
	"strings"

	"github.com/badmac/badmac/harness"
)

// LongLived is the scenario whose records grow as after months of use:
// skipped message keys from out-of-order delivery, archived states after a
// contact reinstalls, several contacts and devices. storetest runs it; it
// is not one of badmac run's (All).
var LongLived = Scenario{Name: "longlived",
	Doc:      "a long conversation with gaps, redeliveries and contacts starting new sessions again and again: records as big as real ones",
	Contacts: []harness.Contact{{User: "alice", Devices: 2}, {User: "bob", Devices: 1}, {User: "carol", Devices: 1}},
	Messages: 80, Reply: 0.5, Reorder: true, Crash: CrashRekey, Crashes: 64}

// Script is the scenario of a hand-written schedule (a regression script
// under testdata): any op. No generator runs it.
var Script = Scenario{Name: "script", Doc: "a hand-written schedule: any op, no generator"}

// Known returns a scenario a schedule may name: one of All, LongLived or
// Script.
func Known(name string) (Scenario, error) {
	switch name {
	case LongLived.Name:
		return LongLived, nil
	case Script.Name:
		return Script, nil
	}
	return Lookup(name)
}

// Ops are the op verbs the scenario's generator, its shrinks (a run of
// steps becomes run) and a crash enumeration of it (its drain as ops) can
// produce.
func (s Scenario) Ops() []string {
	if s.Name == Script.Name {
		return harness.Verbs()
	}
	ops := []string{"deliver", "step", "run", "read"}
	if s.Group {
		ops = append(ops, "group")
	} else {
		ops = append(ops, "send")
	}
	if s.Reply > 0 {
		ops = append(ops, "reply")
	}
	if s.Reorder {
		ops = append(ops, "dup")
	}
	if s.Drop > 0 {
		ops = append(ops, "drop")
	}
	switch s.Crash {
	case CrashRandom, CrashTorn:
		ops = append(ops, "crash", "restart")
	case CrashRestart:
		ops = append(ops, "stop", "restart")
	case CrashRollback:
		ops = append(ops, "snapshot", "rollback")
	case CrashReinstall:
		ops = append(ops, "reinstall")
	case CrashRekey:
		ops = append(ops, "rekey")
	case CrashIdle:
		ops = append(ops, "wait")
	}
	return s.lidScenarioOps(ops)
}

// Validate checks a parsed schedule strictly, for replay (issue 16 §6): it
// names a known scenario; every op is one that scenario produces, on an
// instance the schedule has; a send, group, reply, reinstall or rekey names
// a contact device of the schedule; and every other op names a message an
// earlier op sent (or a copy of one); on the model, a step or run names a
// message (its only tasks). Anything else is bad input: the error
// names the line. Store, device and discipline names are checked where
// they are opened (the discipline by harness.Parse).
func Validate(s *harness.Schedule) error {
	at := func(line int, format string, a ...any) error {
		return fmt.Errorf("schedule line %d: %s", line, fmt.Sprintf(format, a...))
	}
	sc, err := Known(s.Scenario)
	if err != nil {
		return at(s.Line("scenario"), "%v", err)
	}
	peers := map[string]bool{}
	for _, c := range s.Contacts {
		for d := range c.Devices {
			peers[fmt.Sprintf("%s.%d", c.User, d)] = true
		}
	}
	ops := sc.Ops()
	unsent := s.Unsent()
	model := s.Device == "" || s.Device == "model"
	for i, op := range s.Ops {
		line := s.OpLine(i)
		if !slices.Contains(ops, op.Verb()) {
			return at(line, "op %q: scenario %s has no %s ops (it has %s)", op, sc.Name, op.Verb(), strings.Join(ops, ", "))
		}
		if inst := harness.Inst(op); inst >= max(s.Instances, 1) {
			return at(line, "op %q: instance %d, but the schedule has %d", op, inst, max(s.Instances, 1))
		}
		if p, ok := contactOf(op); ok && !peers[p] {
			return at(line, "op %q: %s is not a contact device of the schedule (contacts %s)", op, p, contactList(s))
		}
		if task, ok := harness.TaskOf(op); ok && model && !harness.NamesMessage(op) {
			return at(line, "op %q: the model's tasks are messages (m1, r2, m3.2), and %s is none", op, task)
		}
		if unsent[i] != "" {
			return at(line, "op %q: no op before it sent message %s", op, harness.MessageOf(unsent[i]))
		}
	}
	return nil
}

func contactList(s *harness.Schedule) string {
	var cs []string
	for _, c := range s.Contacts {
		cs = append(cs, fmt.Sprintf("%s:%d", c.User, c.Devices))
	}
	return strings.Join(cs, " ")
}

// contactOf is the contact device a send, group, reply, reinstall or rekey
// op names.
func contactOf(op harness.Op) (string, bool) {
	switch o := op.(type) {
	case harness.SendOp:
		return o.Peer, true
	case harness.GroupOp:
		return o.Peer, true
	case harness.ReplyOp:
		return o.Peer, true
	case harness.ReinstallOp:
		return o.Peer, true
	case harness.RekeyOp:
		return o.Peer, true
	}
	return "", false
}
