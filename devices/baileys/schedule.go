package baileys

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// ScheduleVersion is line 1 of a device schedule file.
const ScheduleVersion = "badmac device schedule v1"

// Schedule is one run against a device process, as data: the header fixes
// the device, the variant, the scenario and the seeds; the ops are what the
// harness did, in order. Gate ids ("g7") are the device's, deterministic for
// a given seed and history, so the ops replay.
type Schedule struct {
	Device   string // "baileys@6.17.16"
	Variant  string // stock, seedfix, locked
	Scenario string
	Seed     uint64
	Contacts []string // peer users, one device each
	Ops      []Op
}

// Op is one harness action:
//
//	send alice.0 m1     the peer encrypts m1 and queues it for the device
//	deliver m1          the device starts a task taking delivery m1
//	reply alice.0 r1    the device starts a task encrypting reply r1
//	step g3             the task parked at gate g3 makes its store call
//	read r1             the peer takes and decrypts delivery r1
//	dup m1              the server queues another copy of delivery m1
//	tear                the device dies inside a creds.json write (a prefix is on disk), then restarts
type Op struct {
	Verb string
	Args []string
}

func (o Op) String() string { return strings.Join(append([]string{o.Verb}, o.Args...), " ") }

var arity = map[string]int{"send": 2, "deliver": 1, "reply": 2, "step": 1, "read": 1, "dup": 1, "tear": 0}

// String prints the schedule in the format Parse reads.
func (s *Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\ndevice %s\nvariant %s\nscenario %s\nseed %d\ncontacts %s\n",
		ScheduleVersion, s.Device, s.Variant, s.Scenario, s.Seed, strings.Join(s.Contacts, ","))
	for _, op := range s.Ops {
		b.WriteString(op.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Parse reads a schedule; errors name the line.
func Parse(text string) (*Schedule, error) {
	s := &Schedule{}
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	header := map[string]bool{}
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if n == 1 {
			if line != ScheduleVersion {
				return nil, fmt.Errorf("schedule line 1: want %q, got %.60q", ScheduleVersion, line)
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case "device", "variant", "scenario", "seed", "contacts":
			if len(f) != 2 || header[f[0]] {
				return nil, fmt.Errorf("schedule line %d: bad or repeated header %q", n, line)
			}
			header[f[0]] = true
			switch f[0] {
			case "device":
				s.Device = f[1]
			case "variant":
				s.Variant = f[1]
			case "scenario":
				s.Scenario = f[1]
			case "seed":
				v, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("schedule line %d: seed: %w", n, err)
				}
				s.Seed = v
			case "contacts":
				s.Contacts = strings.Split(f[1], ",")
			}
			continue
		}
		want, ok := arity[f[0]]
		if !ok {
			return nil, fmt.Errorf("schedule line %d: unknown op %q", n, f[0])
		}
		if len(f)-1 != want {
			return nil, fmt.Errorf("schedule line %d: %s takes %d arguments, got %d", n, f[0], want, len(f)-1)
		}
		s.Ops = append(s.Ops, Op{Verb: f[0], Args: f[1:]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("schedule line 1: empty file, want %q", ScheduleVersion)
	}
	for _, h := range []string{"device", "variant", "scenario", "seed", "contacts"} {
		if !header[h] {
			return nil, fmt.Errorf("schedule: no %s line", h)
		}
	}
	if _, err := ParseDevice(s.Device); err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	if !validVariant(s.Variant) {
		return nil, fmt.Errorf("schedule: unknown variant %q (known: %s)", s.Variant, strings.Join(Variants, ", "))
	}
	return s, nil
}
