package realclient

import (
	"context"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petermattis/goid"

	"github.com/badmac/badmac/fakeserver/waweb"
)

// ctl is controlled mode for one run of the real client (docs/design.md
// §8): every store call the client makes parks in the probe until the
// schedule lets it go (step), the server keeps what the client sends until
// the run answers it (waweb.Server.Manual), and the run knows without
// sleeping when the client is quiet:
//
//   - every goroutine of the run (the client's and the server's: they
//     carry the run's pprof label, inherited from the goroutine that
//     connected or listened) is blocked: on a channel, a lock or a socket
//     (goroutine snapshot, snapshot.go). None is running, runnable, in a
//     system call (SQLite's file I/O) or asleep;
//   - no byte is in flight on the loopback connections (counted at both
//     ends, waweb.Server.Idle): a goroutine blocked on a socket gets
//     nothing more;
//   - no store call the run released is still running (a goroutine
//     waiting on PostgreSQL's socket looks blocked);
//   - the server's inbox is empty (settle answers it and waits again);
//   - no goroutine of a client a crash killed is left (killClient): a
//     SIGKILL leaves none, and one still unwinding here would hold its
//     name from the restarted client's goroutines.
//
// Then nothing can move until the run does something: every goroutine
// that could is parked in a store call, waits for a server answer the run
// gives next, or is idle. The timers whatsmeow arms are out of the way:
// the keepalive loop's is pushed beyond any run (noKeepalive), iq and send
// timeouts (75 s) never run out because the run answers every iq at the
// next quiet point, and the handler queue's 30 s ticker only logs, unless
// a handler runs for 5 minutes, which the logger reports (Broken).
//
// Which parked goroutine the schedule steps is named from what it does
// (name): the handler queue's goroutine "recv", badmac's async replies
// "reply:ID", whatsmeow's retry-receipt goroutines "retry:ID", its
// answers to a contact's retry receipt "resend:ID", the login goroutine
// "login", a notification's "notify". The same schedule gives the same
// names at the same points, so "step resend:r1" replays.
type ctl struct {
	label string
	srv   *waweb.Server

	mu     sync.Mutex
	parked map[int64]*park  // by goroutine id
	named  map[int64]*named // every goroutine named so far
	seq    int              // order of naming
	inCall int              // released calls not returned yet
	origin map[int64]string // handler goroutine -> the message it handled
	// inAttempts is the ledger's count of the device's attempts (set by
	// the run); storedAt holds, by goroutine, that count at its last
	// session write: unchanged, the copy it is handling was decrypted
	// and stored but not yet handled, let alone acknowledged (killed).
	inAttempts func() int
	storedAt   map[int64]int
	broken     error
	free       bool // release everything at once (shutting down)
	// clients counts the client processes started (newClient); killed
	// holds those a crash killed (killClient).
	clients int
	killed  map[string]bool
	wake    chan struct{}
	timeout time.Duration
	buf     []byte // the snapshot's
	// Snapshots and Waited count the snapshots taken and the time spent
	// waiting between them (bench, tests).
	Snapshots int
	Waited    time.Duration
}

type park struct {
	call    string
	release chan struct{}
	store   bool // a store call: released, it runs until it returns (inCall)
}

type named struct {
	name string
	seq  int
}

var runSeq atomic.Int64

// Process-wide counts of snapshots taken, time waited between them and
// quiet points found.
var statSnapshots, statWaited, statQuiet atomic.Int64

// Stats returns and resets the process-wide counts: snapshots taken, time
// waited between them, quiet points found (bench).
func Stats() (snapshots int64, waited time.Duration, quiet int64) {
	return statSnapshots.Swap(0), time.Duration(statWaited.Swap(0)), statQuiet.Swap(0)
}

func newCtl(srv *waweb.Server, timeout time.Duration) *ctl {
	enableLabels()
	return &ctl{label: fmt.Sprint(runSeq.Add(1)), srv: srv, parked: map[int64]*park{}, named: map[int64]*named{},
		origin: map[int64]string{}, storedAt: map[int64]int{}, killed: map[string]bool{}, wake: make(chan struct{}, 1), timeout: timeout}
}

// do runs fn on a goroutine carrying the run's label, and client's when
// client is not "" (the client process it starts: newClient), so that
// every goroutine fn starts (the client's, the server's) carries them too.
func (c *ctl) do(client string, fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), c.labels(client)))
		fn()
	}()
	<-done
}

func (c *ctl) labels(client string, more ...string) pprof.LabelSet {
	kv := []string{runLabel, c.label}
	if client != "" {
		kv = append(kv, clientLabel, client)
	}
	return pprof.Labels(append(kv, more...)...)
}

// labelTask labels the calling goroutine (one of client's) as task name.
func (c *ctl) labelTask(client, name string) {
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), c.labels(client, taskLabel, name)))
}

// newClient names the next client process of the run (its goroutines'
// clientLabel).
func (c *ctl) newClient() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clients++
	return fmt.Sprint(c.clients)
}

// killClient records that client was killed: until every goroutine
// carrying its label has ended, the run is not quiet (see ctl).
func (c *ctl) killClient(client string) {
	c.mu.Lock()
	c.killed[client] = true
	c.mu.Unlock()
	c.poke()
}

func (c *ctl) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// gate parks the calling goroutine before a store call until released.
func (c *ctl) gate(call string) { c.wait(call, true) }

// hold parks the calling goroutine (one of badmac's: an async reply before
// its SendMessage) until released. Two async replies let go at the same
// quiet point would race for whatsmeow's messageSendLock (send.go
// SendMessage), and the lock, not the schedule, would pick which sends
// first; held, each enters SendMessage when the schedule says, and queues
// at the lock in that order.
func (c *ctl) hold(what string) { c.wait(what, false) }

func (c *ctl) wait(call string, store bool) {
	c.mu.Lock()
	if c.free {
		if store {
			c.inCall++
		}
		c.mu.Unlock()
		return
	}
	p := &park{call: call, release: make(chan struct{}), store: store}
	c.parked[goid.Get()] = p
	c.mu.Unlock()
	c.poke()
	<-p.release
}

// left is a released store call returning.
func (c *ctl) left() {
	c.mu.Lock()
	c.inCall--
	c.mu.Unlock()
	c.poke()
}

// stored notes a session write that goroutine g completed.
func (c *ctl) stored(g int64) {
	if c.inAttempts == nil {
		return
	}
	n := c.inAttempts()
	c.mu.Lock()
	c.storedAt[g] = n
	c.mu.Unlock()
}

// storedUnhandled reports whether the parked goroutine named name wrote a
// session since the device's last attempt: it was killed between its
// decrypt's store write and the end of its handling (docs/verdicts.md,
// lost to the crash).
func (c *ctl) storedUnhandled(name string) bool {
	g, _, ok := c.byName(name)
	if !ok || c.inAttempts == nil {
		return false
	}
	n := c.inAttempts()
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.storedAt[g]
	return ok && at == n
}

// setOrigin records that goroutine g (a handler) handled id.
func (c *ctl) setOrigin(g int64, id string) {
	c.mu.Lock()
	c.origin[g] = id
	c.mu.Unlock()
}

// fail marks the run broken: controlled mode can no longer vouch for it.
func (c *ctl) fail(err error) {
	c.mu.Lock()
	if c.broken == nil {
		c.broken = err
	}
	c.mu.Unlock()
	c.poke()
}

// release lets the parked goroutine g make its call; it returns the call.
func (c *ctl) release(g int64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.parked[g]
	if p == nil {
		return ""
	}
	delete(c.parked, g)
	if p.store {
		c.inCall++
	}
	close(p.release)
	return p.call
}

// releaseKilled lets every parked goroutine go without counting its call:
// its process was killed, the call is refused (tap.refuse).
func (c *ctl) releaseKilled() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for g, p := range c.parked {
		delete(c.parked, g)
		close(p.release)
	}
}

// parkedCalls describes the parked goroutines, oldest name first:
// "recv before GetSession alice:0".
func (c *ctl) parkedCalls() []string {
	var out []string
	for _, n := range c.runnable() {
		if _, call, ok := c.byName(n); ok {
			out = append(out, n+" before "+call)
		}
	}
	return out
}

// freeAll releases every parked goroutine and lets every later call
// through: the run is ending.
func (c *ctl) freeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.free = true
	for g, p := range c.parked {
		delete(c.parked, g)
		if p.store {
			c.inCall++
		}
		close(p.release)
	}
}

// quiet reports whether the run is quiet now (see ctl), with the snapshot
// it judged from; why says what moves when it is not.
func (c *ctl) quiet() (snap map[int64]*goroutine, ok bool, why string) {
	idle1, gen1 := c.srv.Idle()
	c.mu.Lock()
	in1 := c.inCall
	c.mu.Unlock()
	// The counters first: with bytes in flight or a store call running
	// the run is not quiet whatever the goroutines are doing, and a
	// snapshot (stop the world, every goroutine's traceback) would only
	// be thrown away (a third of them in badmac bench's loop).
	switch {
	case !idle1:
		return nil, false, "bytes in flight"
	case in1 != 0:
		return nil, false, "a store call is running"
	}
	snap = snapshot(c.label, &c.buf)
	c.Snapshots++
	statSnapshots.Add(1)
	idle2, gen2 := c.srv.Idle()
	c.mu.Lock()
	in2 := c.inCall
	parked := len(c.parked)
	killed := maps.Clone(c.killed)
	c.mu.Unlock()
	switch {
	case !idle1 || !idle2 || gen1 != gen2:
		return snap, false, "bytes in flight"
	case in1 != 0 || in2 != 0:
		return snap, false, "a store call is running"
	}
	n := 0
	for _, g := range snap {
		if cl := g.labels[clientLabel]; killed[cl] {
			return snap, false, fmt.Sprintf("goroutine %d (%s) of killed client %s has not ended", g.id, top(g), cl)
		}
		if !g.blocked() {
			return snap, false, fmt.Sprintf("goroutine %d (%s) is %s", g.id, top(g), g.state)
		}
		n++
	}
	if n == 0 && parked > 0 {
		return snap, false, "no goroutine of the run in the snapshot"
	}
	return snap, true, ""
}

func top(g *goroutine) string {
	for _, f := range g.frames {
		if strings.Contains(f, "whatsmeow") || strings.Contains(f, "badmac") {
			return f
		}
	}
	if len(g.frames) > 0 {
		return g.frames[0]
	}
	return "?"
}

// waitQuiet waits until the run is quiet and returns its snapshot. It
// waits for the probe, the server or a short back-off (a goroutine that
// blocks on a channel tells no one), never for a fixed time: the answer
// is the same on a loaded machine. timeout only bounds a run that never
// gets quiet (a bug), which is an error naming what still moved.
func (c *ctl) waitQuiet(ctx context.Context) (map[int64]*goroutine, error) {
	deadline := time.Now().Add(c.timeout)
	backoff := 20 * time.Microsecond
	for tries := 0; ; tries++ {
		// A snapshot stops the world and formats every goroutine's stack:
		// while the scheduler says goroutines run or wait to, it would
		// only fail, so the first few waits skip it. The answer is the
		// snapshot's, never this count's (other runs in the process keep
		// it above zero too).
		if tries < 50 && busy() {
			runtime.Gosched()
			continue
		}
		snap, ok, why := c.quiet()
		c.mu.Lock()
		broken := c.broken
		c.mu.Unlock()
		if broken != nil {
			return nil, broken
		}
		if ok {
			statQuiet.Add(1)
			return snap, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the client never got quiet in %s: %s\n%s", c.timeout, why, c.srv.WireDebug())
		}
		if err := c.pause(ctx, &backoff); err != nil {
			return nil, err
		}
	}
}

// pause waits for the probe or the server to say something happened, or
// for backoff, which it doubles up to 2 ms.
func (c *ctl) pause(ctx context.Context, backoff *time.Duration) error {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	w := time.Now()
	select {
	case <-c.wake:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.Waited += time.Since(w)
	statWaited.Add(int64(time.Since(w)))
	if *backoff < 2*time.Millisecond {
		*backoff *= 2
	}
	return nil
}

var schedSamples = []metrics.Sample{{Name: "/sched/goroutines/running:goroutines"}, {Name: "/sched/goroutines/runnable:goroutines"},
	{Name: "/sched/goroutines/not-in-go:goroutines"}}
var schedMu sync.Mutex

// busy reports whether the scheduler counts a goroutine running (besides
// the caller), waiting to run, or in a system call.
func busy() bool {
	schedMu.Lock()
	defer schedMu.Unlock()
	metrics.Read(schedSamples)
	n := int64(0)
	for _, s := range schedSamples {
		if s.Value.Kind() == metrics.KindUint64 {
			n += int64(s.Value.Uint64())
		}
	}
	return n > 1
}

// settle answers what the client sent until it is quiet with nothing left
// to answer, then names the parked goroutines. It returns the server's
// answers' count (for tests).
func (c *ctl) settle(ctx context.Context) error {
	for {
		snap, err := c.waitQuiet(ctx)
		if err != nil {
			return err
		}
		if c.srv.Waiting() > 0 {
			c.srv.Process()
			continue
		}
		if err := c.name(snap); err != nil {
			return err
		}
		if debugCtl {
			c.srv.Logf("debug: parked %v; %s", c.runnable(), describeSnap(snap))
		}
		return nil
	}
}

// name gives every parked goroutine not named yet its name (see ctl). A
// name stays with its goroutine while it lives; a second goroutine that
// would get a name in use gets name#2, #3, … Two goroutines new at the
// same quiet point with the same name cannot be told apart: the run is
// an error rather than a schedule that may replay on the other one.
func (c *ctl) name(snap map[int64]*goroutine) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for g := range c.named {
		if snap[g] == nil {
			delete(c.named, g) // ended: its name is free again
		}
	}
	var fresh []int64
	for g := range c.parked {
		if c.named[g] == nil {
			fresh = append(fresh, g)
		}
	}
	bases := map[string]int64{}
	slices.Sort(fresh)
	type cand struct {
		g    int64
		base string
	}
	var cands []cand
	for _, g := range fresh {
		gr := snap[g]
		if gr == nil {
			return fmt.Errorf("parked goroutine %d not in the snapshot", g)
		}
		base := c.baseName(gr)
		if other, dup := bases[base]; dup {
			return fmt.Errorf("two goroutines parked at once as %q (%d, %d): their order is not the schedule's", base, other, g)
		}
		bases[base] = g
		cands = append(cands, cand{g, base})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].base < cands[j].base })
	inUse := map[string]bool{}
	for _, n := range c.named {
		inUse[n.name] = true
	}
	for _, cd := range cands {
		name := cd.base
		for k := 2; inUse[name]; k++ {
			name = fmt.Sprintf("%s#%d", cd.base, k)
		}
		inUse[name] = true
		c.seq++
		c.named[cd.g] = &named{name: name, seq: c.seq}
	}
	return nil
}

const wm = "go.mau.fi/whatsmeow."

var debugCtl = os.Getenv("BADMAC_RC_DEBUG") != ""

func describeSnap(snap map[int64]*goroutine) string {
	var parts []string
	for _, g := range snap {
		if g.labels[taskLabel] != "" || strings.Contains(top(g), "SendMessage") || strings.Contains(top(g), "sendIQ") {
			parts = append(parts, fmt.Sprintf("%s@%v", g.state, g.frames))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s@%s", g.state, top(g)))
	}
	sort.Strings(parts)
	return strings.Join(parts, " | ")
}

// baseName names a parked goroutine from its labels and stack.
func (c *ctl) baseName(g *goroutine) string {
	if t := g.labels[taskLabel]; t != "" {
		return t
	}
	switch {
	case g.creator == wm+"(*Client).handlerQueueLoop":
		return "recv"
	case g.creator == wm+"(*Client).decryptMessages":
		return "retry:" + c.originOf(g.createdIn)
	case g.creator == wm+"(*Client).handleReceipt":
		return "resend:" + c.originOf(g.createdIn)
	case g.creator == wm+"(*Client).handleConnectSuccess":
		return "login"
	case g.calls(wm + "(*Client).handleEncryptNotification"):
		return "notify"
	}
	fn := g.creator
	if i := strings.LastIndex(fn, "."); i >= 0 {
		fn = fn[i+1:]
	}
	return "go:" + fn
}

func (c *ctl) originOf(g int64) string {
	if o, ok := c.origin[g]; ok {
		return o
	}
	return "?"
}

// runnable lists the parked goroutines by name, oldest name first.
func (c *ctl) runnable() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	type pn struct {
		name string
		seq  int
	}
	var out []pn
	for g := range c.parked {
		if n := c.named[g]; n != nil {
			out = append(out, pn{n.name, n.seq})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	names := make([]string, len(out))
	for i, p := range out {
		names[i] = p.name
	}
	return names
}

// isParked reports whether goroutine g is parked.
func (c *ctl) isParked(g int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parked[g] != nil
}

// byName returns the parked goroutine named name, and its call.
func (c *ctl) byName(name string) (int64, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for g, p := range c.parked {
		if n := c.named[g]; n != nil && n.name == name {
			return g, p.call, true
		}
	}
	return 0, "", false
}
