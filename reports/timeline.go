package reports

import (
	"strings"

	"github.com/badmac/badmac/fakeserver/waweb/weblog"
	"github.com/badmac/badmac/harness"
)

// Lane is the column of a timeline an event belongs to.
type Lane string

const (
	LanePeer    Lane = "peer"    // a contact encrypts, reads, answers a retry, sends a receipt
	LaneServer  Lane = "server"  // a copy queued again; the loopback server's deliveries, acks, logins
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

// Timeline places the lines of a history (Result.History) in lanes, each
// by the reader kept beside its writer: the fake server's own lines by
// weblog.Parse (fakeserver/waweb/weblog), the harness's formats
// by harness/history.go's readers (store calls, attempts, op lines through
// harness.ParseOp, a gated device's store calls, device tasks' and
// contacts' notes, a device's mode and run lines). A line none of them reads goes where its shape suggests
// ("NAME: …" to the peer lane, else the server lane), unknown:
// TestTimelineKnowsEveryLine fails on one in any device's run.
func Timeline(history []string) []Event {
	out := make([]Event, 0, len(history))
	for _, l := range history {
		e, _ := classify(l)
		out = append(out, e)
	}
	return out
}

// lineReader places a line of one writer's format; ok is false for a
// line in any other format.
type lineReader func(l string) (e Event, ok bool)

// lineReaders are the readers classify tries, in order. The server's
// formats come first: they are whole-line patterns, where a harness note
// reads any "NAME: note" with a known note ("server: retry m1: …" would be
// a contact's); TestTimelineKnowsEveryLine fails when a line of a run is
// read by two.
var lineReaders = []lineReader{serverLine, storeCallLine, gateLine, attemptLine, opLine, noteLine, modeLine, runLine}

// classify places line l; known is false when no reader read it.
func classify(l string) (e Event, known bool) {
	for _, r := range lineReaders {
		if e, ok := r(l); ok {
			return e, true
		}
	}
	if name, text, ok := strings.Cut(l, ": "); ok && name != "" && !strings.Contains(name, " ") {
		return Event{Lane: LanePeer, Task: name, Text: text}, false
	}
	return Event{Lane: LaneServer, Text: l}, false
}

// serverLine places the fake server's own lines: a contact's decrypt of
// the device's message in the attempt lane (a failed one marked), what
// else a contact did (its receipts, retry receipts, sessions, envelope
// form) in the peer lane under its name, the rest in the server lane
// under the message it is about.
func serverLine(l string) (Event, bool) {
	sl, ok := weblog.Parse(l)
	switch {
	case !ok:
		return Event{}, false
	case sl.Kind == weblog.PeerDecrypted || sl.Kind == weblog.PeerFailed || sl.Kind == weblog.PeerNotProtobuf:
		return Event{Lane: LaneAttempt, Task: sl.ID, Text: l, Failed: sl.Failed}, true
	case sl.ByPeer:
		return Event{Lane: LanePeer, Task: sl.Peer, Text: l}, true
	}
	return Event{Lane: LaneServer, Task: sl.ID, Text: l}, true
}

func storeCallLine(l string) (Event, bool) {
	task, call, ok := harness.ParseStoreCallLine(l)
	return Event{Lane: LaneStore, Task: task, Text: call}, ok
}

// gateLine places a gated device's store call (the Baileys devices) in
// the store lane, as the model's store calls.
func gateLine(l string) (Event, bool) {
	task, call, prefix, ok := harness.ParseGateLine(l)
	return Event{Lane: LaneStore, Task: task, Text: prefix + call}, ok
}

func attemptLine(l string) (Event, bool) {
	a, ok := harness.ParseAttemptLine(l)
	if !ok {
		return Event{}, false
	}
	_, text, _ := strings.Cut(l, ": ")
	return Event{Lane: LaneAttempt, Task: a.Delivery, Text: text, Failed: !a.OK}, true
}

func opLine(l string) (Event, bool) {
	op, _, _, ok := harness.ParseOpLine(l)
	if !ok {
		return Event{}, false
	}
	lane, task := opLane(op)
	return Event{Lane: lane, Task: task, Text: l}, true
}

func noteLine(l string) (Event, bool) {
	switch kind, name, note, failed := harness.ParseNoteLine(l); kind {
	case harness.TaskLine:
		return Event{Lane: LaneDevice, Task: name, Text: note, Failed: failed}, true
	case harness.ContactLine:
		return Event{Lane: LanePeer, Task: name, Text: note}, true
	}
	return Event{}, false
}

// modeLine places a device's mode line in the device lane.
func modeLine(l string) (Event, bool) {
	_, _, ok := harness.ParseModeLine(l)
	return Event{Lane: LaneDevice, Text: l}, ok
}

// runLine places what a device says of its whole run (its connection
// closed, the run ended by a refused start) in the device lane.
func runLine(l string) (Event, bool) {
	return Event{Lane: LaneDevice, Text: l}, harness.ParseRunLine(l)
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
