// Package devproto is the device protocol: the harness drives a device under
// test that lives in another process (any language) over its stdin and
// stdout, one JSON object a line (docs/device-protocol.md). The device greets
// with a Hello line; then every Request gets exactly one Reply, in turn.
// A reply carries the Events of the request: the device's tasks that reached
// a store call (a gate: the task waits there until the harness steps it) and
// the tasks that finished. Because every store call waits for the harness,
// the harness decides every interleaving and a schedule replays.
//
// Every line is validated; a device that sends a malformed line, exits, or
// stays silent past the timeout is an error naming the request, never a hang.
package devproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Version is the protocol's name and version, the Hello line's "hello".
const Version = "badmac device v1"

// Request ops.
const (
	OpProvision = "provision" // first start: fresh credentials and Prekeys one-time prekeys, saved
	OpLoad      = "load"      // start after a crash: the credentials on disk
	OpRestart   = "restart"   // clean restart in the same process: tasks dropped, caches emptied, state reloaded
	OpReset     = "reset"     // forget everything: a new, empty device in Dir with Variant and Seed (a new schedule)
	OpPreKey    = "prekey"    // one fresh one-time prekey, saved (a retry receipt's)
	OpState     = "state"     // credentials, store writes so far, parked gates, live tasks
	OpDecrypt   = "decrypt"   // start task Task: decrypt CT (Kind pkmsg or msg) from Peer; PT comes back unpadded
	OpEncrypt   = "encrypt"   // start task Task: pad and encrypt PT to Peer (building the session from Bundle first if given)
	OpStep      = "step"      // let the task parked at Gate make its store call and run to its next gate or its end
	OpTear      = "tear"      // crash inside the parked creds save at Gate: a prefix (Fraction) of the file is written, the device dies

	// The socket device (Baileys' own makeWASocket against the fake
	// server, docs/device-protocol.md "The socket device"). Every reply
	// carries Sent, Recv, Timer, Now and Open.
	OpOpen   = "open"   // the auth state (Auth#fn on Dir) and a socket to URL, trusting Root; first start when Provision
	OpAuto   = "auto"   // store calls release at once (On) or wait for steps
	OpFrames = "frames" // let Baileys read the server's frames up to Upto (Names: the harness's names of the message stanzas among them)
	OpReply  = "reply"  // start task Task: sendMessage(JID, Text) with id MsgID
	OpTick   = "tick"   // move the virtual clock to To (or the first timer before it) and fire what is due
	OpCrash  = "crash"  // keep (k), tear (g) or drop (d) each parked write as Modes says, then die by SIGKILL
	// OpKeep is a kill's first half: Modes applied as by OpCrash, the kept
	// writes' store calls run on to their next write or their end; Parked
	// are the tasks whose call did not end. An OpCrash without Modes follows.
	OpKeep = "keep"
	OpStop = "stop" // a clean shutdown: the socket ends, the store's close runs
)

// Hello is the device's first line.
type Hello struct {
	V       int    `json:"v"`
	Hello   string `json:"hello"`
	Device  string `json:"device"`
	Variant string `json:"variant"`
}

// Request is one line to the device.
type Request struct {
	V        int     `json:"v"`
	ID       int     `json:"id"`
	Op       string  `json:"op"`
	Task     string  `json:"task,omitempty"`
	Peer     string  `json:"peer,omitempty"` // contact user
	PeerDev  uint16  `json:"peer_dev,omitempty"`
	Kind     string  `json:"kind,omitempty"` // pkmsg or msg
	CT       []byte  `json:"ct,omitempty"`
	PT       []byte  `json:"pt,omitempty"`
	Bundle   *Bundle `json:"bundle,omitempty"`
	Gate     string  `json:"gate,omitempty"`
	PreKeys  int     `json:"prekeys,omitempty"`
	Fraction float64 `json:"fraction,omitempty"`
	Dir      string  `json:"dir,omitempty"`
	Variant  string  `json:"variant,omitempty"`
	Seed     string  `json:"seed,omitempty"` // decimal, for languages without 64-bit integers
	// The socket device's fields.
	Auth      string   `json:"auth,omitempty"`  // the auth state: MODULE#FUNCTION, or empty for useMultiFileAuthState
	Cache     bool     `json:"cache,omitempty"` // behind makeCacheableSignalKeyStore
	Serial    bool     `json:"serial,omitempty"`
	URL       string   `json:"url,omitempty"`
	Root      []byte   `json:"root,omitempty"`
	JID       string   `json:"jid,omitempty"`
	Text      string   `json:"text,omitempty"`
	MsgID     string   `json:"msgid,omitempty"`
	Provision bool     `json:"provision,omitempty"`
	On        bool     `json:"on,omitempty"`
	Upto      int      `json:"upto,omitempty"`
	Names     []string `json:"names,omitempty"`
	To        int64    `json:"to,omitempty"`
	Modes     string   `json:"modes,omitempty"`
	// Reference (on reset) makes the run a reference run: the store's own
	// writes run at once and each store call of a task waits for as many
	// steps first as Pads (on open: that login's, per task, in call order
	// since the open) say, then takes effect whole.
	Reference bool             `json:"reference,omitempty"`
	Pads      map[string][]int `json:"pads,omitempty"`
	// Commit (a reference run's crash) lists, per task, the store calls
	// (indices into that task's pads) the candidate's crash completed: each
	// takes effect whole before the kill.
	Commit map[string][]int `json:"commit,omitempty"`
	// The whatsmeow child's fields (`badmac device`, package procs;
	// docs/device-protocol.md "The whatsmeow child"). Its tasks run whole
	// inside their request (a decrypt's or an encrypt's reply carries the
	// task's end), or with -gates stop at gates as every device's do (the
	// reply fields of a task come with its end, on a step's reply).
	//
	// Msg is the message id; Count the delivery's retry count (decrypt)
	// or the retry receipt's (a Retry encrypt).
	Msg   string `json:"msg,omitempty"`
	Count int    `json:"count,omitempty"`
	// Retry: the encrypt answers a retry receipt (whatsmeow's
	// handleRetryReceipt: no session cache); Fetched: it comes back with
	// the bundle the harness fetched after need_bundle (the receipt was
	// admitted already).
	Retry   bool `json:"retry,omitempty"`
	Fetched bool `json:"fetched,omitempty"`
	// Rules: answer by the rules the harness's model follows
	// (docs/design.md §4.1): a Retry encrypt admits the receipt and
	// decides on recreating the session; the decrypted-event buffer's
	// plaintext is cleared once handled.
	Rules bool `json:"rules,omitempty"`
	// Group messages: Kind skmsg with the group's id, and the DM part
	// carrying the sender key distribution (DMKind, DMCT).
	Group  string `json:"group,omitempty"`
	DMKind string `json:"dm_kind,omitempty"`
	DMCT   []byte `json:"dm_ct,omitempty"`
	// IDs (state) asks which of these one-time prekeys the store still
	// holds: the reply's PreKeys.
	IDs []uint32 `json:"ids,omitempty"`
	// StopAt > 0 stops the device when step StopAt of this decrypt or
	// encrypt begins (step s: the start of its s-th store call; the step
	// after its last call: just before it answers): it answers Stopped
	// and waits for the harness's SIGKILL.
	StopAt int `json:"stop_at,omitempty"`
}

// Reply is the device's answer to one Request.
type Reply struct {
	V       int      `json:"v"`
	ID      int      `json:"id"`
	OK      bool     `json:"ok"`
	Err     string   `json:"err,omitempty"`
	Creds   *Creds   `json:"creds,omitempty"`
	PreKeys []PreKey `json:"prekeys,omitempty"`
	PreKey  *PreKey  `json:"prekey,omitempty"`
	Writes  int      `json:"writes,omitempty"`
	Parked  []string `json:"parked,omitempty"`
	Tasks   []string `json:"tasks,omitempty"`
	Events  []Event  `json:"events"`
	// The socket device's status after every request: websocket messages
	// sent and received on the current connection, milliseconds to the
	// next virtual timer (-1: none), the virtual clock (ms since the
	// start), whether the connection is open; after open, whether the
	// store refused to start (why) and whether it had no credentials.
	Sent    int    `json:"sent,omitempty"`
	Recv    int    `json:"recv,omitempty"`
	Timer   int64  `json:"timer,omitempty"`
	Now     int64  `json:"now,omitempty"`
	Open    bool   `json:"open,omitempty"`
	Refused string `json:"refused,omitempty"`
	Fresh   bool   `json:"fresh,omitempty"`
	// The whatsmeow child's (docs/device-protocol.md "The whatsmeow
	// child"). Calls: the store calls this request made (its steps).
	// Stopped: the request reached its StopAt step, Step, with Writes
	// store writes done, and the process waits to be killed (nothing else
	// is set). Receipt: the retry receipt a failed decrypt sends (its
	// count), PreKey its keys when it carries them. Dropped: a Retry
	// encrypt whose receipt was not admitted (no task ran). Reason: why a
	// need_bundle end recreates the session. Note: a line for the
	// history.
	Calls   int    `json:"calls,omitempty"`
	Stopped bool   `json:"stopped,omitempty"`
	Step    int    `json:"step,omitempty"`
	Receipt int    `json:"receipt,omitempty"`
	Dropped bool   `json:"dropped,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Event is a task reaching a gate, or a task's end.
type Event struct {
	Task string `json:"task"`
	// A gate: the task waits before store call Call ("get session alice.0").
	Gate string `json:"gate,omitempty"`
	Call string `json:"call,omitempty"`
	// The end: OK with PT (decrypt) or Kind and CT (encrypt); or failed with
	// Class (badmac's failure classes) and Err.
	Done       bool   `json:"done,omitempty"`
	OK         bool   `json:"ok,omitempty"`
	PT         []byte `json:"pt,omitempty"`
	Kind       string `json:"kind,omitempty"`
	CT         []byte `json:"ct,omitempty"`
	Class      string `json:"class,omitempty"`
	Err        string `json:"err,omitempty"`
	NeedBundle bool   `json:"need_bundle,omitempty"`
	// The socket device: a reply's send ended (Sent, or failed); an
	// Attempt at decrypting message Attempt (the bot's messages.upsert:
	// the text, or Baileys' CIPHERTEXT stub with Class); a Note for the
	// history.
	Sent    bool   `json:"sent,omitempty"`
	Write   bool   `json:"write,omitempty"` // a gate before a write a crash can keep, drop or tear
	Tear    bool   `json:"tear,omitempty"`  // a write a crash can tear (mode g writes a prefix); without it, g keeps it whole
	IO      bool   `json:"io,omitempty"`    // a gate below the store (a write, a statement), not a call into it
	Attempt string `json:"attempt,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Creds are the device's public credentials (keys without their type byte).
type Creds struct {
	Reg      uint32 `json:"reg"`
	Identity []byte `json:"identity"`
	SPKID    uint32 `json:"spk_id"`
	SPK      []byte `json:"spk"`
	Sig      []byte `json:"sig"`
}

// PreKey is a one-time prekey's public half.
type PreKey struct {
	ID  uint32 `json:"id"`
	Pub []byte `json:"pub"`
}

// Bundle is a contact's prekey bundle, for a session built from a retry
// receipt's keys.
type Bundle struct {
	Reg      uint32  `json:"reg"`
	Dev      uint32  `json:"dev"`
	PreKeyID *uint32 `json:"pk_id,omitempty"`
	PreKey   []byte  `json:"pk,omitempty"`
	SPKID    uint32  `json:"spk_id"`
	SPK      []byte  `json:"spk"`
	Sig      []byte  `json:"sig"`
	Identity []byte  `json:"identity"`
}

// classes are the failure classes a device may report (docs/design.md §5).
var classes = map[string]bool{"BadMAC": true, "OldCounter": true, "NoSession": true, "InvalidPreKey": true,
	"UntrustedIdentity": true, "NoSenderKey": true, "StoreError": true, "Other": true}

// ParseHello decodes and checks the first line.
func ParseHello(line []byte) (Hello, error) {
	var h Hello
	if err := strictUnmarshal(line, &h); err != nil {
		return h, fmt.Errorf("hello line: %w", err)
	}
	if h.V != 1 || h.Hello != Version {
		return h, fmt.Errorf("hello line: want v 1 %q, got v %d %q", Version, h.V, h.Hello)
	}
	if h.Device == "" {
		return h, errors.New("hello line: no device name")
	}
	return h, nil
}

// ParseReply decodes and checks a reply to req.
func ParseReply(line []byte, req Request) (Reply, error) {
	var r Reply
	if err := strictUnmarshal(line, &r); err != nil {
		return r, err
	}
	if r.V != 1 {
		return r, fmt.Errorf("protocol version %d, want 1", r.V)
	}
	if r.ID != req.ID {
		return r, fmt.Errorf("reply to request %d, want %d", r.ID, req.ID)
	}
	if !r.OK && r.Err == "" {
		return r, errors.New("failed reply without err")
	}
	for i, e := range r.Events {
		if err := e.check(); err != nil {
			return r, fmt.Errorf("event %d: %w", i, err)
		}
	}
	if r.OK {
		switch req.Op {
		case OpProvision, OpLoad, OpRestart, OpPreKey, OpState, OpOpen:
			if req.Op == OpOpen && r.Refused != "" {
				break
			}
			if err := r.Creds.check(); err != nil {
				return r, fmt.Errorf("%s reply: %w", req.Op, err)
			}
		}
		if req.Op == OpProvision && len(r.PreKeys) == 0 {
			return r, errors.New("provision reply: no prekeys")
		}
		if req.Op == OpPreKey && r.PreKey == nil {
			return r, errors.New("prekey reply: no prekey")
		}
		for _, pk := range append(r.PreKeys, deref(r.PreKey)...) {
			if len(pk.Pub) != 32 {
				return r, fmt.Errorf("prekey %d: public key of %d bytes, want 32", pk.ID, len(pk.Pub))
			}
		}
	}
	if err := r.checkChild(req); err != nil {
		return r, err
	}
	return r, nil
}

// maxReceipt is whatsmeow's last retry receipt count: none from 5
// (retry.go 396 "if retryCount >= 5", whatsmeow 11cf47c62d32).
const maxReceipt = 4

// checkChild checks the whatsmeow child's fields (docs/device-protocol.md
// "The whatsmeow child"): each only on the reply it belongs to.
func (r Reply) checkChild(req Request) error {
	switch {
	case r.Stopped && req.StopAt == 0:
		return errors.New("stopped reply to a request without stop_at")
	case r.Stopped && (r.Step <= 0 || len(r.Events) > 0 || !r.OK):
		return fmt.Errorf("stopped reply: want ok, a step > 0 and no events, got ok %v step %d, %d events", r.OK, r.Step, len(r.Events))
	case !r.Stopped && r.Step != 0:
		return errors.New("step without stopped")
	case r.Receipt < 0 || r.Receipt > maxReceipt:
		return fmt.Errorf("retry receipt count %d, want 1 to %d", r.Receipt, maxReceipt)
	case r.Receipt > 0 && req.Op != OpDecrypt && req.Op != OpStep:
		return fmt.Errorf("retry receipt on a %s reply", req.Op)
	case r.PreKey != nil && req.Op != OpPreKey && r.Receipt == 0:
		return errors.New("prekey outside a prekey reply or a retry receipt")
	case r.Dropped && req.Op != OpEncrypt, r.Reason != "" && req.Op != OpEncrypt && req.Op != OpStep:
		return fmt.Errorf("dropped or reason on a %s reply", req.Op)
	case r.Dropped && len(r.Events) > 0:
		return errors.New("dropped retry receipt with events: no task runs")
	}
	if r.Reason != "" && !slices.ContainsFunc(r.Events, func(e Event) bool { return e.Done && e.NeedBundle }) {
		return errors.New("reason without a need_bundle end")
	}
	if req.Op == OpState && len(req.IDs) > 0 {
		for _, pk := range r.PreKeys {
			if !slices.Contains(req.IDs, pk.ID) {
				return fmt.Errorf("state reply: prekey %d was not asked for", pk.ID)
			}
		}
	}
	return nil
}

// ParseRequest decodes and checks a request line, as a device written in
// Go reads it: unknown fields are refused, v must be 1, id positive and op
// set. The Request is returned even on error when its id could be read,
// for a device that answers the error (ok false) rather than dying.
func ParseRequest(line []byte) (Request, error) {
	var req Request
	if err := strictUnmarshal(line, &req); err != nil {
		var id struct {
			ID int `json:"id"`
		}
		_ = json.Unmarshal(line, &id)
		return Request{V: 1, ID: id.ID}, err
	}
	if req.V != 1 || req.ID <= 0 || req.Op == "" {
		return req, fmt.Errorf(`bad request: want {"v":1,"id":N,"op":…}, got v %d id %d op %q`, req.V, req.ID, req.Op)
	}
	return req, nil
}

func deref(p *PreKey) []PreKey {
	if p == nil {
		return nil
	}
	return []PreKey{*p}
}

func (c *Creds) check() error {
	switch {
	case c == nil:
		return errors.New("no creds")
	case len(c.Identity) != 32 || len(c.SPK) != 32:
		return fmt.Errorf("creds: identity %d bytes, signed prekey %d bytes, want 32", len(c.Identity), len(c.SPK))
	case len(c.Sig) != 64:
		return fmt.Errorf("creds: signature of %d bytes, want 64", len(c.Sig))
	}
	return nil
}

func (e Event) check() error {
	switch {
	case e.Task == "":
		return errors.New("no task")
	case e.Note != "" || e.Attempt != "":
		if e.Gate != "" || e.Done {
			return errors.New("a note or an attempt is neither a gate nor an end")
		}
		if e.Attempt != "" && !e.OK && !classes[e.Class] {
			return fmt.Errorf("failed attempt with unknown class %q", e.Class)
		}
		return nil
	case e.Done && e.Gate != "", !e.Done && e.Gate == "":
		return errors.New("want exactly one of gate and done")
	case e.Gate != "" && e.Call == "":
		return errors.New("gate without call")
	case e.Done && !e.OK && !classes[e.Class]:
		return fmt.Errorf("failed task with unknown class %q", e.Class)
	case e.Done && e.OK && e.PT == nil && e.CT == nil && !e.Sent:
		return errors.New("finished task with neither pt nor ct")
	case e.Done && e.OK && e.CT != nil && e.Kind != "pkmsg" && e.Kind != "msg":
		return fmt.Errorf("ciphertext of kind %q", e.Kind)
	}
	return nil
}

// strictUnmarshal rejects unknown fields: a misspelt field is a bug in the
// device, not something to ignore.
func strictUnmarshal(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a valid JSON line: %w", err)
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
