package harness

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

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
			op, err := ParseOp(text)
			if err != nil {
				return fail("%v", err)
			}
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
		switch op.(type) {
		case SnapshotOp:
			snap = true
		case RollbackOp:
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

// messageID is a message's id or one of its copies: letters, then digits,
// then an optional ".N".
var messageID = regexp.MustCompile(`^[a-z]+[0-9]+(\.[0-9]+)?$`)

// NamesMessage says whether op names a delivered message (or a copy):
// deliver, read and dup do; a step or run does when its task is a message
// (the model's tasks all are), not when it is a device's own task (the
// real client's goroutines "recv", "resend:r5", "login"; the Baileys
// socket's "login~creds1").
func NamesMessage(op Op) bool {
	id, ok := Ref(op)
	if !ok {
		return false
	}
	if _, task := TaskOf(op); task {
		return messageID.MatchString(id)
	}
	return true
}

// Unsent returns, for each op, the message it names that no op before it
// sent ("" for none): such an op does nothing when it runs.
func (s *Schedule) Unsent() []string {
	sent := map[string]bool{}
	out := make([]string, len(s.Ops))
	for i, op := range s.Ops {
		if msg, ok := SentBy(op); ok {
			sent[msg] = true
		} else if id, _ := Ref(op); NamesMessage(op) && !sent[MessageOf(id)] {
			out[i] = id
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
