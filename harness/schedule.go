package harness

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Op is one step of a schedule. Ops print as one line and parse back.
//
//	send P M        peer P (alice.0) encrypts direct message M and queues it
//	group P M       peer P sends group message M (skmsg, with the sender key
//	                distribution in a DM part the first time)
//	deliver D [@I]  device instance I starts a task receiving delivery D
//	reply P M [@I]  device instance I starts a task sending reply M to P
//	step T          run task T (named after its delivery) to its next yield point
//	run T           step task T until it ends or blocks
//	read D          the peer reads delivery D from the device
//	dup D           the server queues another copy of delivery D (offline
//	                queue redelivery after a lost ack)
//	crash [MODE]    the device dies: live device tasks never run again, the
//	                storage drops its volatile state; MODE says per pending
//	                write whether it is kept (k), dropped (d) or torn (g),
//	                writes past its end are dropped (default: all dropped)
//	restart         a crashed device comes back from its durable state
//	                (the run restarts a crashed device itself at the end)
//	snapshot        a backup of the device storage's durable state
//	rollback        the device dies and its storage is restored from the
//	                last backup, then it restarts (no backup: a crash)
//	reinstall P     contact device P reinstalls WhatsApp: new identity and
//	                registration id, its old session gone
//	wait S          S seconds pass on the device's clock (a device with a
//	                virtual clock fires its timers and expires its caches;
//	                the model has none: nothing)
//
// An op that does not apply when it runs (a task that is finished or
// blocked, a delivery not queued) does nothing, so any subsequence of a
// schedule is a schedule: that is what lets shrinking delete ops freely.
type Op struct {
	Verb string
	Args []string
	Inst int
}

// String prints the op in its text form.
func (o Op) String() string {
	s := o.Verb
	if len(o.Args) > 0 {
		s += " " + strings.Join(o.Args, " ")
	}
	if o.Inst != 0 {
		s += fmt.Sprintf(" @%d", o.Inst)
	}
	return s
}

var opArity = map[string]int{"send": 2, "group": 2, "deliver": 1, "reply": 2, "step": 1, "run": 1, "read": 1, "dup": 1,
	"crash": 0, "stop": 0, "restart": 0, "snapshot": 0, "rollback": 0, "reinstall": 1, "rekey": 1, "wait": 1}

// opOptional is how many trailing arguments an op may leave out.
var opOptional = map[string]int{"crash": 1}

// Schedule is a whole run as data: the setup and every op. Printed, it
// replays byte for byte.
type Schedule struct {
	// Device is the device under test the schedule is for (its Name);
	// empty for the in-process model.
	Device     string
	Seed       uint64
	Scenario   string
	Discipline Discipline
	Store      string
	Contacts   []Contact
	Group      string
	Instances  int
	Ops        []Op
	// lines: where Parse read each header key and each op (for errors
	// that name the line); nil for a schedule not parsed.
	lines   map[string]int
	opLines []int
}

// Contact is a peer user and how many devices it has.
type Contact struct {
	User    string
	Devices int
}

// Version is the schedule format version.
const Version = "badmac schedule v1"

// String prints the schedule in its text form.
func (s *Schedule) String() string {
	var b strings.Builder
	fmt.Fprintln(&b, Version)
	if s.Device != "" {
		fmt.Fprintf(&b, "device %s\n", s.Device)
	}
	fmt.Fprintf(&b, "seed %d\n", s.Seed)
	fmt.Fprintf(&b, "scenario %s\n", s.Scenario)
	fmt.Fprintf(&b, "discipline %s\n", s.Discipline)
	fmt.Fprintf(&b, "store %s\n", s.Store)
	var cs []string
	for _, c := range s.Contacts {
		cs = append(cs, fmt.Sprintf("%s:%d", c.User, c.Devices))
	}
	fmt.Fprintf(&b, "contacts %s\n", strings.Join(cs, " "))
	if s.Group != "" {
		fmt.Fprintf(&b, "group %s\n", s.Group)
	}
	if s.Instances > 1 {
		fmt.Fprintf(&b, "instances %d\n", s.Instances)
	}
	fmt.Fprintln(&b, "ops")
	for _, o := range s.Ops {
		fmt.Fprintln(&b, o.String())
	}
	return b.String()
}

// Clone returns a copy whose ops can be changed independently.
func (s *Schedule) Clone() *Schedule {
	c := *s
	c.Contacts = append([]Contact(nil), s.Contacts...)
	c.Ops = append([]Op(nil), s.Ops...)
	c.opLines = append([]int(nil), s.opLines...)
	return &c
}

// Parse reads a schedule in its text form. Errors name the line. A line
// "history" in the ops section ends the schedule: `badmac replay` prints
// the schedule, then "history" and what the replay did, and that output
// is itself a schedule file, one that carries its expected replay.
func Parse(r io.Reader) (*Schedule, error) {
	sc := bufio.NewScanner(r)
	s := &Schedule{Instances: 1, lines: map[string]int{}}
	line := 0
	inOps := false
	seen := map[string]bool{}
	fail := func(format string, a ...any) (*Schedule, error) {
		return nil, fmt.Errorf("schedule line %d: %s", line, fmt.Sprintf(format, a...))
	}
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if line == 1 {
			if text != Version {
				return fail("want %q, got %q", Version, text)
			}
			continue
		}
		if text == "" {
			continue
		}
		f := strings.Fields(text)
		if inOps && text == "history" {
			break // a replay's output follows: a regression file's expected part (docs/regressions.md)
		}
		if inOps {
			op := Op{Verb: f[0]}
			n, ok := opArity[f[0]]
			if !ok {
				return fail("unknown op %q", f[0])
			}
			args := f[1:]
			if len(args) > 0 && strings.HasPrefix(args[len(args)-1], "@") {
				inst, err := strconv.Atoi(args[len(args)-1][1:])
				if err != nil || inst < 0 {
					return fail("bad instance %q", args[len(args)-1])
				}
				op.Inst = inst
				args = args[:len(args)-1]
			}
			if len(args) < n || len(args) > n+opOptional[f[0]] {
				return fail("%s takes %d arguments, got %d", f[0], n, len(args))
			}
			if f[0] == "crash" && len(args) == 1 && strings.Trim(args[0], "kdg") != "" {
				return fail("crash mode %q: want letters k, d, g", args[0])
			}
			if err := checkLIDOp(f[0], args); err != nil {
				return fail("%v", err)
			}
			op.Args = args
			s.Ops = append(s.Ops, op)
			s.opLines = append(s.opLines, line)
			continue
		}
		key := f[0]
		if seen[key] {
			return fail("%s given twice", key)
		}
		seen[key] = true
		s.lines[key] = line
		switch key {
		case "ops":
			inOps = true
		case "seed":
			if len(f) != 2 {
				return fail("seed takes one number")
			}
			v, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return fail("bad seed %q", f[1])
			}
			s.Seed = v
		case "scenario", "store", "group", "device":
			if len(f) != 2 {
				return fail("%s takes one word", key)
			}
			switch key {
			case "device":
				s.Device = f[1]
			case "scenario":
				s.Scenario = f[1]
			case "store":
				s.Store = f[1]
			default:
				s.Group = f[1]
			}
		case "discipline":
			if len(f) != 2 {
				return fail("discipline takes one word")
			}
			d, err := ParseDiscipline(f[1])
			if err != nil {
				return fail("%v", err)
			}
			s.Discipline = d
		case "instances":
			n, err := strconv.Atoi(strings.Join(f[1:], ""))
			if err != nil || n < 1 || n > 8 {
				return fail("instances takes a number from 1 to 8")
			}
			s.Instances = n
		case "contacts":
			for _, c := range f[1:] {
				user, devs, ok := strings.Cut(c, ":")
				n, err := strconv.Atoi(devs)
				if !ok || err != nil || n < 1 || n > 16 || user == "" {
					return fail("bad contact %q (want user:devices)", c)
				}
				s.Contacts = append(s.Contacts, Contact{User: user, Devices: n})
			}
		default:
			return fail("unknown header %q", key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	if line == 0 {
		return nil, fmt.Errorf("schedule line 1: empty file")
	}
	if !inOps {
		return fail("no ops section")
	}
	if len(s.Contacts) == 0 {
		return fail("no contacts")
	}
	if s.Store == "" {
		return fail("no store")
	}
	// String always writes these two; without them a schedule would not
	// print back as one that parses.
	if s.Scenario == "" {
		return fail("no scenario")
	}
	if s.Discipline == "" {
		return fail("no discipline")
	}
	return s, nil
}

// Restores reports whether a schedule restores a backup: a snapshot op,
// then a rollback op.
func (s *Schedule) Restores() bool {
	snap := false
	for _, op := range s.Ops {
		switch op.Verb {
		case "snapshot":
			snap = true
		case "rollback":
			if snap {
				return true
			}
		}
	}
	return false
}

// Line is the line a parsed schedule gave header key on ("scenario",
// "store", …), or 0.
func (s *Schedule) Line(key string) int { return s.lines[key] }

// OpLine is the line a parsed schedule gave op i on, or 0.
func (s *Schedule) OpLine(i int) int {
	if i < 0 || i >= len(s.opLines) || len(s.opLines) != len(s.Ops) {
		return 0
	}
	return s.opLines[i]
}

// sends are the ops that send a new message, named by their second
// argument; refers are the ops that name a delivery or task, a message's
// id or one of its copies ("m3", "m3.2"). A step or run of another
// device's task that is not a message (the real client's goroutines
// "recv", "resend:r5", "login"; the Baileys socket's "login~creds1") names
// no message: isMessageID tells them apart.
var (
	sends  = map[string]bool{"send": true, "group": true, "reply": true}
	refers = map[string]bool{"deliver": true, "step": true, "run": true, "read": true, "dup": true}
)

// messageID is a message's id or one of its copies: letters, then digits,
// then an optional ".N".
var messageID = regexp.MustCompile(`^[a-z]+[0-9]+(\.[0-9]+)?$`)

// NamesMessage says whether op's argument names a message (or a copy):
// a step or run of a device's own task (the real client's recv,
// reply:r1) names none. The model's tasks are all messages.
func NamesMessage(op Op) bool {
	if !refers[op.Verb] || len(op.Args) != 1 {
		return false
	}
	if op.Verb == "step" || op.Verb == "run" {
		return messageID.MatchString(op.Args[0])
	}
	return true
}

// Unsent returns, for each op, the message it names that no op before it
// sent ("" for none): such an op does nothing when it runs.
func (s *Schedule) Unsent() []string {
	sent := map[string]bool{}
	out := make([]string, len(s.Ops))
	for i, op := range s.Ops {
		switch {
		case sends[op.Verb] && len(op.Args) == 2:
			sent[op.Args[1]] = true
		case NamesMessage(op) && !sent[MessageOf(op.Args[0])]:
			out[i] = op.Args[0]
		}
	}
	return out
}

// MessageOf is the message a delivery or task id names: "m3" for "m3" and
// for its copies "m3.2", "m3.3".
func MessageOf(id string) string {
	if i := strings.LastIndexByte(id, '.'); i > 0 {
		if _, err := strconv.Atoi(id[i+1:]); err == nil {
			return id[:i]
		}
	}
	return id
}

// Tidy drops the ops that name a message no earlier op sent (Unsent):
// they do nothing, so the schedule runs the same without them. The
// shrinker tidies every candidate, so a schedule it saves has none, and a
// strict replay accepts it.
func (s *Schedule) Tidy() {
	unsent := s.Unsent()
	keep, lines := s.Ops[:0:0], s.opLines[:0:0]
	for i, op := range s.Ops {
		if unsent[i] != "" {
			continue
		}
		keep = append(keep, op)
		if i < len(s.opLines) {
			lines = append(lines, s.opLines[i])
		}
	}
	s.Ops, s.opLines = keep, lines
}

// Verbs are every op verb, sorted.
func Verbs() []string { return slices.Sorted(maps.Keys(opArity)) }
