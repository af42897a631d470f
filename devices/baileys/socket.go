package baileys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
)

// SocketPrefix names the socket device: "baileys-socket@VERSION".
const SocketPrefix = "baileys-socket@"

// Stores of the socket device besides a user's auth module.
const (
	// MultiFile is Baileys' own useMultiFileAuthState, as Baileys' README
	// has a bot use it; the protocol baseline runs on it.
	MultiFile = "multifile"
	// CacheSuffix puts the store behind makeCacheableSignalKeyStore.
	CacheSuffix = "+cache"
)

// SocketStores are the socket device's default stores.
var SocketStores = []string{MultiFile, MultiFile + CacheSuffix}

// ParseSocketDevice checks "baileys-socket@VERSION" and returns the
// version: a pinned one (Versions) or "installed" (the bot's own Baileys,
// resolved as the adapter's package would: the npm package's peer).
func ParseSocketDevice(name string) (string, error) {
	v, ok := strings.CutPrefix(name, SocketPrefix)
	if ok && (slices.Contains(Versions, v) || v == "installed") {
		return v, nil
	}
	return "", fmt.Errorf("unknown device %q (known: %s%s, or %sinstalled for the Baileys the adapter resolves)", name, SocketPrefix, strings.Join(Versions, ", "+SocketPrefix), SocketPrefix)
}

// AuthStore is a store name's parts: the auth module (MODULE#FUNCTION,
// empty for Baileys' useMultiFileAuthState) and whether it sits behind
// makeCacheableSignalKeyStore.
type AuthStore struct {
	Module string
	Cache  bool
}

// ParseStore reads a socket-device store name: multifile, or
// MODULE:FUNCTION (a bot author's auth state: a function of a directory
// returning { state: { creds, keys }, saveCreds }; MODULE#FUNCTION is read
// too, but a schedule file takes # for a comment, so StoreName writes :),
// either with +cache.
func ParseStore(name string) (AuthStore, error) {
	base, cache := strings.CutSuffix(name, CacheSuffix)
	if base == MultiFile {
		return AuthStore{Cache: cache}, nil
	}
	i := strings.LastIndexAny(base, "#:")
	if i > 0 && i < len(base)-1 && !strings.ContainsAny(base, " \t\n") && !strings.ContainsAny(base[i+1:], "/.") {
		return AuthStore{Module: base[:i] + "#" + base[i+1:], Cache: cache}, nil
	}
	return AuthStore{}, fmt.Errorf("store %q: want %s or MODULE:FUNCTION (a path without spaces and the function it exports), optionally with %s", name, MultiFile, CacheSuffix)
}

// StoreName is the store's name in rows and schedules.
func (a AuthStore) StoreName() string {
	n := MultiFile
	if a.Module != "" {
		i := strings.LastIndex(a.Module, "#")
		n = a.Module[:i] + ":" + a.Module[i+1:]
	}
	if a.Cache {
		n += CacheSuffix
	}
	return n
}

// SocketOptions are how a SocketDevice starts its Node processes.
type SocketOptions struct {
	// Argv overrides the adapter command (tests); empty: node socket.mjs.
	Argv []string
	// Timeout bounds every request and every wait for the server (0:
	// devproto.DefaultTimeout).
	Timeout time.Duration
	// Dir holds the runs' auth directories ("": the system's temp dir).
	Dir string
}

// SocketDevice is Baileys' own makeWASocket as a harness.Device
// (docs/baileys.md): a Node process (adapters/baileys/socket.mjs) runs the
// socket of a Baileys version on the schedule's auth state, connected to a
// loopback fake WhatsApp web server (fakeserver/waweb) whose contacts are
// the harness's peers. Every store call and every write of the store waits
// for a step, the server's frames reach Baileys one at a time when the
// harness lets them, and the clock is virtual: a schedule replays byte
// for byte. The Node process is reused across schedules (reset) and
// replaced when a crash kills it.
//
// Schedules name tasks as the harness does: a receive is named after the
// copy it handles (m1, m1.2), a reply after its id, a resend Baileys makes
// for a peer's retry receipt r1~retryN, the login's work "login".
type SocketDevice struct {
	mu      sync.Mutex
	version string
	name    string
	opt     SocketOptions
	argv    []string
	proc    *devproto.Conn
	tmp     string
	n       int
	// writesFiles caches, per store, whether its writes go to files
	// (the torn scenario tears only files).
	writesFiles map[string]bool
	// spare is a process starting for the next crash's restart.
	spare chan started
	// follow is, per candidate result, what its reference run needs.
	follow map[*harness.Result]followed
}

// followed is a candidate run as its reference run needs it: its logins
// (refLogin), and, when the reference run cannot be exact for it, why
// (sockRun.inexact).
type followed struct {
	logins  []refLogin
	inexact string
}

// SocketCommand is the adapter's command line for a Baileys version
// ("installed": the package's own resolution of baileys).
func SocketCommand(adapter, version string) []string {
	spec := version
	if version == "installed" {
		spec = "baileys"
	}
	return []string{"node", filepath.Join(adapter, "socket.mjs"), "--baileys", spec}
}

// OpenSocket starts the socket device for a Baileys version.
func OpenSocket(ctx context.Context, version string, opt SocketOptions) (*SocketDevice, error) {
	argv := opt.Argv
	if len(argv) == 0 {
		ad, err := socketAdapterDir(version)
		if err != nil {
			return nil, err
		}
		argv = SocketCommand(ad, version)
	}
	tmp, err := os.MkdirTemp(opt.Dir, "badmac-baileys-socket-")
	if err != nil {
		return nil, err
	}
	d := &SocketDevice{version: version, name: SocketPrefix + version, opt: opt, argv: argv, tmp: tmp, writesFiles: map[string]bool{},
		follow: map[*harness.Result]followed{}}
	if d.proc, err = d.start(ctx); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	if version == "installed" {
		// The adapter greets with the version it loaded.
		d.name = d.proc.Hello.Device
	}
	return d, nil
}

// socketAdapterDir finds the adapter: $BADMAC_BAILEYS_ADAPTER with a
// socket.mjs (the npm package in a bot's repository sets it: there the
// bot's own Baileys serves "installed" and its own version), else the
// checkout's adapters/baileys with its pinned versions installed.
func socketAdapterDir(version string) (string, error) {
	if d := os.Getenv("BADMAC_BAILEYS_ADAPTER"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "socket.mjs")); err == nil {
			if _, err := exec.LookPath("node"); err != nil {
				return "", fmt.Errorf("Baileys adapter: node: %w", err)
			}
			return d, nil
		}
	}
	return AdapterDir()
}

func (d *SocketDevice) start(ctx context.Context) (*devproto.Conn, error) {
	c, err := devproto.Start(ctx, d.argv, "", d.opt.Timeout)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(c.Hello.Device, SocketPrefix) {
		c.Kill()
		return nil, fmt.Errorf("device %s: the adapter greeted as %q", d.name, c.Hello.Device)
	}
	return c, nil
}

type started struct {
	c   *devproto.Conn
	err error
}

// replacement is a new Node process for one a crash killed: a spare
// started in the background when the last one was taken (importing
// Baileys takes seconds), so a crash scenario does not wait for it.
func (d *SocketDevice) replacement(ctx context.Context) (*devproto.Conn, error) {
	var c *devproto.Conn
	var err error
	if d.spare != nil {
		s := <-d.spare
		c, err = s.c, s.err
	}
	if c == nil || c.Exited(0) {
		if c, err = d.start(ctx); err != nil {
			return nil, err
		}
	}
	ch := make(chan started, 1)
	d.spare = ch
	go func() {
		c, err := d.start(context.Background())
		ch <- started{c, err}
	}()
	return c, nil
}

// Close ends the Node process and removes the runs' directories.
func (d *SocketDevice) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil {
		d.proc.Close()
	}
	if d.spare != nil {
		if s := <-d.spare; s.c != nil {
			s.c.Close()
		}
	}
	os.RemoveAll(d.tmp)
}

// Name is "baileys-socket@VERSION".
func (d *SocketDevice) Name() string { return d.name }

// socketOps are the ops the socket device runs: the adapter's, wait (its
// virtual clock) and the LID ops but migrate (socketlid.go).
var socketOps = harness.Implements(harness.SendOp{}, harness.DeliverOp{}, harness.ReplyOp{}, harness.StepOp{}, harness.RunOp{},
	harness.ReadOp{}, harness.DupOp{}, harness.CrashOp{}, harness.StopOp{}, harness.RestartOp{}, harness.WaitOp{},
	harness.PhaseOp{}, harness.ViaOp{}, harness.MappingOp{}, harness.ForgetOp{})

// Check refuses what the socket device cannot run: free mode (its calls
// wait at gates), the account's LID migration (socketLIDRefused), group messages, contacts with several devices (a reply
// goes to every device of a contact, a schedule's to one), two instances,
// snapshots, reinstalls; torn on a store that writes no files.
func (d *SocketDevice) Check(setup *harness.Schedule, mode harness.Mode) error {
	no := func(what string) error { return fmt.Errorf("device %s cannot run %s", d.name, what) }
	switch {
	case setup.Device != "" && setup.Device != d.name:
		return fmt.Errorf("device %s cannot run a schedule for device %s", d.name, setup.Device)
	case mode != harness.Controlled && mode != harness.Serial:
		return no(fmt.Sprintf("mode %s (its store calls wait at gates for the harness: controlled, or serial)", mode))
	case setup.Group != "":
		return no("group messages (not wired to the fake server's groups)")
	case setup.Instances > 1:
		return no(fmt.Sprintf("%d instances (one socket per schedule)", setup.Instances))
	}
	if _, err := ParseStore(setup.Store); err != nil {
		return no(err.Error())
	}
	for _, c := range setup.Contacts {
		if c.Devices > 1 {
			return no(fmt.Sprintf("contact %s:%d (a reply goes to every device of a contact, a schedule's to one)", c.User, c.Devices))
		}
	}
	if sc, err := scenarios.Lookup(setup.Scenario); err == nil {
		switch {
		case socketLIDRefused(sc.Name) != "":
			return no(fmt.Sprintf("scenario %s (%s)", sc.Name, socketLIDRefused(sc.Name)))
		case sc.Group:
			return no(fmt.Sprintf("scenario %s (group messages)", sc.Name))
		case sc.Instances > 1:
			return no(fmt.Sprintf("scenario %s (%d instances)", sc.Name, sc.Instances))
		case sc.Crash == scenarios.CrashRollback:
			return no(fmt.Sprintf("scenario %s (no backup of the auth state)", sc.Name))
		case sc.Crash == scenarios.CrashReinstall || sc.Crash == scenarios.CrashRekey:
			return no(fmt.Sprintf("scenario %s (op %s)", sc.Name, sc.Crash))
		case sc.Crash == scenarios.CrashTorn && mode == harness.Controlled:
			files, err := d.storeWritesFiles(setup.Store)
			if err != nil {
				return no(fmt.Sprintf("scenario %s on store %s: %v", sc.Name, setup.Store, err))
			}
			if !files {
				return no(fmt.Sprintf("scenario %s on store %s (it writes no files: nothing to tear)", sc.Name, setup.Store))
			}
		}
	}
	if err := socketOps.Refuse(d.name, setup.Ops, nil); err != nil {
		return err
	}
	for _, op := range setup.Ops {
		if inst := harness.Inst(op); inst != 0 {
			return no(fmt.Sprintf("op %q (instance %d)", op, inst))
		}
	}
	return nil
}

// storeWritesFiles provisions the store once in a scratch directory and
// reports whether any of its writes went to a file.
func (d *SocketDevice) storeWritesFiles(store string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.writesFiles[store]; ok {
		return v, nil
	}
	probe := &harness.Schedule{Device: d.name, Seed: 1, Scenario: "probe", Discipline: harness.Locked, Store: store,
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}}
	ctx := context.Background()
	r, err := d.newRun(ctx, probe, false)
	if err != nil {
		return false, err
	}
	defer r.close()
	if err := r.setup(); err != nil {
		return false, err
	}
	files := r.fileWrites > 0
	d.writesFiles[store] = files
	return files, nil
}

// Exec runs setup with ops from src, then the drain.
func (d *SocketDevice) Exec(ctx context.Context, setup *harness.Schedule, mode harness.Mode, src harness.Source) (*harness.Schedule, *harness.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := setup.Clone()
	s.Device = d.name
	return d.exec(ctx, s, mode == harness.Serial, src)
}

// Baseline is the protocol baseline: the explicit schedule, every task to
// its end as it starts, on Baileys' own useMultiFileAuthState (no cache)
// of the same version. A store the user brings is never its own baseline.
func (d *SocketDevice) Baseline(ctx context.Context, s *harness.Schedule) (*harness.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := s.Clone()
	b.Store = MultiFile
	_, res, err := d.exec(ctx, b, true, nil)
	return res, err
}

// Reference is the same explicit schedule under the same Baileys on
// Baileys' own useMultiFileAuthState (behind makeCacheableSignalKeyStore
// when the candidate was), each store call atomic and exactly as slow as
// the candidate's: it waits for as many steps as the candidate's call
// took below its store, then takes effect whole, and a call the
// candidate's crash completed completes at the kill here too (refLogin).
// What the candidate ends worse than this run is its store's (store
// blamed). Baileys' own races, which a slower store widens, are the same
// in both runs; a crash's losses are judged as any loss (harness.Judge):
// a receive the crash killed after a write of its decrypt and before its
// attempt is lost to the crash (KilledUnacked, receives), anything else
// is blamed (docs/baileys.md, "Who is blamed").
func (d *SocketDevice) Reference(ctx context.Context, s *harness.Schedule, res *harness.Result) (*harness.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.follow[res]
	if !ok {
		return nil, fmt.Errorf("device %s: no record of the run to replay on the reference store", d.name)
	}
	delete(d.follow, res)
	if !d.judgesStore(s, f) {
		res.StoreNotJudged = d.notJudged(f)
		return res, nil // not judged: the reference run would not be exact
	}
	st, err := ParseStore(s.Store)
	if err != nil {
		return nil, err
	}
	ref := s.Clone()
	ref.Store = MultiFile
	if st.Cache {
		ref.Store += CacheSuffix
	}
	logins := f.logins
	if logins == nil {
		logins = []refLogin{}
	}
	_, out, err := d.execWith(ctx, ref, false, logins, nil)
	return out, err
}

// JudgesStore reports whether Reference judges the store of run res
// (harness.StoreJudger), for the runs in which every message was
// delivered cleanly: see judgesStore.
func (d *SocketDevice) JudgesStore(s *harness.Schedule, res *harness.Result) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.follow[res]
	if !ok {
		return true // a serial run: judged as before (nothing to follow)
	}
	delete(d.follow, res)
	if !d.judgesStore(s, f) {
		res.StoreNotJudged = d.notJudged(f)
		return false
	}
	return true
}

// notJudged says why judgesStore declined a LID schedule's run.
func (d *SocketDevice) notJudged(f followed) string {
	if f.inexact != "" {
		return "the reference run would not be exact: " + f.inexact + " (docs/baileys.md, \"Who is blamed\")"
	}
	return "Baileys " + d.version + " on a LID schedule: its reference run is not exact there (docs/baileys.md, \"Who is blamed\")"
}

// judgesStore is the rule for a LID schedule (docs/baileys.md, "Who is
// blamed"): its store is judged only when the reference run is exact for
// it. On 7.0.0-rc14 that is a run in which no task's store call touched
// a key of another task's call that was half written (some of its writes
// released, not all), and no crash killed a call half written
// (sockRun.inexact): the reference run's calls take effect whole at
// their last write, the candidate's keys each at its own (a rename per
// key in Baileys' useMultiFileAuthState too), and LID schedules are where
// concurrent receives read the PN/LID pair another receive is writing.
// On 6.17.16, never: it has no lid-mapping keys (a LID schedule asks
// nothing more of a store), and its reference run diverges from a
// correct store's with the same store calls line for line (docs/lid.md
// §6.6, not traced). Other schedules are judged as before.
func (d *SocketDevice) judgesStore(s *harness.Schedule, f followed) bool {
	if !s.LID() {
		return true
	}
	return f.inexact == "" && !strings.HasPrefix(d.version, "6.")
}

func (d *SocketDevice) exec(ctx context.Context, s *harness.Schedule, serial bool, src harness.Source) (*harness.Schedule, *harness.Result, error) {
	return d.execWith(ctx, s, serial, nil, src)
}

func (d *SocketDevice) execWith(ctx context.Context, s *harness.Schedule, serial bool, ref []refLogin, src harness.Source) (*harness.Schedule, *harness.Result, error) {
	r, err := d.newRun(ctx, s, serial)
	if err != nil {
		return nil, nil, err
	}
	r.ref = ref
	defer r.close()
	if err := r.setup(); err != nil {
		return nil, nil, r.wrap(err)
	}
	if src == nil {
		src = harness.Ops(s.Ops)
	}
	for !r.ended {
		op, ok := src.Next(r)
		if !ok {
			break
		}
		if err := r.apply(op); err != nil {
			return nil, nil, r.wrap(fmt.Errorf("%s: %w", op, err))
		}
	}
	if err := r.drain(); err != nil {
		return nil, nil, r.wrap(fmt.Errorf("drain: %w", err))
	}
	out := s.Clone()
	out.Ops = r.applied
	res := r.result()
	if !serial && ref == nil {
		if len(d.follow) > 256 { // results judged clean never ask for their reference
			clear(d.follow)
		}
		d.follow[res] = followed{logins: r.logins, inexact: r.inexact}
	}
	return out, res, nil
}

// errDead is a device process that died without being asked to.
var errDead = errors.New("the Node process died")
