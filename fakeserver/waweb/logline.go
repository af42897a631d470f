package waweb

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/badmac/badmac/endpoint"
)

// The server's own log lines (Server.Log, the history of every device on
// the loopback server), written and read here: every line the server
// writes is one of logFormats, written through Server.logLine with that
// format and read back by ParseLogLine with the same format, so a writer
// and its reader cannot drift (TestLogLinesParseBack, and
// TestEveryLogWriterUsesAFormat, which fails on a raw Logf in this
// package). Lines other packages add with Logf (the real client's and the
// socket device's op, step and crash lines) are theirs, read beside their
// writers (harness/history.go).

// LogKind is which of the server's line formats a line is in.
type LogKind string

// The server's line formats, by kind. Each names the message (ID), the
// contact device (Peer) and the retry count (Count) a line is about where
// it has one.
const (
	// Deliveries and the offline queue.
	LogDeliver        LogKind = "deliver"         // a copy sent to the device: "deliver m1 pkmsg count=0"
	LogDeliverPhone   LogKind = "deliver-phone"   // the own phone's stanza sent: "deliver lidsync1 pkmsg"
	LogDeliverQueued  LogKind = "deliver-queued"  // the own phone's stanza sent from the offline queue
	LogQueueOffline   LogKind = "queue-offline"   // a copy kept for the device's next login
	LogQueueRetry     LogKind = "queue-retry"     // a contact's retry receipt kept for the next login
	LogQueueHeld      LogKind = "queue-held"      // a copy held for a deliver op (controlled runs)
	LogQueueAgain     LogKind = "queue-again"     // a copy queued again (a dup op)
	LogHold           LogKind = "hold"            // the device's message held for a read op
	LogOfflineDone    LogKind = "offline-done"    // the end of the offline queue sent
	LogDisconnected   LogKind = "disconnected"    // the device's connection dropped
	LogLogin          LogKind = "login"           // the device logged in
	LogConflict       LogKind = "conflict"        // a second login replaced the connection
	LogExpect         LogKind = "expect"          // the device's message is for several contact devices
	LogPhoneMigration LogKind = "phone-migration" // the own phone's LID migration stanza

	// What the device sends the server.
	LogAck             LogKind = "ack"              // the device acknowledged a copy
	LogAckReceipt      LogKind = "ack-receipt"      // the device acknowledged a contact's receipt
	LogAckNotification LogKind = "ack-notification" // the device acknowledged a notification
	LogAckPhone        LogKind = "ack-phone"        // the device acknowledged the own phone's stanza
	LogReceipt         LogKind = "receipt"          // the device's receipt for a copy
	LogReceiptIgnored  LogKind = "receipt-ignored"  // a receipt for a copy the device did not handle
	LogReceiptPhone    LogKind = "receipt-phone"    // the device's receipt for the own phone's stanza
	LogRetryReceipt    LogKind = "retry-receipt"    // the device's retry receipt: "retry-receipt m1 count=1 keys=false"
	LogFromDevice      LogKind = "from-device"      // a presence or chatstate from the device
	LogPreKeysUp       LogKind = "prekeys-uploaded"
	LogPreKeyFetch     LogKind = "prekey-fetch"
	LogPreKeyNone      LogKind = "prekey-fetch-none"
	LogUsyncLID        LogKind = "usync-lid"

	// Notifications to the device.
	LogNotifyPreKeys    LogKind = "notify-prekeys"
	LogNotifyIdentity   LogKind = "notify-identity"
	LogIdentityOffline  LogKind = "identity-offline"
	LogIdentitySilent   LogKind = "identity-silent"
	LogNotifyMapping    LogKind = "notify-mapping"
	LogMappingOffline   LogKind = "mapping-offline"
	LogPhase            LogKind = "phase" // a user's addressing phase set: the LID op's own text (harness.PhaseOp)
	LogVia              LogKind = "via"   // the envelope form set for a contact device's stanzas: the LID op's text (harness.ViaOp)
	LogPeerDecrypted    LogKind = "peer-decrypted"
	LogPeerFailed       LogKind = "peer-failed"
	LogPeerNotProtobuf  LogKind = "peer-not-protobuf"
	LogPeerRetry        LogKind = "peer-retry-receipt"
	LogPeerNoMoreRetry  LogKind = "peer-no-more-retries"
	LogPeerRebuilt      LogKind = "peer-rebuilt"
	LogPeerRekeyed      LogKind = "peer-rekeyed"
	LogPeerForgot       LogKind = "peer-forgot"
	LogPeerReceipt      LogKind = "peer-receipt"
	LogPeerChatstate    LogKind = "peer-chatstate"
	LogErrRetryUnknown  LogKind = "error-retry-unknown"
	LogErrRetry         LogKind = "error-retry"
	LogErrAck           LogKind = "error-ack"
	LogErrUnknownDevice LogKind = "error-unknown-device"
	LogErrFreshBundle   LogKind = "error-fresh-bundle"
	LogErrAccept        LogKind = "error-accept"
	LogErrHandshake     LogKind = "error-handshake"
	LogErrRead          LogKind = "error-read"
	LogErrDecryptFrame  LogKind = "error-decrypt-frame"
	LogErrUnpack        LogKind = "error-unpack"
	LogErrUnmarshal     LogKind = "error-unmarshal"
	LogErrUnhandled     LogKind = "error-unhandled"
	LogErrUnknownIQ     LogKind = "error-unknown-iq"
	LogErrAnswerIQ      LogKind = "error-answer-iq"
	LogErrPreKeyUpload  LogKind = "error-prekey-upload"
	LogErrPreKeyFetch   LogKind = "error-prekey-fetch"
)

// logFormat is one line format: fmt verbs %s (a word, possibly empty),
// %v (any text), %d (a number), %t (a bool) and %q (a quoted string), and
// what each verb is, in order: "peer" (a contact device, LogLine.Peer),
// "id" (a message or copy, LogLine.ID), "count" (LogLine.Count), "class"
// (a failure class, LogLine.Class, one of endpoint.Classes), "type" (a
// Signal message type, one of messageTypes), or any other name (kept in
// Args only).
type logFormat struct {
	kind   LogKind
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

// logFormats in the order ParseLogLine tries them: where two formats can
// write the same line, the more specific first (TestLogLinesParseBack).
var logFormats = compileLogFormats([]logFormat{
	{kind: LogDeliverQueued, format: "deliver %s (queued)", fields: []string{"id"}},
	{kind: LogDeliver, format: "deliver %s %s count=%d", fields: []string{"id", "type", "count"}},
	{kind: LogDeliverPhone, format: "deliver %s %s", fields: []string{"id", "type"}},
	{kind: LogQueueOffline, format: "queue %s (device offline)", fields: []string{"id"}},
	{kind: LogQueueRetry, format: "queue retry-receipt %s (device offline)", fields: []string{"id"}},
	{kind: LogQueueHeld, format: "queue %s for delivery", fields: []string{"id"}},
	{kind: LogQueueAgain, format: "queue %s again as %s", fields: []string{"id", "copy"}},
	{kind: LogHold, format: "hold %s for %s", fields: []string{"id", "to"}},
	{kind: LogOfflineDone, format: "offline queue done: %d", fields: []string{"n"}},
	{kind: LogDisconnected, format: "disconnected, %d unacknowledged", fields: []string{"n"}},
	{kind: LogLogin, format: "login %s", fields: []string{"device"}},
	{kind: LogConflict, format: "conflict: a second login replaced the connection"},
	{kind: LogExpect, format: "expect %s for %v", fields: []string{"id", "peers"}},
	{kind: LogPhoneMigration, format: "own phone %s: LID migration %s (%s, %d pairs, timestamp %d)", fields: []string{"phone", "id", "type", "pairs", "timestamp"}},

	{kind: LogAck, format: "ack %s error=%v", fields: []string{"id", "error"}},
	{kind: LogAckPhone, format: "ack %s (own phone)", fields: []string{"id"}},
	{kind: LogAckReceipt, format: "ack receipt %s", fields: []string{"id"}},
	{kind: LogAckNotification, format: "ack notification %s", fields: []string{"id"}},
	{kind: LogReceiptPhone, format: "receipt %s type=%q (own phone)", fields: []string{"id", "receipt"}},
	{kind: LogReceiptIgnored, format: "receipt %s type=%q: ignored by the device", fields: []string{"id", "receipt"}},
	{kind: LogReceipt, format: "receipt %s type=%q", fields: []string{"id", "receipt"}},
	{kind: LogPeerReceipt, format: "receipt %s from %s", fields: []string{"id", "peer"}, byPeer: true},
	{kind: LogRetryReceipt, format: "retry-receipt %s count=%d keys=%t", fields: []string{"id", "count", "keys"}},
	{kind: LogFromDevice, format: "%s from device", fields: []string{"tag"}},
	{kind: LogPreKeysUp, format: "prekeys uploaded %s: %d", fields: []string{"device", "n"}},
	{kind: LogPreKeyNone, format: "prekey fetch %s: none", fields: []string{"jid"}},
	{kind: LogPreKeyFetch, format: "prekey fetch %s", fields: []string{"jid"}},
	{kind: LogUsyncLID, format: "usync lid %s = %s", fields: []string{"pn", "lid"}},

	{kind: LogNotifyPreKeys, format: "notify %s: %d prekeys left", fields: []string{"device", "n"}},
	{kind: LogNotifyIdentity, format: "notify identity change of %s", fields: []string{"peer"}},
	{kind: LogIdentityOffline, format: "identity change of %s while the device is offline", fields: []string{"peer"}},
	{kind: LogIdentitySilent, format: "identity change of %s, not notified", fields: []string{"peer"}},
	{kind: LogNotifyMapping, format: "notify mapping %s = %s", fields: []string{"pn", "lid"}},
	{kind: LogMappingOffline, format: "mapping of %s while the device is offline: not sent", fields: []string{"peer"}},
	{kind: LogPhase, format: "phase %s %s", fields: []string{"user", "phase"}},
	{kind: LogVia, format: "via %s %s", fields: []string{"peer", "form"}},

	{kind: LogPeerDecrypted, format: "peer %s: %s %s count=%d ok", fields: []string{"peer", "id", "type", "count"}, byPeer: true},
	{kind: LogPeerFailed, format: "peer %s: %s %s count=%d failed: %s", fields: []string{"peer", "id", "type", "count", "class"}, byPeer: true, failed: true},
	{kind: LogPeerNotProtobuf, format: "peer %s: %s not a message protobuf", fields: []string{"peer", "id"}, byPeer: true, failed: true},
	{kind: LogPeerRetry, format: "peer %s: retry-receipt %s count=%d keys=%t", fields: []string{"peer", "id", "count", "keys"}, byPeer: true},
	{kind: LogPeerNoMoreRetry, format: "peer %s: no more retry receipts for %s", fields: []string{"peer", "id"}, byPeer: true},
	{kind: LogPeerRebuilt, format: "peer %s rebuilt session for %s (%v)", fields: []string{"peer", "id", "why"}, byPeer: true},
	{kind: LogPeerRekeyed, format: "peer %s rekeyed", fields: []string{"peer"}, byPeer: true},
	{kind: LogPeerForgot, format: "peer %s forgot its session with %s", fields: []string{"peer", "device"}, byPeer: true},
	{kind: LogPeerChatstate, format: "chatstate from %s", fields: []string{"peer"}, byPeer: true},

	{kind: LogErrRetryUnknown, format: "server: retry receipt for unknown message %s", fields: []string{"id"}},
	{kind: LogErrRetry, format: "server: retry %s: %v", fields: []string{"id", "error"}},
	{kind: LogErrAck, format: "server: ack %s: %v", fields: []string{"id", "error"}},
	{kind: LogErrUnknownDevice, format: "server: message %s for unknown device %s", fields: []string{"id", "jid"}},
	{kind: LogErrFreshBundle, format: "server: %s: fresh bundle: %v", fields: []string{"peer", "error"}},
	{kind: LogErrAccept, format: "server: websocket accept: %v", fields: []string{"error"}},
	{kind: LogErrHandshake, format: "server: handshake: %v", fields: []string{"error"}},
	{kind: LogErrRead, format: "server: read: %v", fields: []string{"error"}},
	{kind: LogErrDecryptFrame, format: "server: decrypt frame: %v", fields: []string{"error"}},
	{kind: LogErrUnpack, format: "server: unpack: %v", fields: []string{"error"}},
	{kind: LogErrUnmarshal, format: "server: unmarshal: %v", fields: []string{"error"}},
	{kind: LogErrUnhandled, format: "server: unhandled <%s> %v", fields: []string{"tag", "node"}},
	{kind: LogErrUnknownIQ, format: "server: unknown iq answered with error 501: %v", fields: []string{"node"}},
	{kind: LogErrAnswerIQ, format: "server: answer iq %s: %v", fields: []string{"iq", "error"}},
	{kind: LogErrPreKeyUpload, format: "server: prekey upload: %v", fields: []string{"error"}},
	{kind: LogErrPreKeyFetch, format: "server: prekey fetch: <user> without jid"},
})

// logFormatOf is each kind's format.
var logFormatOf = func() map[LogKind]*logFormat {
	m := make(map[LogKind]*logFormat, len(logFormats))
	for i := range logFormats {
		m[logFormats[i].kind] = &logFormats[i]
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

// compileLogFormats makes each format's reader from the format itself;
// a verb other than verbPatterns' or a field count other than the
// format's verbs is a programming error.
func compileLogFormats(fs []logFormat) []logFormat {
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

// formatLogLine is the line of kind k with args, one a verb.
func formatLogLine(k LogKind, args ...any) string {
	f, ok := logFormatOf[k]
	if !ok {
		panic("waweb: unknown log kind " + string(k))
	}
	return fmt.Sprintf(f.format, args...)
}

// logLine appends one line of kind k to the server log.
func (s *Server) logLine(k LogKind, args ...any) { s.Logf("%s", formatLogLine(k, args...)) }

// LogLine is a server log line read back.
type LogLine struct {
	Kind LogKind
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

// ParseLogLine reads a line the server wrote (Server.Log); ok is false for
// any other line, the lines other packages add with Logf included.
func ParseLogLine(line string) (l LogLine, ok bool) {
	for i := range logFormats {
		f := &logFormats[i]
		m := f.re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		l = LogLine{Kind: f.kind, ByPeer: f.byPeer, Failed: f.failed, Args: m[1:]}
		for j, name := range f.fields {
			v := m[j+1]
			if f.verbs[j] == 'q' {
				u, err := strconv.Unquote(v)
				if err != nil {
					return LogLine{}, false
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
	return LogLine{}, false
}
