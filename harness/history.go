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
// readers and the loopback server's (weblog.Parse) alone: its tests
// run every scenario on the model and a set on the real client, the procs
// child and the Baileys devices, and fail on a line none of them reads.

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
// ok is false for any other line, a gate line included ("stop: m1 get
// session alice.0" is a step of the stop's, ParseGateLine).
func ParseOpLine(line string) (op Op, note string, drained, ok bool) {
	if _, _, _, gate := ParseGateLine(line); gate {
		return nil, "", false, false
	}
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

// Gate lines. A device driven over the device protocol with gates (the
// Baileys adapter and Baileys' socket, devices/baileys run.step and
// sockRun.step) logs each store call it lets a task make as "TASK CALL",
// after "drain: ", "stop: " or "login: " when the drain, a clean stop or
// the login stepped it. CALL is the gate's devproto.Event.Call as the
// device named it: its first word one of gateCalls, or a pad "(CALL: step
// I of K)" (the reference run's steps standing for a call's writes).

// gatePrefixes are what step a gate line was taken in besides an op's.
var gatePrefixes = []string{drainPrefix, "stop: ", "login: "}

// gateCalls are the first words of the calls the Baileys devices gate:
// the auth state's keys.get, keys.set, keys.clear and saveCreds
// (adapters/baileys/adapter.mjs gated, socket.mjs storeCall), and the
// file and SQL I/O inside them (adapters/baileys/lib/gates.mjs io).
var gateCalls = []string{"get", "set", "clear", "save", "open", "write", "fsync", "append", "rename", "unlink", "rm", "copy", "sql"}

// ParseGateLine reads a gate line: the task, the call and the prefix it
// was stepped under ("" for an op's step); ok is false for any other line.
func ParseGateLine(line string) (task, call, prefix string, ok bool) {
	for _, p := range gatePrefixes {
		if rest, found := strings.CutPrefix(line, p); found {
			line, prefix = rest, p
			break
		}
	}
	task, call, found := strings.Cut(line, " ")
	verb, _, _ := strings.Cut(call, " ")
	pad := strings.HasPrefix(call, "(") && strings.HasSuffix(call, ")") && strings.Contains(call, ": step ")
	if !found || task == "" || strings.Contains(task, ":") || (!pad && !slices.Contains(gateCalls, verb)) {
		return "", "", "", false
	}
	return task, call, prefix, true
}

// Run lines: what a device says of its run as a whole, no op's or task's
// (Baileys' socket, devices/baileys/socketrun.go, writes both through
// these).

// ConnectionClosed is the socket device's line when the server closed its
// connection and the device did not reopen it.
const ConnectionClosed = "connection closed"

// StartRefusedLine ends the history of a run whose store refused to start
// on a restart: the run ended there, n messages not judged.
func StartRefusedLine(n int) string {
	return fmt.Sprintf("start refused: run ended, %d messages not judged", n)
}

// ParseRunLine reads a run line; ok is false for any other line.
func ParseRunLine(line string) (ok bool) {
	if line == ConnectionClosed {
		return true
	}
	var n int
	_, err := fmt.Sscanf(line, "start refused: run ended, %d messages not judged", &n)
	return err == nil && StartRefusedLine(n) == line
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
	// The Baileys devices (devices/baileys run.go, socketrun.go) and
	// Baileys' socket's own notes (adapters/baileys/socket.mjs note).
	"sent (",                        // a reply encrypted ("r1: sent (msg)")
	"no session with ",              // a reply's session fetched from a bundle
	"requeued (never acknowledged)", // a delivery the crash left unacknowledged
	"sendMessage failed: ",          // the socket's send failed (Failed)
	"sent again ",                   // a reply sent again after a restart or a kill ("r1: sent again after the restart")
	"no credentials found: ",        // the socket's store lost or could not read its creds
	"saveCreds failed: ",            // the socket's creds save failed
}

// contactNotes begin the notes a contact device writes (contacts.go: its
// retry receipts and its answers to the device's).
var contactNotes = []string{"retry ", "drops retry ", "no retry receipt for "}

// sendFailed is the note of a failed send, socketSendFailed the socket
// device's.
const (
	sendFailed       = "send failed: "
	socketSendFailed = "sendMessage failed: "
)

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
			return TaskLine, name, note, p == sendFailed || p == socketSendFailed
		}
	}
	for _, p := range contactNotes {
		if strings.HasPrefix(note, p) {
			return ContactLine, name, note, false
		}
	}
	return UnknownLine, "", "", false
}

// Mode lines: a device that logs the mode of its run starts its history
// with "NAME: mode MODE" (the real client, "realclient: mode controlled";
// realclient/device.go modeLine).

// ModeLine is device's mode line for a run in mode m.
func ModeLine(device string, m Mode) string { return device + ": mode " + string(m) }

// ParseModeLine reads a ModeLine back: the device and the mode; ok is
// false for any other line (a mode other than Controlled, Free, Serial).
func ParseModeLine(line string) (device string, m Mode, ok bool) {
	device, rest, found := strings.Cut(line, ": mode ")
	m = Mode(rest)
	if !found || device == "" || strings.Contains(device, " ") || (m != Controlled && m != Free && m != Serial) {
		return "", "", false
	}
	return device, m, true
}
