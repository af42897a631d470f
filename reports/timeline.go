package reports

import (
	"strings"
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

// storeCalls are the first words of the store calls the probe traces.
var storeCalls = map[string]bool{}

func init() {
	for _, c := range []string{"PutIdentity", "DeleteAllIdentities", "DeleteIdentity", "IsTrustedIdentity",
		"GetSession", "HasSession", "GetManySessions", "PutSession", "PutManySessions", "DeleteAllSessions",
		"DeleteSession", "MigratePNToLID", "GetOrGenPreKeys", "GenOnePreKey", "GetPreKey", "RemovePreKey",
		"MarkPreKeysAsUploaded", "UploadedPreKeyCount", "PutSenderKey", "GetSenderKey"} {
		storeCalls[c] = true
	}
}

// Timeline places the lines of a harness history (Result.History) in lanes.
// It reads the harness's history format: "TASK Call args" for store calls,
// "ID: ok" or "ID: Class (error)" for attempts, op lines for the driver.
func Timeline(history []string) []Event {
	out := make([]Event, 0, len(history))
	for _, l := range history {
		out = append(out, classify(l))
	}
	return out
}

func classify(l string) Event {
	f := strings.Fields(l)
	if len(f) == 0 {
		return Event{Lane: LaneServer, Text: l}
	}
	head := strings.TrimSuffix(f[0], ":")
	switch {
	case len(f) >= 2 && storeCalls[f[1]]:
		return Event{Lane: LaneStore, Task: f[0], Text: strings.Join(f[1:], " ")}
	case f[0] == "crash" || f[0] == "restart" || f[0] == "restart:" || f[0] == "snapshot" || f[0] == "snapshot:" ||
		f[0] == "rollback" || f[0] == "rollback:" || f[0] == "reinstall":
		return Event{Lane: LaneCrash, Text: l}
	case f[0] == "send" || f[0] == "group" || f[0] == "read" || f[0] == "drain:" && len(f) > 1 && f[1] == "read":
		return Event{Lane: LanePeer, Text: l}
	case (f[0] == "deliver" || f[0] == "reply") && len(f) > 1:
		task := f[1]
		if f[0] == "reply" && len(f) > 2 {
			task = f[2]
		}
		return Event{Lane: LaneDevice, Task: task, Text: l}
	case f[0] == "drain:" && len(f) > 2 && f[1] == "deliver":
		return Event{Lane: LaneDevice, Task: f[2], Text: l}
	case f[0] == "dup" || f[0] == "drain:":
		return Event{Lane: LaneServer, Text: l}
	case len(f) >= 2 && strings.HasSuffix(f[0], ":") && f[1] == "ok":
		return Event{Lane: LaneAttempt, Task: head, Text: strings.Join(f[1:], " ")}
	case len(f) >= 2 && strings.HasSuffix(f[0], ":") && isClass(f[1]):
		return Event{Lane: LaneAttempt, Task: head, Text: strings.Join(f[1:], " "), Failed: true}
	case len(f) >= 3 && strings.HasSuffix(f[0], ":") && f[1] == "send" && f[2] == "failed:":
		return Event{Lane: LaneDevice, Task: head, Text: strings.Join(f[1:], " "), Failed: true}
	case len(f) >= 3 && strings.HasSuffix(f[0], ":") && f[1] == "retry" && f[2] == "receipt:":
		return Event{Lane: LaneDevice, Task: head, Text: strings.Join(f[1:], " ")}
	case strings.HasSuffix(f[0], ":"):
		// A peer answering a retry receipt, giving up, or sending its own.
		return Event{Lane: LanePeer, Task: head, Text: strings.Join(f[1:], " ")}
	}
	return Event{Lane: LaneServer, Text: l}
}

func isClass(s string) bool {
	switch s {
	case "BadMAC", "OldCounter", "NoSession", "InvalidPreKey", "UntrustedIdentity", "NoSenderKey", "StoreError", "Other":
		return true
	}
	return false
}
