// Package weblog is the loopback server's log (fakeserver/waweb,
// Server.Log: the start of the history of every device on it) as data:
// one table of line formats, which the server's writers go through
// (waweb's Server.logLine, Format) and Parse reads back, so a writer and
// its reader cannot drift (TestLinesParseBack; TestEveryWriterUsesAFormat
// fails on a waweb Logf past the table). It is a package of its own so
// that what reads a history (reports' timeline) does not compile the
// server and whatsmeow's Client (storetest must not). Lines other
// packages add to the server log with Logf (the real client's and the
// socket device's op, step and crash lines) are theirs, read beside their
// writers (harness/history.go).
package weblog

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/badmac/badmac/endpoint"
)

// Kind is which of the server's line formats a line is in.
type Kind string

// The server's line formats, by kind. Each names the message (ID), the
// contact device (Peer) and the retry count (Count) a line is about where
// it has one.
const (
	// Deliveries and the offline queue.
	Deliver        Kind = "deliver"         // a copy sent to the device: "deliver m1 pkmsg count=0"
	DeliverPhone   Kind = "deliver-phone"   // the own phone's stanza sent: "deliver lidsync1 pkmsg"
	DeliverQueued  Kind = "deliver-queued"  // the own phone's stanza sent from the offline queue
	QueueOffline   Kind = "queue-offline"   // a copy kept for the device's next login
	QueueRetry     Kind = "queue-retry"     // a contact's retry receipt kept for the next login
	QueueHeld      Kind = "queue-held"      // a copy held for a deliver op (controlled runs)
	QueueAgain     Kind = "queue-again"     // a copy queued again (a dup op)
	Hold           Kind = "hold"            // the device's message held for a read op
	OfflineDone    Kind = "offline-done"    // the end of the offline queue sent
	Disconnected   Kind = "disconnected"    // the device's connection dropped
	Login          Kind = "login"           // the device logged in
	Conflict       Kind = "conflict"        // a second login replaced the connection
	Expect         Kind = "expect"          // the device's message is for several contact devices
	PhoneMigration Kind = "phone-migration" // the own phone's LID migration stanza

	// What the device sends the server.
	Ack             Kind = "ack"              // the device acknowledged a copy
	AckReceipt      Kind = "ack-receipt"      // the device acknowledged a contact's receipt
	AckNotification Kind = "ack-notification" // the device acknowledged a notification
	AckPhone        Kind = "ack-phone"        // the device acknowledged the own phone's stanza
	Receipt         Kind = "receipt"          // the device's receipt for a copy
	ReceiptIgnored  Kind = "receipt-ignored"  // a receipt for a copy the device did not handle
	ReceiptPhone    Kind = "receipt-phone"    // the device's receipt for the own phone's stanza
	RetryReceipt    Kind = "retry-receipt"    // the device's retry receipt: "retry-receipt m1 count=1 keys=false"
	FromDevice      Kind = "from-device"      // a presence or chatstate from the device
	PreKeysUp       Kind = "prekeys-uploaded"
	PreKeyFetch     Kind = "prekey-fetch"
	PreKeyNone      Kind = "prekey-fetch-none"
	UsyncLID        Kind = "usync-lid"

	// Notifications to the device.
	NotifyPreKeys    Kind = "notify-prekeys"
	NotifyIdentity   Kind = "notify-identity"
	IdentityOffline  Kind = "identity-offline"
	IdentitySilent   Kind = "identity-silent"
	NotifyMapping    Kind = "notify-mapping"
	MappingOffline   Kind = "mapping-offline"
	Phase            Kind = "phase" // a user's addressing phase set: the LID op's own text (harness.PhaseOp)
	Via              Kind = "via"   // the envelope form set for a contact device's stanzas: the LID op's text (harness.ViaOp)
	PeerDecrypted    Kind = "peer-decrypted"
	PeerFailed       Kind = "peer-failed"
	PeerNotProtobuf  Kind = "peer-not-protobuf"
	PeerRetry        Kind = "peer-retry-receipt"
	PeerNoMoreRetry  Kind = "peer-no-more-retries"
	PeerRebuilt      Kind = "peer-rebuilt"
	PeerRekeyed      Kind = "peer-rekeyed"
	PeerForgot       Kind = "peer-forgot"
	PeerReceipt      Kind = "peer-receipt"
	PeerChatstate    Kind = "peer-chatstate"
	ErrRetryUnknown  Kind = "error-retry-unknown"
	ErrRetry         Kind = "error-retry"
	ErrAck           Kind = "error-ack"
	ErrUnknownDevice Kind = "error-unknown-device"
	ErrFreshBundle   Kind = "error-fresh-bundle"
	ErrAccept        Kind = "error-accept"
	ErrHandshake     Kind = "error-handshake"
	ErrRead          Kind = "error-read"
	ErrDecryptFrame  Kind = "error-decrypt-frame"
	ErrUnpack        Kind = "error-unpack"
	ErrUnmarshal     Kind = "error-unmarshal"
	ErrUnhandled     Kind = "error-unhandled"
	ErrUnknownIQ     Kind = "error-unknown-iq"
	ErrAnswerIQ      Kind = "error-answer-iq"
	ErrPreKeyUpload  Kind = "error-prekey-upload"
	ErrPreKeyFetch   Kind = "error-prekey-fetch"
)

// format is one line format: fmt verbs %s (a word, possibly empty),
// %v (any text), %d (a number), %t (a bool) and %q (a quoted string), and
// what each verb is, in order: "peer" (a contact device, Line.Peer),
// "id" (a message or copy, Line.ID), "count" (Line.Count), "class"
// (a failure class, Line.Class, one of endpoint.Classes), "type" (a
// Signal message type, one of messageTypes), or any other name (kept in
// Args only).
type format struct {
	kind   Kind
	format string
	fields []string
	// byPeer: the line is what a contact device did (its decrypt, its
	// receipt, its session), not the server.
	byPeer bool
	// failed: the line is a contact's decrypt that failed.
	failed bool
	re     *regexp.Regexp
	verbs  []byte // each field's verb
}

// formats in the order Parse tries them: where two formats can
// write the same line, the more specific first (TestLogLinesParseBack).
var formats = compile([]format{
	{kind: DeliverQueued, format: "deliver %s (queued)", fields: []string{"id"}},
	{kind: Deliver, format: "deliver %s %s count=%d", fields: []string{"id", "type", "count"}},
	{kind: DeliverPhone, format: "deliver %s %s", fields: []string{"id", "type"}},
	{kind: QueueOffline, format: "queue %s (device offline)", fields: []string{"id"}},
	{kind: QueueRetry, format: "queue retry-receipt %s (device offline)", fields: []string{"id"}},
	{kind: QueueHeld, format: "queue %s for delivery", fields: []string{"id"}},
	{kind: QueueAgain, format: "queue %s again as %s", fields: []string{"id", "copy"}},
	{kind: Hold, format: "hold %s for %s", fields: []string{"id", "to"}},
	{kind: OfflineDone, format: "offline queue done: %d", fields: []string{"n"}},
	{kind: Disconnected, format: "disconnected, %d unacknowledged", fields: []string{"n"}},
	{kind: Login, format: "login %s", fields: []string{"device"}},
	{kind: Conflict, format: "conflict: a second login replaced the connection"},
	{kind: Expect, format: "expect %s for %v", fields: []string{"id", "peers"}},
	{kind: PhoneMigration, format: "own phone %s: LID migration %s (%s, %d pairs, timestamp %d)", fields: []string{"phone", "id", "type", "pairs", "timestamp"}},

	{kind: Ack, format: "ack %s error=%v", fields: []string{"id", "error"}},
	{kind: AckPhone, format: "ack %s (own phone)", fields: []string{"id"}},
	{kind: AckReceipt, format: "ack receipt %s", fields: []string{"id"}},
	{kind: AckNotification, format: "ack notification %s", fields: []string{"id"}},
	{kind: ReceiptPhone, format: "receipt %s type=%q (own phone)", fields: []string{"id", "receipt"}},
	{kind: ReceiptIgnored, format: "receipt %s type=%q: ignored by the device", fields: []string{"id", "receipt"}},
	{kind: Receipt, format: "receipt %s type=%q", fields: []string{"id", "receipt"}},
	{kind: PeerReceipt, format: "receipt %s from %s", fields: []string{"id", "peer"}, byPeer: true},
	{kind: RetryReceipt, format: "retry-receipt %s count=%d keys=%t", fields: []string{"id", "count", "keys"}},
	{kind: FromDevice, format: "%s from device", fields: []string{"tag"}},
	{kind: PreKeysUp, format: "prekeys uploaded %s: %d", fields: []string{"device", "n"}},
	{kind: PreKeyNone, format: "prekey fetch %s: none", fields: []string{"jid"}},
	{kind: PreKeyFetch, format: "prekey fetch %s", fields: []string{"jid"}},
	{kind: UsyncLID, format: "usync lid %s = %s", fields: []string{"pn", "lid"}},

	{kind: NotifyPreKeys, format: "notify %s: %d prekeys left", fields: []string{"device", "n"}},
	{kind: NotifyIdentity, format: "notify identity change of %s", fields: []string{"peer"}},
	{kind: IdentityOffline, format: "identity change of %s while the device is offline", fields: []string{"peer"}},
	{kind: IdentitySilent, format: "identity change of %s, not notified", fields: []string{"peer"}},
	{kind: NotifyMapping, format: "notify mapping %s = %s", fields: []string{"pn", "lid"}},
	{kind: MappingOffline, format: "mapping of %s while the device is offline: not sent", fields: []string{"peer"}},
	{kind: Phase, format: "phase %s %s", fields: []string{"user", "phase"}},
	{kind: Via, format: "via %s %s", fields: []string{"peer", "form"}},

	{kind: PeerDecrypted, format: "peer %s: %s %s count=%d ok", fields: []string{"peer", "id", "type", "count"}, byPeer: true},
	{kind: PeerFailed, format: "peer %s: %s %s count=%d failed: %s", fields: []string{"peer", "id", "type", "count", "class"}, byPeer: true, failed: true},
	{kind: PeerNotProtobuf, format: "peer %s: %s not a message protobuf", fields: []string{"peer", "id"}, byPeer: true, failed: true},
	{kind: PeerRetry, format: "peer %s: retry-receipt %s count=%d keys=%t", fields: []string{"peer", "id", "count", "keys"}, byPeer: true},
	{kind: PeerNoMoreRetry, format: "peer %s: no more retry receipts for %s", fields: []string{"peer", "id"}, byPeer: true},
	{kind: PeerRebuilt, format: "peer %s rebuilt session for %s (%v)", fields: []string{"peer", "id", "why"}, byPeer: true},
	{kind: PeerRekeyed, format: "peer %s rekeyed", fields: []string{"peer"}, byPeer: true},
	{kind: PeerForgot, format: "peer %s forgot its session with %s", fields: []string{"peer", "device"}, byPeer: true},
	{kind: PeerChatstate, format: "chatstate from %s", fields: []string{"peer"}, byPeer: true},

	{kind: ErrRetryUnknown, format: "server: retry receipt for unknown message %s", fields: []string{"id"}},
	{kind: ErrRetry, format: "server: retry %s: %v", fields: []string{"id", "error"}},
	{kind: ErrAck, format: "server: ack %s: %v", fields: []string{"id", "error"}},
	{kind: ErrUnknownDevice, format: "server: message %s for unknown device %s", fields: []string{"id", "jid"}},
	{kind: ErrFreshBundle, format: "server: %s: fresh bundle: %v", fields: []string{"peer", "error"}},
	{kind: ErrAccept, format: "server: websocket accept: %v", fields: []string{"error"}},
	{kind: ErrHandshake, format: "server: handshake: %v", fields: []string{"error"}},
	{kind: ErrRead, format: "server: read: %v", fields: []string{"error"}},
	{kind: ErrDecryptFrame, format: "server: decrypt frame: %v", fields: []string{"error"}},
	{kind: ErrUnpack, format: "server: unpack: %v", fields: []string{"error"}},
	{kind: ErrUnmarshal, format: "server: unmarshal: %v", fields: []string{"error"}},
	{kind: ErrUnhandled, format: "server: unhandled <%s> %v", fields: []string{"tag", "node"}},
	{kind: ErrUnknownIQ, format: "server: unknown iq answered with error 501: %v", fields: []string{"node"}},
	{kind: ErrAnswerIQ, format: "server: answer iq %s: %v", fields: []string{"iq", "error"}},
	{kind: ErrPreKeyUpload, format: "server: prekey upload: %v", fields: []string{"error"}},
	{kind: ErrPreKeyFetch, format: "server: prekey fetch: <user> without jid"},
})

// formatOf is each kind's format.
var formatOf = func() map[Kind]*format {
	m := make(map[Kind]*format, len(formats))
	for i := range formats {
		m[formats[i].kind] = &formats[i]
	}
	return m
}()

// verbPatterns are what each verb a format may use matches.
var verbPatterns = map[byte]string{
	's': `(\S*)`,
	'v': `(.*?)`,
	'd': `(-?[0-9]+)`,
	't': `(true|false)`,
	'q': `("(?:[^"\\]|\\.)*")`,
}

// messageTypes are the Signal message types a "type" field is one of.
var messageTypes = []string{endpoint.PkMsg, endpoint.Msg, endpoint.SkMsg}

// vocabulary is what field i of fields may be, when a %s, if it has a
// fixed set of words: a message type or a failure class.
func vocabulary(fields []string, i int) []string {
	if i >= len(fields) {
		return nil
	}
	switch fields[i] {
	case "type":
		return messageTypes
	case "class":
		var out []string
		for _, c := range endpoint.Classes {
			out = append(out, string(c))
		}
		return out
	}
	return nil
}

// compile makes each format's reader from the format itself;
// a verb other than verbPatterns' or a field count other than the
// format's verbs is a programming error.
func compile(fs []format) []format {
	for i := range fs {
		f := &fs[i]
		var re strings.Builder
		re.WriteString("^")
		lit := f.format
		for {
			j := strings.IndexByte(lit, '%')
			if j < 0 {
				break
			}
			pat, ok := verbPatterns[lit[j+1]]
			if !ok {
				panic(fmt.Sprintf("waweb: log format %q: verb %%%c", f.format, lit[j+1]))
			}
			if v := vocabulary(f.fields, len(f.verbs)); v != nil && lit[j+1] == 's' {
				pat = "(" + strings.Join(v, "|") + ")"
			}
			re.WriteString(regexp.QuoteMeta(lit[:j]) + pat)
			f.verbs = append(f.verbs, lit[j+1])
			lit = lit[j+2:]
		}
		re.WriteString(regexp.QuoteMeta(lit) + "$")
		if len(f.verbs) != len(f.fields) {
			panic(fmt.Sprintf("waweb: log format %q: %d verbs, %d fields", f.format, len(f.verbs), len(f.fields)))
		}
		f.re = regexp.MustCompile(re.String())
	}
	return fs
}

// Format is the line of kind k with args, one a verb.
func Format(k Kind, args ...any) string {
	f, ok := formatOf[k]
	if !ok {
		panic("waweb: unknown log kind " + string(k))
	}
	return fmt.Sprintf(f.format, args...)
}

// Line is a server log line read back.
type Line struct {
	Kind Kind
	// Peer is the contact device the line is about ("alice.0"), ID the
	// message or copy ("m1", "m1.2", "r3"), Count a retry count; each
	// empty or 0 when the line has none.
	Peer  string
	ID    string
	Count int
	// Class is the failure class of a contact's failed decrypt.
	Class string
	// ByPeer: what a contact device did (its decrypt, receipt, retry
	// receipt, session), not the server.
	ByPeer bool
	// Failed: a contact's decrypt that failed.
	Failed bool
	// Args are the line's fields in order, as written (%q ones unquoted).
	Args []string
}

// Parse reads a line the server wrote (Server.Log); ok is false for
// any other line, the lines other packages add with Logf included.
func Parse(line string) (l Line, ok bool) {
	for i := range formats {
		f := &formats[i]
		m := f.re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		l = Line{Kind: f.kind, ByPeer: f.byPeer, Failed: f.failed, Args: m[1:]}
		for j, name := range f.fields {
			v := m[j+1]
			if f.verbs[j] == 'q' {
				u, err := strconv.Unquote(v)
				if err != nil {
					return Line{}, false
				}
				l.Args[j] = u
				continue
			}
			switch name {
			case "peer":
				l.Peer = v
			case "id":
				l.ID = v
			case "class":
				l.Class = v
			case "count":
				l.Count, _ = strconv.Atoi(v)
			}
		}
		return l, true
	}
	return Line{}, false
}
