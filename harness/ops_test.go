package harness

import (
	"strings"
	"testing"
)

// Every op type prints as today's text form and parses back to an equal
// op; every verb has a row (a new op type without one fails here).
func TestOpsRoundTrip(t *testing.T) {
	cases := []struct {
		text string
		op   Op
	}{
		{"send alice.0 m1", SendOp{Peer: "alice.0", Msg: "m1"}},
		{"group bob.1 g2", GroupOp{Peer: "bob.1", Msg: "g2"}},
		{"deliver m1", DeliverOp{ID: "m1"}},
		{"deliver m1.2 @1", DeliverOp{ID: "m1.2", Inst: 1}},
		{"reply alice.0 r1", ReplyOp{Peer: "alice.0", Msg: "r1"}},
		{"reply alice.0 r4 @1", ReplyOp{Peer: "alice.0", Msg: "r4", Inst: 1}},
		{"step m1", StepOp{Task: "m1"}},
		{"step recv#2", StepOp{Task: "recv#2"}},
		{"run reply:r1", RunOp{Task: "reply:r1"}},
		{"read r1.2", ReadOp{ID: "r1.2"}},
		{"dup m3", DupOp{ID: "m3"}},
		{"crash", CrashOp{}},
		{"crash kdg", CrashOp{Mode: "kdg"}},
		{"stop", StopOp{}},
		{"restart", RestartOp{}},
		{"snapshot", SnapshotOp{}},
		{"rollback", RollbackOp{}},
		{"reinstall alice.0", ReinstallOp{Peer: "alice.0"}},
		{"rekey alice.0", RekeyOp{Peer: "alice.0"}},
		{"wait 360", WaitOp{Seconds: 360}},
		{"wait 0.5", WaitOp{Seconds: 0.5}},
		{"phase alice mixed", PhaseOp{User: "alice", Phase: "mixed"}},
		{"via alice.0 lid", ViaOp{Peer: "alice.0", Form: "lid"}},
		{"mapping alice", MappingOp{User: "alice"}},
		{"forget alice.0", ForgetOp{Peer: "alice.0"}},
		{"migrate", MigrateOp{}},
		{"drop", DropOp{}},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if got := c.op.String(); got != c.text {
			t.Errorf("%#v prints %q, want %q", c.op, got, c.text)
		}
		back, err := ParseOp(c.text)
		if err != nil || back != c.op {
			t.Errorf("ParseOp(%q) = %#v, %v; want %#v", c.text, back, err, c.op)
		}
		if first, _, _ := strings.Cut(c.text, " "); c.op.Verb() != first {
			t.Errorf("%#v: verb %q, its text starts %q", c.op, c.op.Verb(), first)
		}
		seen[c.op.Verb()] = true
	}
	for _, op := range AllOps() {
		if !seen[op.Verb()] {
			t.Errorf("op %s has no row here", op.Verb())
		}
		if back, err := ParseOp(op.String()); err != nil || back != op {
			t.Errorf("ParseOp(%q) = %#v, %v; want %#v", op, back, err, op)
		}
	}
	if len(AllOps()) != len(Verbs()) || len(seen) != len(Verbs()) {
		t.Errorf("%d op types, %d verbs, %d with rows here", len(AllOps()), len(Verbs()), len(seen))
	}
}

// Parse refuses each malformed op with one line naming the op's line, and
// accepts the well-formed line it replaces.
func TestParseRefusesBadOps(t *testing.T) {
	head := Version + "\nseed 1\nscenario script\ndiscipline locked\nstore reference\ncontacts alice:1\nops\nsend alice.0 m1\n"
	if _, err := Parse(strings.NewReader(head + "deliver m1 @1\n")); err != nil {
		t.Fatalf("the well-formed schedule: %v", err)
	}
	for bad, want := range map[string]string{
		"bogus m1":                `unknown op "bogus"`,
		"send alice.0":            "send takes 2 arguments, got 1",
		"send alice.0 m1 m2":      "send takes 2 arguments, got 3",
		"step":                    "step takes 1 arguments, got 0",
		"migrate now":             "migrate takes 0 arguments, got 1",
		"crash kx":                `crash mode "kx": want letters k, d, g`,
		"crash k d":               "crash takes 0 arguments, got 2",
		"deliver m1 @x":           `bad instance "@x"`,
		"deliver m1 @-1":          `bad instance "@-1"`,
		"step m1 @1":              "step takes no instance",
		"wait soon":               `wait "soon": want seconds`,
		"wait -1":                 `wait "-1": want seconds`,
		"wait Inf":                `wait "Inf": want seconds`,
		"phase alice sideways":    "phase sideways: want one of pn, mixed, lid",
		"via alice.0 mixed":       "via mixed: want one of pn, lid",
		"reinstall alice.0 bob.0": "reinstall takes 1 arguments, got 2",
	} {
		_, err := Parse(strings.NewReader(head + bad + "\n"))
		if err == nil {
			t.Errorf("%q parsed", bad)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "schedule line 9: ") || !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
			t.Errorf("%q: %q, want one line \"schedule line 9: …%s…\"", bad, msg, want)
		}
	}
}

// A device's Check asks its OpSet: the model refuses an op it does not
// implement with the uniform line, and accepts the same schedule without
// it.
func TestCheckRefusesUnimplementedOps(t *testing.T) {
	s := &Schedule{Scenario: "script", Ops: []Op{SendOp{Peer: "alice.0", Msg: "m1"}, DeliverOp{ID: "m1"}}}
	if err := (Model{}).Check(s, Controlled); err != nil {
		t.Fatalf("the model refused %v: %v", s.Ops, err)
	}
	for _, op := range AllOps() {
		with := s.Clone()
		with.Ops = append(with.Ops, op)
		err := (Model{}).Check(with, Controlled)
		if LIDOp(op) || op == (DropOp{}) {
			want := "device model does not implement op " + op.Verb() + " ("
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("op %s: Check = %v, want %q…", op, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("op %s: the model refused it: %v", op, err)
		}
	}
	// An opt-in op: Except leaves it out, With adds it.
	if Except().Has(DropOp{}) || !Except().With(DropOp{}).Has(DropOp{}) || !Except(SendOp{}).With(DropOp{}).Has(StepOp{}) || Except(SendOp{}).With(DropOp{}).Has(SendOp{}) {
		t.Errorf("Except/With: drop %t, with drop %v", Except().Has(DropOp{}), Except(SendOp{}).With(DropOp{}).Verbs())
	}
	set := Implements(SendOp{}, StepOp{})
	if !set.Has(StepOp{Task: "recv"}) || set.Has(RunOp{}) || strings.Join(set.Verbs(), ",") != "send,step" {
		t.Errorf("Implements(send, step): %v", set.Verbs())
	}
	if err := set.Refuse("d", []Op{SendOp{}, RunOp{Task: "m1"}}, nil); err == nil || err.Error() != "device d does not implement op run" {
		t.Errorf("Refuse = %v", err)
	}
	if err := set.Refuse("d", []Op{StepOp{Task: "m1"}}, nil); err != nil {
		t.Errorf("Refuse of an implemented op = %v", err)
	}
}
