package baileys

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/harness/webledger"
	"github.com/badmac/badmac/seeded"
)

// The bot's account on the fake server: a linked device (3) of a phone
// number, whose phone (device 0) exists on the server so that Baileys 6,
// which always encrypts to its own phone too (messages-send.js relayMessage:
// devices.push({ user: meUser })), finds its bundle. Messages to the phone
// are acknowledged and dropped.
const (
	botUser   = "10000000042"
	botDevice = 3
)

// autoTimer is how far ahead a pending virtual timer fires by itself once
// both ends are quiet: Baileys' short delays (retryRequestDelayMs 250 ms,
// the placeholder resend's 2 s, the event buffer's 100 ms flush) run, the
// long ones (the 30 s keepalive, 60 s query timeouts, 5 min cache TTLs)
// wait for a wait op.
const autoTimer = 10_000

// sockRun is one schedule on the socket device; it is the harness.View
// its source sees.
type sockRun struct {
	d      *SocketDevice
	ctx    context.Context
	s      *harness.Schedule
	serial bool
	store  AuthStore
	dir    string
	unbind func()

	srv   *waweb.Server
	cv    *waweb.Conversation
	peers []string
	phone *fakeserver.Peer

	// The Node side's last status, and what the harness told it.
	st      devproto.Reply
	conn    int // the server's number of the current connection
	frames  int // server frames on it Baileys was let read
	named   int // copy names (Conversation.Taken) handed to the adapter
	creds   devproto.Creds
	started bool

	parked map[string][]sockGate
	order  map[string]int // a task's first appearance
	// logins are, per open of the auth state (the first login, then each
	// restart's), what the reference run needs to follow it (refLogin).
	logins  []refLogin
	ref     []refLogin // set: this is the reference run, following these
	tasks   int
	gates   int
	applied []harness.Op

	down, killed, ended bool
	crashes             int
	regen, refused      bool
	replies             map[string]reply // replies not yet at the server
	fileWrites          int
	// recv follows the receives for the crash's attribution (receives);
	// only the candidate's run, not its baseline or reference, uses it.
	recv *receives
	// half are the tasks whose current store call is half written: at
	// least one of its writes released, another still parked. inexact is
	// the first time the candidate's run left the reference run inexact
	// (a task's call touched a key of another's half-written call, or a
	// crash killed one); "" when it never did (judgesStore).
	half    map[string]bool
	inexact string
	// callOf is each task's current store call, as its call gate names
	// it ("set lid-mapping alice, lid-mapping 900001_reverse").
	callOf map[string]string
}

type sockGate struct {
	id, task, call  string
	write, io, tear bool
	at              int
}

// refLogin is what the reference run needs to follow one login of the
// candidate's (docs/baileys.md, "Who is blamed"). Pads are, per task, how
// many gates below the store each of its store calls reached (file
// writes, statements): the reference run's atomic calls wait as many
// steps. Commit are, per task, the calls (indices into Pads) a crash
// completed: killed at their last write, which the crash kept whole (a
// rename, a write kept in full); the reference run's calls take effect
// at that crash too. Both count from the login's open: the adapter names
// tasks afresh each time (login, login~creds1).
type refLogin struct {
	Pads   map[string][]int
	Commit map[string][]int
}

type reply struct {
	peer, body string
	jid        string
	sent       bool
}

func (d *SocketDevice) newRun(ctx context.Context, s *harness.Schedule, serial bool) (*sockRun, error) {
	st, err := ParseStore(s.Store)
	if err != nil {
		return nil, err
	}
	d.n++
	r := &sockRun{d: d, ctx: ctx, s: s, serial: serial, store: st, dir: filepath.Join(d.tmp, fmt.Sprintf("s%d", d.n)),
		parked: map[string][]sockGate{}, order: map[string]int{}, replies: map[string]reply{}, recv: newReceives(), half: map[string]bool{}, callOf: map[string]string{}}
	// The fake server's root key is made once per process: drawn before
	// the schedule's stream is bound, so the first schedule of a process
	// draws from its stream what every later one does.
	ca := waweb.DefaultCA()
	r.unbind = seeded.Bind(seeded.NewStream(s.Seed, 0xb5))
	if r.srv, err = waweb.Listen(ca); err != nil {
		r.unbind()
		return nil, err
	}
	// Baileys 7 uploads INITIAL_PREKEY_COUNT (812) one-time prekeys when
	// the server holds none (Socket/socket.js uploadPreKeysToServerIfRequired)
	// and MIN_PREKEY_COUNT (5) when it holds at most 5; the server reports
	// at least 5, so a schedule's device uploads 5 (Baileys 6: 30), not 812.
	r.srv.PreKeyCount = func(held int) int { return max(held, 5) }
	r.srv.OfflineMarker = true
	if s.LID() {
		r.srv.SetOwnLID(ownLIDUser) // <success lid> at every login (socketlid.go)
	}
	r.cv = waweb.NewConversation(r.srv)
	r.cv.Hold()
	for _, c := range s.Contacts {
		for dev := range c.Devices {
			p, err := r.cv.AddPeer(ctx, c.User, uint16(dev))
			if err != nil {
				r.close()
				return nil, err
			}
			r.peers = append(r.peers, p.Name)
		}
	}
	if r.phone, err = fakeserver.NewPeer(ctx, r.srv.Core, botUser, 0); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *sockRun) close() {
	if r.srv != nil {
		r.srv.Close()
	}
	os.RemoveAll(r.dir)
	if r.unbind != nil {
		r.unbind()
	}
}

func (r *sockRun) wrap(err error) error {
	return fmt.Errorf("device %s: seed %d: %w", r.d.name, r.s.Seed, err)
}

func (r *sockRun) log(format string, a ...any) { r.srv.Logf(format, a...) }

func (r *sockRun) timeout() time.Duration {
	if r.d.opt.Timeout > 0 {
		return r.d.opt.Timeout
	}
	return devproto.DefaultTimeout
}

// call sends one request to the adapter and folds in its events.
func (r *sockRun) call(req devproto.Request) (devproto.Reply, error) {
	if r.d.proc == nil || r.d.proc.Exited(0) {
		return devproto.Reply{}, errDead
	}
	rep, err := r.d.proc.Call(r.ctx, req)
	if err != nil {
		return rep, err
	}
	if !rep.OK {
		return rep, fmt.Errorf("%s failed: %s", req.Op, rep.Err)
	}
	r.st = rep
	return rep, r.events(rep.Events)
}

func (r *sockRun) events(evs []devproto.Event) error {
	for _, e := range evs {
		switch {
		case e.Gate != "":
			if _, ok := r.order[e.Task]; !ok {
				r.tasks++
				r.order[e.Task] = r.tasks
			}
			r.gates++
			r.parked[e.Task] = append(r.parked[e.Task], sockGate{id: e.Gate, task: e.Task, call: e.Call, write: e.Write, io: e.IO, tear: e.Tear, at: r.gates})
			r.recv.parked(e.Task, e.Call, e.IO)
			pads := r.login().Pads
			if !e.IO {
				pads[e.Task] = append(pads[e.Task], 0)
			} else if n := len(pads[e.Task]); n > 0 {
				pads[e.Task][n-1]++
			}
		case e.Attempt != "":
			r.recv.attempt(e.Attempt)
			if e.OK {
				r.cv.L.Attempt(e.Attempt, true, string(e.PT), "", nil)
			} else {
				r.cv.L.Attempt(e.Attempt, false, "", endpoint.Class(e.Class), errors.New(e.Err))
			}
		case e.Note != "":
			r.log("%s: %s", e.Task, e.Note)
		case e.Done:
			rp, ok := r.replies[e.Task]
			if !ok {
				continue
			}
			rp.sent = true
			r.replies[e.Task] = rp
			r.cv.L.Sending(e.Task, false)
			if !e.OK {
				r.log("%s: sendMessage failed: %s", e.Task, e.Err)
				r.cv.L.SendFailed(e.Task, errors.New(e.Err))
			}
			delete(r.replies, e.Task)
		}
	}
	return nil
}

// sync lets both ends run until neither has anything in flight: the
// server handles every frame Baileys wrote, Baileys reads every frame
// the server wrote (one at a time, each to quiet), and a virtual timer
// due within autoTimer fires; until nothing changes.
func (r *sockRun) sync() error {
	for {
		if r.down {
			return nil
		}
		wctx, cancel := context.WithTimeout(r.ctx, r.timeout())
		t, err := r.srv.WaitTraffic(wctx, func(t waweb.Traffic) bool {
			return t.Conn != r.conn || t.Closed || t.Handled >= r.st.Sent
		})
		cancel()
		if err != nil {
			return err
		}
		if t.Conn != r.conn {
			return fmt.Errorf("connection %d replaced by %d", r.conn, t.Conn)
		}
		if t.Closed {
			if !r.st.Open {
				r.log("%s", harness.ConnectionClosed)
				return nil
			}
		}
		if t.Written > r.frames && !t.Closed {
			taken := r.cv.Taken()
			names := taken[r.named:]
			r.named = len(taken)
			r.frames = t.Written
			if _, err := r.call(devproto.Request{Op: devproto.OpFrames, Upto: t.Written, Names: names}); err != nil {
				return err
			}
			continue
		}
		if r.st.Timer >= 0 && r.st.Timer <= autoTimer {
			if _, err := r.call(devproto.Request{Op: devproto.OpTick, To: r.st.Now + r.st.Timer}); err != nil {
				return err
			}
			continue
		}
		return nil
	}
}

// setup provisions the device: a fresh auth state in its directory, the
// login (prekey upload included), every store call released at once.
func (r *sockRun) setup() error {
	if r.d.proc == nil || r.d.proc.Exited(0) {
		c, err := r.d.start(r.ctx)
		if err != nil {
			return err
		}
		r.d.proc = c
	}
	if err := r.reset(fmt.Sprint(r.s.Seed)); err != nil {
		return err
	}
	if err := r.connect(true); err != nil {
		return err
	}
	if r.refused {
		return fmt.Errorf("the store refused to start on an empty directory")
	}
	_, err := r.call(devproto.Request{Op: devproto.OpAuto, On: false})
	return err
}

// reset readies the Node process for a schedule (or, after a kill, a
// new process for the rest of it); a reference run's reset says so.
func (r *sockRun) reset(seed string) error {
	_, err := r.call(devproto.Request{Op: devproto.OpReset, Dir: r.dir, Seed: seed,
		Auth: r.store.Module, Cache: r.store.Cache, Serial: r.serial, Reference: r.ref != nil})
	return err
}

// login is the record of the current login (refLogin).
func (r *sockRun) login() refLogin {
	if len(r.logins) == 0 {
		r.logins = append(r.logins, refLogin{Pads: map[string][]int{}, Commit: map[string][]int{}})
	}
	return r.logins[len(r.logins)-1]
}

// following is the candidate's record of the current login, in a
// reference run (refLogin); empty otherwise.
func (r *sockRun) following() refLogin {
	if i := len(r.logins) - 1; r.ref != nil && i < len(r.ref) {
		return r.ref[i]
	}
	return refLogin{}
}

func (r *sockRun) jid() string { return fmt.Sprintf("%s:%d@s.whatsapp.net", botUser, botDevice) }

// connect opens the auth state and a socket, and runs the login to its
// end: on the first start every store call is released at once; on a
// restart the login's own gates are stepped in order (other tasks, the
// receives of redelivered stanzas, stay parked for the schedule).
func (r *sockRun) connect(provision bool) error {
	before := r.srv.Traffic().Conn
	r.logins = append(r.logins, refLogin{Pads: map[string][]int{}, Commit: map[string][]int{}})
	rep, err := r.call(devproto.Request{Op: devproto.OpOpen, URL: "ws://" + r.srv.Addr().String() + "/ws/chat",
		Root: waweb.DefaultCA().Root.Pub[:], JID: r.jid(), Provision: provision, On: provision,
		Seed: fmt.Sprint(r.s.Seed + uint64(r.crashes)), Pads: r.following().Pads})
	if err != nil {
		return err
	}
	if rep.Refused != "" {
		r.refused = true
		r.log("restart: the store refused to start: %s", rep.Refused)
		return nil
	}
	if provision {
		r.creds = *rep.Creds
	} else if !sameCreds(*rep.Creds, r.creds) {
		r.regen = true
		r.log("restart: REGENERATED CREDENTIALS (registration id %d → %d)", r.creds.Reg, rep.Creds.Reg)
	} else {
		r.log("restart: credentials intact")
	}
	wctx, cancel := context.WithTimeout(r.ctx, r.timeout())
	t, err := r.srv.WaitTraffic(wctx, func(t waweb.Traffic) bool { return t.Conn > before })
	cancel()
	if err != nil {
		return err
	}
	r.conn, r.frames, r.named = t.Conn, 0, len(r.cv.Taken())
	r.down, r.killed = false, false
	if err := r.sync(); err != nil {
		return err
	}
	for !r.serial && len(r.parked["login"]) > 0 {
		if err := r.step("login", "login: "); err != nil {
			return err
		}
	}
	if !r.srv.Connected() {
		return fmt.Errorf("the socket did not log in (traffic %+v; server log: %s)", r.srv.Traffic(), strings.Join(lastLines(r.srv.Log(), 5), " | "))
	}
	if provision {
		r.fileWrites = r.st.Writes
	}
	return nil
}

func lastLines(l []string, n int) []string {
	if len(l) > n {
		return l[len(l)-n:]
	}
	return l
}

func sameCreds(a, b devproto.Creds) bool {
	return a.Reg == b.Reg && string(a.Identity) == string(b.Identity) && a.SPKID == b.SPKID && string(a.SPK) == string(b.SPK)
}

// The harness.View of the run.

func (r *sockRun) Peers() []string { return append([]string(nil), r.peers...) }

func (r *sockRun) HeardFrom(peer string) int { return r.cv.L.HeardFrom(peer) }

// Runnable are the tasks parked at a gate, in order of first appearance
// (none in serial mode).
func (r *sockRun) Runnable() []string {
	if r.serial {
		return nil
	}
	var ts []string
	for t := range r.parked {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return r.order[ts[i]] < r.order[ts[j]] })
	return ts
}

func (r *sockRun) Pending() (inbound, outbound []string) { return r.cv.Held() }

func (r *sockRun) Delivered() []string { return r.cv.Taken() }

func (r *sockRun) Down() bool { return r.down }

// PendingWrites are the store's parked file writes: a crash keeps, drops
// or tears each.
func (r *sockRun) PendingWrites() int {
	if r.down || r.serial {
		return 0
	}
	n := 0
	for _, gs := range r.parked {
		for _, g := range gs {
			if g.write {
				n++
			}
		}
	}
	return n
}

// apply runs one op and records it; an op that does not apply does
// nothing.
func (r *sockRun) apply(op harness.Op) error {
	if err := socketOps.Refuse(r.d.name, []harness.Op{op}, nil); err != nil {
		return err
	}
	if harness.Inst(op) != 0 {
		return fmt.Errorf("op %q: an instance (this device is one)", op)
	}
	r.applied = append(r.applied, op)
	r.log("op %s", op)
	switch o := op.(type) {
	case harness.SendOp:
		p, ok := r.cv.Peer(o.Peer)
		if !ok || r.cv.L.Known(o.Msg) {
			return nil
		}
		r.recv.sent(o.Msg)
		return r.cv.Send(r.ctx, p, o.Msg, "hello "+o.Msg)
	case harness.DeliverOp:
		if _, ok := r.cv.Deliver(o.ID); ok {
			return r.sync()
		}
	case harness.ReplyOp:
		p, ok := r.cv.Peer(o.Peer)
		if !ok || r.cv.L.Known(o.Msg) {
			return nil
		}
		id := o.Msg
		r.cv.L.Expect(id, harness.Out, p.Name, "reply "+id)
		r.replies[id] = reply{peer: p.Name, body: "reply " + id, jid: peerJID(p)}
		if r.down {
			return nil // sent when the bot is back
		}
		return r.sendReply(id)
	case harness.StepOp:
		if r.serial || len(r.parked[o.Task]) == 0 {
			return nil
		}
		return r.step(o.Task, "")
	case harness.RunOp:
		for !r.serial && len(r.parked[o.Task]) > 0 {
			if err := r.step(o.Task, ""); err != nil {
				return err
			}
		}
	case harness.ReadOp:
		if r.cv.Read(r.ctx, o.ID) {
			return r.sync()
		}
	case harness.DupOp:
		r.cv.Dup(o.ID)
	case harness.CrashOp:
		return r.crash(o.Mode)
	case harness.StopOp:
		return r.stop()
	case harness.RestartOp:
		return r.restart()
	case harness.WaitOp:
		return r.wait(int64(o.Seconds * 1000))
	default:
		return r.applyLID(op)
	}
	return nil
}

func peerJID(p *fakeserver.Peer) string {
	return types.JID{User: p.JID.User, Device: p.JID.Device, Server: types.DefaultUserServer}.String()
}

func (r *sockRun) sendReply(id string) error {
	rp := r.replies[id]
	r.cv.L.Sending(id, true)
	if _, err := r.call(devproto.Request{Op: devproto.OpReply, Task: id, JID: rp.jid, Text: rp.body, MsgID: id}); err != nil {
		return err
	}
	return r.sync()
}

// step lets task t make the call its oldest parked gate holds.
func (r *sockRun) step(t, prefix string) error {
	g := r.parked[t][0]
	if r.parked[t] = r.parked[t][1:]; len(r.parked[t]) == 0 {
		delete(r.parked, t)
	}
	if !r.serial {
		r.log("%s%s %s", prefix, g.task, g.call)
	}
	r.recv.step(g.task, g.io)
	if !g.io {
		r.callOf[t] = g.call
	}
	if u := r.halfWritten(t); u != "" {
		r.noteInexact(fmt.Sprintf("%s's %s (in %s) ran while %s's %s was half written", t, g.call, r.callOf[t], u, r.callOf[u]))
	}
	if _, err := r.call(devproto.Request{Op: devproto.OpStep, Gate: g.id}); err != nil {
		return err
	}
	err := r.sync()
	r.half[t] = g.io && len(r.parked[t]) > 0 && r.parked[t][0].io
	return err
}

// halfWritten is the first (by name) task other than t whose store call
// is half written and shares a key with t's current call; "" when none
// does. A key neither call names reads the same in the candidate's run
// and the reference run; one both name may not (the candidate's store
// shows it from its write, the reference run's call at its end).
func (r *sockRun) halfWritten(t string) string {
	best := ""
	for u, h := range r.half {
		if h && u != t && (best == "" || u < best) && shareKey(r.callOf[u], r.callOf[t]) {
			best = u
		}
	}
	return best
}

// callKeys are the keys a store call names (adapters/baileys/socket.mjs
// gatedKeys and saveCreds): "get TYPE ID,ID", "set TYPE ID[ (delete)],
// TYPE ID"; false for any other call (clear, or a name not known), which
// may touch every key. "save creds" names none another call can see: the
// credentials are one record, written whole by each save and read by no
// store call of a run, only when the auth state opens (after a stop, with
// every call ended; after a crash, see crash); two saves keep their call
// order in the reference run, the order a store that serializes its creds
// writes gives (Baileys' own lock, docs/baileys.md).
func callKeys(call string) (map[string]bool, bool) {
	keys := map[string]bool{}
	switch {
	case call == "save creds":
	case strings.HasPrefix(call, "get "):
		typ, ids, _ := strings.Cut(strings.TrimPrefix(call, "get "), " ")
		for _, id := range strings.Split(ids, ",") {
			keys[typ+" "+id] = true
		}
	case strings.HasPrefix(call, "set "):
		for _, k := range strings.Split(strings.TrimPrefix(call, "set "), ", ") {
			keys[strings.TrimSuffix(k, " (delete)")] = true
		}
	default:
		return nil, false
	}
	return keys, true
}

// shareKey reports whether two store calls may touch a key in common:
// they name one, or either's keys are not known.
func shareKey(a, b string) bool {
	ka, okA := callKeys(a)
	kb, okB := callKeys(b)
	if !okA || !okB {
		return true
	}
	for k := range ka {
		if kb[k] {
			return true
		}
	}
	return false
}

// noteInexact records the first reason the reference run cannot follow
// the candidate's exactly (judgesStore); the candidate's run only.
func (r *sockRun) noteInexact(why string) {
	if r.ref == nil && !r.serial && r.inexact == "" {
		r.inexact = why
	}
}

// first is the task whose parked gate came first.
func (r *sockRun) first() string {
	best := ""
	for t, gs := range r.parked {
		if best == "" || gs[0].at < r.parked[best][0].at {
			best = t
		}
	}
	return best
}

// wait moves the virtual clock ms forward, through every timer due on the
// way, each followed by both ends' quiet (a keepalive's ping answered
// before the next one fires).
func (r *sockRun) wait(ms int64) error {
	if r.down {
		return nil
	}
	target := r.st.Now + ms
	for r.st.Now < target {
		to := target
		if r.st.Timer >= 0 && r.st.Now+r.st.Timer < target {
			to = r.st.Now + r.st.Timer
		}
		if _, err := r.call(devproto.Request{Op: devproto.OpTick, To: to}); err != nil {
			return err
		}
		if err := r.sync(); err != nil {
			return err
		}
	}
	return nil
}

// crash kills the device: each of the store's parked writes is kept,
// dropped or torn as the mode says (default: dropped), then SIGKILL. In
// the serial baseline a crash is a clean restart.
func (r *sockRun) crash(mode string) error {
	if r.down {
		return nil
	}
	if r.serial {
		if err := r.stop(); err != nil {
			return err
		}
		r.crashes++
		return r.restart()
	}
	r.log("crash %q: the device is killed", mode)
	if r.ref == nil {
		// The kill's first half: the writes kept, torn or dropped, and
		// the kept ones' calls run on to their next write (OpKeep).
		rep, err := r.call(devproto.Request{Op: devproto.OpKeep, Modes: mode})
		if err != nil {
			return err
		}
		r.noteKilled(r.noteCompleted(mode, rep.Parked))
		rec := r.login()
		for _, u := range slices.Sorted(maps.Keys(r.half)) {
			if n := len(rec.Pads[u]); r.half[u] && !slices.Contains(rec.Commit[u], n-1) {
				r.noteInexact(fmt.Sprintf("the crash killed %s's store call half written", u))
			}
		}
		mode = ""
	}
	_, err := r.d.proc.Call(r.ctx, devproto.Request{Op: devproto.OpCrash, Modes: mode, Commit: r.following().Commit})
	if err == nil {
		return fmt.Errorf("crash answered instead of dying")
	}
	if !r.d.proc.Exited(r.timeout()) {
		return err
	}
	return r.died()
}

// noteCompleted records the store calls a crash with these modes
// completes: a task parked only at writes the crash keeps whole (mode k,
// or g on a write that cannot be torn: a rename, an fsync), each of its
// current call, unless the call did not end after them (unfinished, from
// OpKeep: a kept write of a temporary file with its rename still to
// come is not its call's last write). The crash applies the i-th mode to
// the i-th parked write in the order they parked (adapters/baileys/lib/
// gates.mjs, keepForCrash); an unlisted one is dropped. A statement is
// dropped by any crash. It returns the parked writes the crash keeps
// whole, by gate id.
func (r *sockRun) noteCompleted(modes string, unfinished []string) map[string]bool {
	var writes []sockGate
	for _, gs := range r.parked {
		for _, g := range gs {
			if g.write {
				writes = append(writes, g)
			}
		}
	}
	sort.Slice(writes, func(i, j int) bool { return writes[i].at < writes[j].at })
	kept := map[string]bool{}
	for i, g := range writes {
		kept[g.id] = i < len(modes) && (modes[i] == 'k' || modes[i] == 'g' && !g.tear)
	}
	rec := r.login()
	for t, gs := range r.parked {
		whole := len(gs) > 0
		for _, g := range gs {
			whole = whole && g.io && kept[g.id]
		}
		n := len(rec.Pads[t])
		if whole && n > 0 && slices.Contains(unfinished, t) {
			r.log("crash: %s's store call %d not completed by the crash (its kept write was not its last)", t, n-1)
		} else if whole && n > 0 {
			rec.Commit[t] = append(rec.Commit[t], n-1)
			r.log("crash: %s's store call %d completed by the crash", t, n-1)
		}
	}
	return kept
}

// noteKilled records the receives the crash kills after a write of their
// decrypt took effect and before the bot recorded their attempt: their
// messages are lost to the crash, not blamed (receives; harness.Judge).
func (r *sockRun) noteKilled(kept map[string]bool) {
	whole := map[string]bool{}
	for t, gs := range r.parked {
		for _, g := range gs {
			whole[t] = whole[t] || (g.io && kept[g.id])
		}
	}
	for _, t := range r.recv.crash(whole) {
		r.log("crash: %s killed after storing its decrypt, before its ack", t)
	}
}

// died: the process is gone; the server notices the closed connection
// before anything else happens (a stanza pushed meanwhile would go to a
// dead socket).
func (r *sockRun) died() error {
	r.crashes++
	r.down, r.killed = true, true
	r.parked = map[string][]sockGate{}
	r.half = map[string]bool{}
	for id, rp := range r.replies {
		rp.sent = false
		r.replies[id] = rp
	}
	wctx, cancel := context.WithTimeout(r.ctx, r.timeout())
	defer cancel()
	_, err := r.srv.WaitTraffic(wctx, func(t waweb.Traffic) bool { return t.Conn != r.conn || t.Closed })
	return err
}

// stop is a clean shutdown: parked tasks run to their ends (longest
// parked first), then the socket ends and the store's close runs.
func (r *sockRun) stop() error {
	if r.down {
		return nil
	}
	for len(r.parked) > 0 {
		if err := r.step(r.first(), "stop: "); err != nil {
			return err
		}
	}
	if _, err := r.call(devproto.Request{Op: devproto.OpStop}); err != nil {
		return err
	}
	r.down = true
	wctx, cancel := context.WithTimeout(r.ctx, r.timeout())
	defer cancel()
	_, err := r.srv.WaitTraffic(wctx, func(t waweb.Traffic) bool { return t.Conn != r.conn || t.Closed })
	r.log("stop: clean shutdown")
	return err
}

// restart brings the bot back on the same directory or database: after a
// kill a new Node process, after a stop the same one; then the login, and
// the replies that had not reached the server are sent again.
func (r *sockRun) restart() error {
	if !r.down || r.ended {
		return nil
	}
	if r.killed {
		c, err := r.d.replacement(r.ctx)
		if err != nil {
			return err
		}
		r.d.proc = c
		if err := r.reset(fmt.Sprint(r.s.Seed + uint64(r.crashes))); err != nil {
			return err
		}
	}
	if err := r.connect(false); err != nil {
		return err
	}
	if r.refused {
		// The store would not start on what the crash left: the
		// correct reaction to a state it cannot read. The bot stays down;
		// the run ends here.
		r.ended = true
		return nil
	}
	var ids []string
	for id, rp := range r.replies {
		if !rp.sent && !r.atServer(id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		r.log("%s: sent again after the restart", id)
		if err := r.sendReply(id); err != nil {
			return err
		}
	}
	return nil
}

// atServer reports whether a copy of reply id reached the server (held
// for its peer, or read): the bot's sendMessage got that far.
func (r *sockRun) atServer(id string) bool {
	_, out := r.cv.Held()
	for _, n := range out {
		if base, _, _ := strings.Cut(n, "."); base == id {
			return true
		}
	}
	for _, m := range r.cv.L.Messages() {
		if m.ID == id && len(m.Attempts) > 0 {
			return true
		}
	}
	return false
}

// drain runs what is left: a crashed or stopped bot restarts, parked
// tasks run in arrival order, held stanzas are delivered and held
// messages read, until nothing is left.
func (r *sockRun) drain() error {
	for !r.ended {
		switch {
		case r.down:
			if err := r.restart(); err != nil {
				return err
			}
		case len(r.parked) > 0:
			if err := r.step(r.first(), "drain: "); err != nil {
				return err
			}
		default:
			in, out := r.cv.Held()
			if len(in) == 0 && len(out) == 0 {
				return nil
			}
			for _, id := range in {
				r.log("drain: deliver %s", id)
				r.cv.Deliver(id)
				if err := r.sync(); err != nil {
					return err
				}
			}
			for _, id := range out {
				r.log("drain: read %s", id)
				r.cv.Read(r.ctx, id)
				if err := r.sync(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// result is the run for the oracle: the ledger's messages (the ones the
// schedule sent and replied), the server's log as history.
func (r *sockRun) result() *harness.Result {
	res := &harness.Result{RegeneratedCreds: r.regen, Crashes: r.crashes, KilledUnacked: append([]string(nil), r.recv.killed...)}
	for _, l := range r.srv.Log() {
		if strings.HasPrefix(l, "server: read:") || strings.Contains(l, "<unified_session") {
			// How the killed socket's end looked to the server, and a
			// telemetry id Baileys derives from the server's wall-clock
			// login time: timing, not behaviour.
			continue
		}
		res.History = append(res.History, l)
	}
	res.Messages = webledger.Messages(r.cv.L)
	r.noteLIDReports(res)
	if r.ended {
		// The store refused to start: correct, and the end of this
		// bot. Messages it had not settled cannot be judged.
		var kept []*harness.Message
		dropped := 0
		for _, m := range res.Messages {
			if m.Outcome() == harness.Delivered {
				kept = append(kept, m)
			} else {
				dropped++
			}
		}
		res.Messages = kept
		res.History = append(res.History, harness.StartRefusedLine(dropped))
	}
	return res
}
