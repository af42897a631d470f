package harness

import (
	"strings"
	"testing"
)

// The LID ops parse and print back, a bad form is refused with the line,
// and the model refuses them and the scenarios registered as device-only.
func TestLIDOps(t *testing.T) {
	text := Version + "\nseed 1\nscenario script\ndiscipline whatsmeow\nstore sqlite\ncontacts alice:1\nops\n" +
		"phase alice mixed\nvia alice.0 lid\nmapping alice\nforget alice.0\nmigrate\nsend alice.0 m1\n"
	s, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != text {
		t.Fatalf("printed back:\n%s\nwant:\n%s", s, text)
	}
	for _, bad := range []string{"phase alice sideways", "via alice.0 mixed", "phase alice", "mapping", "migrate now"} {
		_, err := Parse(strings.NewReader(strings.Replace(text, "send alice.0 m1", bad, 1)))
		if err == nil || !strings.Contains(err.Error(), "line 13") {
			t.Errorf("%q: got %v, want an error naming line 13", bad, err)
		}
	}
	if err := (Model{}).Check(s, Controlled); err == nil || !strings.Contains(err.Error(), "real client only") {
		t.Errorf("the model's Check = %v, want the LID ops refused", err)
	}
	DeviceOnlyScenarios["lid-test"] = "the real client only"
	defer delete(DeviceOnlyScenarios, "lid-test")
	if err := (Model{}).Check(&Schedule{Scenario: "lid-test"}, Controlled); err == nil {
		t.Error("the model's Check accepted a device-only scenario")
	}
	if err := (Model{}).Check(&Schedule{Scenario: "burst"}, Controlled); err != nil {
		t.Errorf("the model's Check refused scenario burst: %v", err)
	}
}

// A real client's goroutine names are tasks, not messages: its schedules
// survive Tidy; a step naming a message never sent does not.
func TestClientTasksAreNotUnsent(t *testing.T) {
	s := &Schedule{Ops: []Op{SendOp{Peer: "alice.0", Msg: "m1"}, StepOp{Task: "recv"},
		RunOp{Task: "reply:r1"}, StepOp{Task: "recv#2"}, StepOp{Task: "m7"}}}
	s.Tidy()
	var got []string
	for _, op := range s.Ops {
		got = append(got, op.String())
	}
	if want := "send alice.0 m1|step recv|run reply:r1|step recv#2"; strings.Join(got, "|") != want {
		t.Errorf("tidied: %s, want %s", strings.Join(got, "|"), want)
	}
}

// A schedule is a LID schedule by its scenario or by any LID op, and not
// otherwise.
func TestScheduleLID(t *testing.T) {
	DeviceOnlyScenarios["lid-test-only"] = "a test's"
	defer delete(DeviceOnlyScenarios, "lid-test-only")
	for _, c := range []struct {
		s    Schedule
		want bool
	}{
		{Schedule{Scenario: "burst", Ops: []Op{SendOp{"alice.0", "m1"}, DeliverOp{ID: "m1"}}}, false},
		{Schedule{Scenario: "burst", Ops: []Op{SendOp{"alice.0", "m1"}, ViaOp{"alice.0", "lid"}}}, true},
		{Schedule{Scenario: "script", Ops: []Op{MigrateOp{}}}, true},
		{Schedule{Scenario: "lid-test-only"}, true},
	} {
		if got := c.s.LID(); got != c.want {
			t.Errorf("%s %v: LID() = %t, want %t", c.s.Scenario, c.s.Ops, got, c.want)
		}
	}
}
