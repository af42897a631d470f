package harness

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/badmac/badmac/endpoint"
)

// The history's line formats (Result.History), read back here next to
// the code that writes them, so that a writer's wording and its reader
// change together. reports' timeline places a history in lanes with these
// readers alone (TestTimelineKnowsEveryLine runs every scenario and fails
// on a line none of them reads).

// storeCalls are the store calls endpoint.Probe traces, by name: its
// methods that take a context first, whose names it writes as the first
// word of the call ("PutSession alice:0"; endpoint/probe.go).
var storeCalls = func() []string {
	var out []string
	t := reflect.TypeFor[*endpoint.Probe]()
	ctx := reflect.TypeFor[context.Context]()
	for i := range t.NumMethod() {
		if m := t.Method(i).Type; m.NumIn() > 1 && m.In(1) == ctx {
			out = append(out, t.Method(i).Name)
		}
	}
	return out
}()

// StoreCalls are the names of the store calls the probe traces, sorted:
// the second word of a store-call line "TASK Call args" (Run's trace).
func StoreCalls() []string { return slices.Clone(storeCalls) }

// ParseStoreCallLine reads a store-call line "TASK[@I] Call args": the
// task and the call with its arguments; ok is false for any other line.
func ParseStoreCallLine(line string) (task, call string, ok bool) {
	task, call, _ = strings.Cut(line, " ")
	name, _, _ := strings.Cut(call, " ")
	if task == "" || !slices.Contains(storeCalls, name) {
		return "", "", false
	}
	return task, call, true
}

// wrongPlaintext marks an attempt that decrypted to another message.
const wrongPlaintext = "ok WRONG PLAINTEXT"

// AttemptLine is the history line of a decryption attempt (at the device
// or a contact): "ID: ok", "ID: ok WRONG PLAINTEXT" or "ID: Class (error)".
func AttemptLine(a Attempt) string {
	switch {
	case a.OK && a.Wrong:
		return a.Delivery + ": " + wrongPlaintext
	case a.OK:
		return a.Delivery + ": ok"
	}
	return fmt.Sprintf("%s: %s (%s)", a.Delivery, a.Class, a.Err)
}

// ParseAttemptLine reads an AttemptLine back: the delivery, whether it
// decrypted (and to the wrong plaintext), the failure's class and error;
// ok is false for any other line.
func ParseAttemptLine(line string) (a Attempt, ok bool) {
	id, rest, found := strings.Cut(line, ": ")
	if !found || id == "" || strings.Contains(id, " ") {
		return Attempt{}, false
	}
	a.Delivery = id
	switch rest {
	case "ok":
		a.OK = true
		return a, true
	case wrongPlaintext:
		a.OK, a.Wrong = true, true
		return a, true
	}
	class, msg, found := strings.Cut(rest, " (")
	if !found || !strings.HasSuffix(msg, ")") || !slices.Contains(endpoint.Classes, endpoint.Class(class)) {
		return Attempt{}, false
	}
	a.Class, a.Err = endpoint.Class(class), strings.TrimSuffix(msg, ")")
	return a, true
}

// Op lines. An op that did something is logged as its text (Op.String),
// alone ("deliver m1") or followed by ": " and what it did ("dup m1:
// queued m1.2", "restart: credentials intact"); a drain logs the op it
// takes after "drain: " ("drain: deliver m4"); a device on the loopback
// server logs each op it applies after "op " ("op send alice.0 m1"); a crash names its mode
// quoted (crashLine), or, on the real client, what was parked (crashWith);
// a restart the store refused is "restart refused:
// why" (restartRefused).

// drainPrefix starts the line of an op a run's drain takes.
const drainPrefix = "drain: "

// deviceOpPrefix starts the line of an op as the devices on the loopback
// server log each op they apply, before what it did ("op deliver m1";
// realclient/device.go and devices/baileys/socketrun.go, run.apply).
const deviceOpPrefix = "op "

// restartRefused starts the line of a restart the store refused.
const restartRefused = "restart refused"

// crashWith starts the real client's crash line, which names what its
// goroutines were parked at ("crash with nothing parked"; realclient/device.go
// run.crash).
const crashWith = "crash with "

// crashLine is the line of a crash with mode and what it hit.
func crashLine(mode, what string) string { return fmt.Sprintf("crash %q: %s", mode, what) }

// ParseOpLine reads an op line: the op (ParseOp, the one parser), what
// the line says it did (note, "" for none) and whether a drain took it;
// ok is false for any other line.
func ParseOpLine(line string) (op Op, note string, drained, ok bool) {
	if rest, found := strings.CutPrefix(line, drainPrefix); found {
		line, drained = rest, true
	} else if rest, found := strings.CutPrefix(line, deviceOpPrefix); found {
		line = rest
	}
	if rest, found := strings.CutPrefix(line, crashWith); found {
		return CrashOp{}, "with " + rest, drained, true
	}
	head, note, _ := strings.Cut(line, ": ")
	switch {
	case head == restartRefused:
		head, note = "restart", "refused: "+note
	case strings.HasPrefix(head, `crash "`):
		mode, err := strconv.Unquote(head[len("crash "):])
		if err != nil {
			return nil, "", false, false
		}
		head = CrashOp{Mode: mode}.String()
	}
	op, err := ParseOp(head)
	if err != nil {
		return nil, "", false, false
	}
	return op, note, drained, true
}

// Task and contact lines: "NAME: note", NAME a device task (named after
// its delivery or reply) or a contact device ("alice.0"), the note one of
// the forms below.

// taskNotes begin the notes a device task writes on its own line
// (model.go; procs/harnessdev.go writes the same for its child).
var taskNotes = []string{
	"send failed: ",                            // a send that failed (Failed)
	"fetching a bundle: ",                      // the send's bundle fetch failed
	"recreating the session (",                 // a retry receipt's answer
	"retry receipt ",                           // "retry receipt N dropped", "retry receipt without keys: …"
	"no retry receipt (count ",                 // the device sends no more receipts
	"answered from the decrypted-event buffer", // a redelivery answered without a decrypt
	"clearing the buffered plaintext: ",        // the buffer's clear failed
}

// contactNotes begin the notes a contact device writes (contacts.go: its
// retry receipts and its answers to the device's).
var contactNotes = []string{"retry ", "drops retry ", "no retry receipt for "}

// sendFailed is the note of a failed send.
const sendFailed = "send failed: "

// LineKind is which writer's format a "NAME: note" line is in.
type LineKind int

const (
	UnknownLine LineKind = iota // none of the formats here
	TaskLine                    // a device task's note (taskNotes)
	ContactLine                 // a contact device's note (contactNotes)
)

// ParseNoteLine reads a "NAME: note" line of a device task or a contact:
// which (kind), the name and the note; failed is a failed send.
func ParseNoteLine(line string) (kind LineKind, name, note string, failed bool) {
	name, note, found := strings.Cut(line, ": ")
	if !found || name == "" || strings.Contains(name, " ") {
		return UnknownLine, "", "", false
	}
	for _, p := range taskNotes {
		if strings.HasPrefix(note, p) {
			return TaskLine, name, note, p == sendFailed
		}
	}
	for _, p := range contactNotes {
		if strings.HasPrefix(note, p) {
			return ContactLine, name, note, false
		}
	}
	return UnknownLine, "", "", false
}
