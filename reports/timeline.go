package reports

import (
	"strings"

	"github.com/badmac/badmac/harness"
)

// Lane is the column of a timeline an event belongs to.
type Lane string

const (
	LanePeer    Lane = "peer"    // a contact encrypts, reads, answers a retry
	LaneServer  Lane = "server"  // a copy queued again (offline queue redelivery)
	LaneDevice  Lane = "device"  // a device task starts (a delivery taken, a reply), a send fails
	LaneStore   Lane = "store"   // a device task calls the store (a yield point)
	LaneAttempt Lane = "attempt" // a decryption attempt's outcome, at the device or the peer
	LaneCrash   Lane = "crash"   // crash, restart, backup, rollback, reinstall
)

// Lanes in display order.
var Lanes = []Lane{LanePeer, LaneServer, LaneDevice, LaneStore, LaneAttempt, LaneCrash}

// Event is one history line placed in a lane.
type Event struct {
	Lane Lane   `json:"lane"`
	Task string `json:"task,omitempty"` // the device task or peer it belongs to
	Text string `json:"text"`
	// Failed marks a failed decryption attempt (Bad MAC, old counter, …).
	Failed bool `json:"failed,omitempty"`
}

// Timeline places the lines of a harness history (Result.History) in lanes,
// each by the reader harness keeps beside its writer (harness/history.go):
// store calls, attempts, op lines (through harness.ParseOp), device
// tasks' and contacts' notes. A line none of them reads goes where its
// shape suggests ("NAME: …" to the peer lane, else the server lane),
// unknown: TestTimelineKnowsEveryLine fails on one in any scenario's run.
func Timeline(history []string) []Event {
	out := make([]Event, 0, len(history))
	for _, l := range history {
		e, _ := classify(l)
		out = append(out, e)
	}
	return out
}

// classify places line l; known is false when no reader of harness's
// formats read it.
func classify(l string) (e Event, known bool) {
	if task, call, ok := harness.ParseStoreCallLine(l); ok {
		return Event{Lane: LaneStore, Task: task, Text: call}, true
	}
	if a, ok := harness.ParseAttemptLine(l); ok {
		_, text, _ := strings.Cut(l, ": ")
		return Event{Lane: LaneAttempt, Task: a.Delivery, Text: text, Failed: !a.OK}, true
	}
	if op, _, _, ok := harness.ParseOpLine(l); ok {
		lane, task := opLane(op)
		return Event{Lane: lane, Task: task, Text: l}, true
	}
	switch kind, name, note, failed := harness.ParseNoteLine(l); kind {
	case harness.TaskLine:
		return Event{Lane: LaneDevice, Task: name, Text: note, Failed: failed}, true
	case harness.ContactLine:
		return Event{Lane: LanePeer, Task: name, Text: note}, true
	}
	if name, text, ok := strings.Cut(l, ": "); ok && name != "" && !strings.Contains(name, " ") {
		return Event{Lane: LanePeer, Task: name, Text: text}, false
	}
	return Event{Lane: LaneServer, Text: l}, false
}

// opLane is the lane of an op line and the device task it starts or
// steps: a contact's send and read in the peer lane; a delivery, a reply
// or a step of a task in the device lane; the server's copy (dup) and its
// LID state in the server lane; whatever resets a state (crash, stop,
// restart, backup, rollback, a contact's reinstall or rekey) in the crash
// lane.
func opLane(op harness.Op) (Lane, string) {
	switch o := op.(type) {
	case harness.SendOp, harness.GroupOp, harness.ReadOp:
		return LanePeer, ""
	case harness.DeliverOp:
		return LaneDevice, o.ID
	case harness.ReplyOp:
		return LaneDevice, o.Msg
	case harness.StepOp, harness.RunOp:
		task, _ := harness.TaskOf(o)
		return LaneDevice, task
	case harness.CrashOp, harness.StopOp, harness.RestartOp, harness.SnapshotOp, harness.RollbackOp,
		harness.ReinstallOp, harness.RekeyOp:
		return LaneCrash, ""
	}
	return LaneServer, "" // dup, wait, the LID ops
}
