package baileys

import (
	"maps"
	"slices"
	"strings"
)

// receives follows, for the crash's attribution, what the socket device
// observes of each receive (a task named after the copy it handles: m1,
// m1.2): its store calls and their writes below the store, and the
// attempts the bot recorded for its message. A crash that kills a receive
// after a write of its decrypt took effect and before the bot recorded
// its attempt (Baileys acknowledges a message around its messages.upsert:
// Socket/messages-recv.js handleMessage, 6.17.16 and 7.0.0-rc14) leaves a
// store whose session has moved on and a server that redelivers the copy,
// which then meets an old counter on any store that kept the write:
// harness.Result.KilledUnacked, judged by harness.Judge as lost to the
// crash (docs/verdicts.md), as the model's noteKilled and the real
// client's storedUnhandled do.
//
// A write of the decrypt took effect when a "set" call of the task
// returned (the task went on to a later call), when a write below a set
// call was released (the adapter waits for a released write to end), or
// when the crash keeps a parked write of a set call whole. The device
// does not know which of a call's writes makes the data visible: the
// open of a temporary file counts as a write too (docs/baileys.md, "The
// crash's attribution").
// A receive that is not parked at the kill (waiting for a lock, or done)
// is noted only if it stored before; nothing else is excused.
type receives struct {
	inbound  map[string]bool   // ids of the messages the peers sent
	attempts map[string]int    // message -> attempts the bot recorded
	seen     map[string]int    // task -> its message's attempts when it first parked
	call     map[string]string // task -> its current store call
	released map[string]bool   // task -> its current call was released
	stored   map[string]bool   // task -> a write of a set call of its took effect
	killed   []string          // messages a crash killed after storing, before the attempt
}

func newReceives() *receives {
	return &receives{inbound: map[string]bool{}, attempts: map[string]int{}, seen: map[string]int{},
		call: map[string]string{}, released: map[string]bool{}, stored: map[string]bool{}}
}

// message is the inbound message whose copy task handles ("" for any
// other task: a reply, a resend, the login, a creds save).
func (rc *receives) message(task string) string {
	if strings.Contains(task, "~") {
		return ""
	}
	id, _, _ := strings.Cut(task, ".")
	if !rc.inbound[id] {
		return ""
	}
	return id
}

func isSet(call string) bool { return strings.HasPrefix(call, "set ") }

// sent notes a message a peer sent.
func (rc *receives) sent(id string) { rc.inbound[id] = true }

// attempt notes an attempt the bot recorded (its messages.upsert).
func (rc *receives) attempt(id string) { rc.attempts[id]++ }

// parked notes a gate of task: a store call (io false) or a write below
// its current call.
func (rc *receives) parked(task, call string, io bool) {
	m := rc.message(task)
	if m == "" {
		return
	}
	if _, ok := rc.seen[task]; !ok {
		rc.seen[task] = rc.attempts[m]
	}
	if io {
		return
	}
	if isSet(rc.call[task]) && rc.released[task] {
		rc.stored[task] = true // the set returned: the task made its next call
	}
	rc.call[task], rc.released[task] = call, false
}

// step notes the release of a gate of task: a write released below a set
// call has taken effect once the adapter is quiet again.
func (rc *receives) step(task string, io bool) {
	if rc.message(task) == "" {
		return
	}
	if !io {
		rc.released[task] = true
		return
	}
	if isSet(rc.call[task]) {
		rc.stored[task] = true
	}
}

// crash notes the receives the kill ends after a write of their decrypt
// and before their attempt: keptWhole lists the tasks with a parked write
// of their current call that the crash keeps whole. It returns the
// messages newly noted; every task's record ends with the process.
func (rc *receives) crash(keptWhole map[string]bool) []string {
	var noted []string
	for _, t := range slices.Sorted(maps.Keys(rc.seen)) {
		m := rc.message(t)
		stored := rc.stored[t] || (keptWhole[t] && isSet(rc.call[t]))
		if !stored || rc.attempts[m] > rc.seen[t] || slices.Contains(rc.killed, m) {
			continue
		}
		rc.killed = append(rc.killed, m)
		noted = append(noted, t)
	}
	clear(rc.seen)
	clear(rc.call)
	clear(rc.released)
	clear(rc.stored)
	return noted
}
