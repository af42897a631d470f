package procs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/seeded"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// Device is the device as a child process (`badmac device`) behind the
// harness's device interface (docs/design.md §4.1): a scenario's schedule
// runs on it unchanged and the harness's oracle judges it.
//
// Each schedule gets a fresh database of its store (sqlite or postgres),
// removed after, and one child process on it; the parent holds the fake
// contacts, the server and the oracle. The ops map to requests: send (a
// contact encrypts, the server queues it), deliver (a recv request: the
// child decrypts; a failure's retry receipt is counted and keyed in the
// child by whatsmeow's rules and answered by the contact), reply (a send
// request; the contact's bundle when the child has no session), read (the
// contact decrypts; its retry receipt is a Retry send request, which the
// child handles as whatsmeow's handleRetryReceipt), dup, crash (SIGKILL),
// stop (stdin closed: the child exits cleanly) and restart (a new child on
// the same database, its credentials and unclaimed prekeys checked),
// snapshot and rollback (a copy of the SQLite file and its WAL taken
// between requests, written back under killed processes; PostgreSQL is
// not backed up), reinstall and rekey (the contact's side only).
//
// Without Gates each request runs whole in the child, in op order: the
// child's interleaving is per request, not per store call, so step and run
// do nothing and the View's Runnable is always empty. A crash therefore
// lands between requests, where nothing is un-acked: on a real database it
// loses nothing, and what it shows is what the database made durable and
// what the restarted process reloads. With Gates every store call of a
// request's task is a gate (harnessgates.go): tasks are in flight at once
// under the discipline's locks, step and run advance them, a crash kills
// the processes with tasks parked inside their requests (a killed receive
// is redelivered, a killed send redone) and overlap runs. Contacts send
// direct messages and group messages (sender keys, the distribution in a
// DM part). With instances > 1 that many processes run on the one
// database, deliver and reply going to the one the op names (instance 0
// handles retry receipts and the drain, as in the model): without gates
// they take turns, request by request (scenario replica; overlap is
// refused).
//
// With Local the device runs in this process over any store variant, the
// Local launcher: fast, and a crash drops the storage's volatile state
// (stores.Crasher, by the crash's MODE) as the model's does, so a store
// that loses writes on a crash is caught through the same ops. On the
// child a crash's MODE does nothing: a killed process's committed writes
// are the database's.
//
// The child's crypto/rand is seeded from the schedule's seed and the
// restart count, the parent's from the seed: a schedule replays byte for
// byte.
type Device struct {
	// Exe and Args are the command that runs `badmac device` (Args go
	// before the device's flags); Env its environment (nil: this
	// process's).
	Exe  string
	Args []string
	Env  []string
	// Local runs the device in this process instead (Exe is unused).
	Local bool
	// Storage, when set, opens the Local device's storage instead of the
	// schedule's store's (a test wraps a store to count or break calls).
	Storage func(context.Context) (stores.Storage, error)
	// WriteBehind > 0 runs the child in a non-durable setting: its session
	// writes wait in process memory and reach the database every
	// WriteBehind writes (and at a clean exit), so a SIGKILL loses them.
	// A broken variant for tests, named procs-writebehind.
	WriteBehind int
	// Gates runs the child with gates (-gates, Handler.Gated): every
	// store call of a request's task waits for a step op, tasks of
	// several requests are in flight at once (under the discipline's
	// locks, taken here), a crash lands inside requests and instances
	// overlap (harnessgates.go). Named with "+gates".
	Gates bool
	// Timeout bounds each answer from a child process (0:
	// DefaultTimeout); a child that does not answer in time is killed and
	// the schedule fails with an error. It is a hang detector, not a
	// measurement: no verdict depends on it.
	Timeout time.Duration
}

// DefaultTimeout is a child's time to answer one request when Device
// gives none: far above what a request takes on a loaded machine.
const DefaultTimeout = 2 * time.Minute

// NewDevice is the real child: this program's `device` subcommand when exe
// is empty.
func NewDevice(exe string) (Device, error) {
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return Device{}, fmt.Errorf("finding the badmac binary for the device process: %w", err)
		}
	}
	return Device{Exe: exe, Args: []string{"device"}}, nil
}

// Name is "procs", or "procs-local" for the in-process launcher.
func (d Device) Name() string {
	n := "procs"
	switch {
	case d.Local:
		n = "procs-local"
	case d.WriteBehind > 0:
		n = "procs-writebehind"
	}
	if d.Gates {
		n += GatesSuffix
	}
	return n
}

// GatesSuffix names a Device with Gates: "procs+gates".
const GatesSuffix = "+gates"

// procsOps are the op types the child runs: all but the LID addressing
// ops (the child has no server stanzas; docs/lid.md runs them on the real
// client).
var procsOps = harness.Except(harness.PhaseOp{}, harness.ViaOp{}, harness.MappingOp{}, harness.ForgetOp{}, harness.MigrateOp{})

// Check refuses what the child cannot run.
func (d Device) Check(setup *harness.Schedule, mode harness.Mode) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("device %s: %s", d.Name(), fmt.Sprintf(format, a...))
	}
	switch {
	case setup.Device != "" && setup.Device != d.Name():
		return fail("the schedule is for device %s", setup.Device)
	case mode != harness.Controlled:
		return fail("mode %s: each request runs whole in the child, in op order (only controlled)", mode)
	case setup.Discipline != harness.Locked && setup.Discipline != harness.Txn:
		return fail("discipline %s: the child runs locked or txn (whatsmeow's decrypted-event buffer)", setup.Discipline)
	case d.Gates && setup.Discipline == harness.Txn:
		return fail("discipline txn with gates: a receive parked inside its transaction would hold the database's lock, and the tasks waiting for it would wait inside the database where no gate sees them (only locked)")
	case setup.Scenario == "overlap" && !d.Gates:
		return fail("scenario overlap: each request runs whole, so its processes would take turns (scenario replica; device procs%s runs it)", GatesSuffix)
	case setup.Scenario == "rollback" && !d.Local && setup.Store != "sqlite":
		return fail("scenario rollback on %s: only a SQLite file is backed up and restored", setup.Store)
	}
	if err := procsOps.Refuse(d.Name(), setup.Ops, nil); err != nil {
		return err
	}
	if !d.Local && setup.Store != "sqlite" && setup.Store != "postgres" {
		return fail("store %s: the child runs on a database (sqlite or postgres)", setup.Store)
	}
	if setup.Store == "postgres" && os.Getenv(sqlstores.PostgresEnv) == "" {
		return fail("store postgres: $%s is unset (scripts/postgres.sh)", sqlstores.PostgresEnv)
	}
	if _, err := stores.Lookup(setup.Store); err != nil {
		return fail("%v", err)
	}
	return nil
}

// Exec runs setup with ops from src, then the drain.
func (d Device) Exec(ctx context.Context, setup *harness.Schedule, mode harness.Mode, src harness.Source) (*harness.Schedule, *harness.Result, error) {
	if err := d.Check(setup, mode); err != nil {
		return nil, nil, err
	}
	return d.exec(ctx, setup, src)
}

func (d Device) exec(ctx context.Context, setup *harness.Schedule, src harness.Source) (*harness.Schedule, *harness.Result, error) {
	defer seeded.Bind(seeded.NewStream(setup.Seed, 0x50))()
	r, err := d.open(ctx, setup)
	if err != nil {
		return nil, nil, err
	}
	defer r.close()
	for {
		op, ok := src.Next(r)
		if !ok {
			break
		}
		if err := r.apply(op); err != nil {
			return nil, nil, fmt.Errorf("%s: op %d (%s): %w", d.Name(), len(r.sched.Ops), op, err)
		}
	}
	if err := r.drain(); err != nil {
		return nil, nil, fmt.Errorf("%s: drain: %w", d.Name(), err)
	}
	return r.sched.Clone(), r.result(), nil
}

// Baseline is the schedule serially on the reference store (the model).
func (Device) Baseline(ctx context.Context, s *harness.Schedule) (*harness.Result, error) {
	return harness.Baseline(ctx, s)
}

// RestoreBaseline is the protocol baseline with the schedule's backups
// restored at the same ops (harness.RestoreBaseline): the child runs each
// request whole as it starts, as the serial baseline does, so a backup or
// a kill lands between the same requests in both.
func (Device) RestoreBaseline(ctx context.Context, s *harness.Schedule, _ *harness.Result) (*harness.Result, error) {
	return harness.RestoreBaseline(ctx, s, nil)
}

// Reference runs the same explicit schedule with the same client code (the
// Local launcher) on the reference store: what a store that loses nothing
// gives this device on these ops. The reference store has no transactions,
// so txn runs as locked (as harness.SameClient does).
func (d Device) Reference(ctx context.Context, s *harness.Schedule, res *harness.Result) (*harness.Result, error) {
	if d.Local && s.Store == "reference" {
		return res, nil
	}
	ref := s.Clone()
	ref.Device, ref.Store = "", "reference"
	if ref.Discipline == harness.Txn {
		ref.Discipline = harness.Locked
	}
	_, out, err := Device{Local: true, Gates: d.Gates}.exec(ctx, ref, harness.Ops(s.Ops))
	return out, err
}

// hrun is one schedule on the device: the parent's side.
type hrun struct {
	ctx     context.Context
	dev     Device
	sched   *harness.Schedule
	storage stores.Storage
	launch  Launcher
	txn     bool

	procs    []Proc // one per instance, on the one database
	inc      int    // restarts so far
	writes   []int  // store writes of each process since the last start
	requests int    // requests since the last start
	down     bool
	refused  bool

	// The harness side: server, contacts, messages, history, and the
	// View's Peers, HeardFrom, Pending and Delivered.
	*harness.Contacts
	me    *endpoint.Endpoint // the device's public side, for bundles
	creds endpoint.Creds
	redo  []redo // receipts that arrived while the device was down

	// The last backup (snapshot op): the SQLite file and its WAL by
	// suffix, or Local storage's snapshot.
	snapFiles map[string][]byte
	snap      map[string][]byte

	crashes     int
	crashPoints []string
	regenerated bool
	lostPreKeys int

	tasks // with gates: the tasks in flight (harnessgates.go)
}

// redo is a retry receipt for the device to handle after its restart.
type redo struct {
	msg string
	run func(id string) error
}

func (d Device) open(ctx context.Context, setup *harness.Schedule) (*hrun, error) {
	if len(setup.Contacts) == 0 {
		return nil, errors.New("schedule has no contacts")
	}
	v, err := stores.Lookup(setup.Store)
	if err != nil {
		return nil, err
	}
	open := v.Open
	if d.Local && d.Storage != nil {
		open = d.Storage
	}
	st, err := open(ctx)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", v.Name, err)
	}
	r := &hrun{ctx: ctx, dev: d, sched: setup.Clone(), storage: st, txn: setup.Discipline == harness.Txn,
		Contacts: harness.NewContacts(harness.ContactRules{}), tasks: newTasks(d.Gates, max(setup.Instances, 1))}
	r.sched.Ops, r.sched.Device = nil, d.Name()
	if d.Local {
		r.launch = local(st, r.txn, d.Gates)
	} else {
		loc, ok := sqlstores.Locate(st)
		if !ok {
			st.Close()
			return nil, fmt.Errorf("store %s cannot be located by another process", v.Name)
		}
		r.launch = Child{Exe: d.Exe, Args: d.Args, Env: d.Env, Loc: loc, Seed: setup.Seed, Txn: r.txn, WriteBehind: d.WriteBehind, Gates: d.Gates, Timeout: d.Timeout}.Launch
	}
	if err := r.init(); err != nil {
		r.close()
		return nil, err
	}
	if err := r.AddPeers(ctx, r.me.Address(), setup.Contacts); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// init starts incarnation 0: credentials and prekeys drawn and saved in
// the child, the bundle uploaded (pairing).
func (r *hrun) init() error {
	p, err := r.launch(r.ctx, 0, 0)
	if err != nil {
		return err
	}
	r.procs, r.writes = []Proc{p}, []int{0}
	var pks []*keys.PreKey
	if r.creds, pks, err = provision(r.ctx, p); err != nil {
		return err
	}
	r.me = &endpoint.Endpoint{JID: DeviceJID, Creds: r.creds}
	r.Server().Upload(r.me.Address(), r.me.Bundle, pks)
	// The other instances start on the paired device, as a second
	// process of an overlapping deploy does.
	for i := 1; i < max(r.sched.Instances, 1); i++ {
		p, err := r.launch(r.ctx, i, 0)
		if err != nil {
			return fmt.Errorf("instance %d: %w", i, err)
		}
		r.procs, r.writes = append(r.procs, p), append(r.writes, 0)
		if _, err := load(r.ctx, p); err != nil {
			return fmt.Errorf("instance %d: load: %w", i, err)
		}
	}
	return nil
}

func (r *hrun) close() {
	if !r.down {
		for _, p := range r.procs {
			_ = p.Close()
		}
	}
	_ = r.storage.Close()
}

func (r *hrun) log(format string, a ...any) { r.Logf(format, a...) }

// do sends one request to the running process. The process never dies
// under a request here (a crash is the parent's kill, between requests or
// of processes parked at gates), so any failure to answer is an error of
// the run; a child silent past the timeout is killed (devproto.Conn).
func (r *hrun) do(inst int, req devproto.Request) (devproto.Reply, error) {
	req.Rules = true
	resp, err := r.procs[inst].Do(r.ctx, req)
	if err != nil {
		return devproto.Reply{}, fmt.Errorf("%s request to instance %d: %w", req.Op, inst, err)
	}
	r.writes[inst] = resp.Writes
	r.requests++
	return resp, nil
}

// View.

// Runnable is empty without gates (each request runs whole when its op
// is applied); with gates, the parked tasks in start order.
func (r *hrun) Runnable() []string { return r.runnable() }

func (r *hrun) Down() bool { return r.down }

// PendingWrites is what a crash would lose: only Local storage with
// volatile state has any (a real database keeps every committed write
// through a SIGKILL).
func (r *hrun) PendingWrites() int {
	if c, ok := r.storage.(stores.Crasher); ok && r.dev.Local {
		return c.PendingWrites()
	}
	return 0
}

// apply runs one op and records it; ops that do not apply do nothing.
func (r *hrun) apply(op harness.Op) error {
	r.sched.Ops = append(r.sched.Ops, op)
	ctx := r.ctx
	switch o := op.(type) {
	case harness.SendOp, harness.GroupOp:
		return r.Send(ctx, op, r.sched.Group)
	case harness.DeliverOp:
		if r.down || o.Inst >= len(r.procs) {
			return nil
		}
		if d := r.Inbound(o); d != nil {
			return r.receive(o.Inst, d)
		}
	case harness.ReplyOp:
		if r.down || o.Inst >= len(r.procs) {
			return nil
		}
		p, msg, id, body, ok := r.Reply(o)
		if !ok {
			return nil
		}
		return r.sendReply(o.Inst, p, msg, id, body)
	case harness.ReadOp:
		if d := r.Outbound(o); d != nil {
			return r.read(d)
		}
	case harness.DupOp:
		r.Dup(o)
	case harness.CrashOp:
		r.crash(o.Mode)
	case harness.SnapshotOp:
		return r.snapshot(op)
	case harness.RollbackOp:
		return r.rollback()
	case harness.StopOp:
		return r.stop()
	case harness.RestartOp:
		return r.restart()
	case harness.ReinstallOp:
		return r.Reinstall(ctx, o)
	case harness.RekeyOp:
		return r.Rekey(ctx, o)
	case harness.StepOp:
		if r.isParked(o.Task) {
			return r.step(o.Task)
		}
	case harness.RunOp:
		for r.isParked(o.Task) {
			if err := r.step(o.Task); err != nil {
				return err
			}
		}
	case harness.WaitOp:
		// A clock the child does not have.
	default:
		return fmt.Errorf("device procs does not implement op %s", op.Verb())
	}
	return nil
}

// receive has the child decrypt delivery d; a failure's retry receipt (the
// child counted it and drew its keys) goes to the contact, who answers it.
func (r *hrun) receive(inst int, d *fakeserver.Delivery) error {
	r.Took(d)
	req := devproto.Request{Op: devproto.OpDecrypt, Task: d.ID, Peer: d.From.Name(), PeerDev: uint16(d.From.DeviceID()),
		Kind: d.Kind, CT: d.CT, Msg: d.Msg, Count: d.Retry, Group: d.Group, DMKind: d.DMKind, DMCT: d.DMCT}
	return r.start(&job{inst: inst, req: req, del: d, end: func(resp devproto.Reply, e devproto.Event) (*devproto.Request, error) {
		if resp.Note != "" {
			r.log("%s: %s", d.ID, resp.Note)
		}
		r.Decrypted(d, e.OK, e.PT, endpoint.Class(e.Class), e.Err)
		if resp.Receipt == 0 {
			return nil, nil
		}
		var b *prekey.Bundle
		if resp.PreKey != nil {
			b = r.me.Bundle(resp.PreKey.Key())
		}
		return nil, r.Answer(r.ctx, d.From, d.Msg, resp.Receipt, b)
	}})
}

// sendReply is the device sending msg to p: the child encrypts from its
// session, or from p's bundle, fetched from the server, when it has none.
func (r *hrun) sendReply(inst int, p *fakeserver.Peer, msg, id, body string) error {
	to := p.Address()
	req := devproto.Request{Op: devproto.OpEncrypt, Task: id, Peer: to.Name(), PeerDev: uint16(to.DeviceID()),
		PT: fakeserver.Payload{ID: msg, Body: body}.Encode(), Msg: msg}
	j := &job{inst: inst, req: req}
	j.end = func(resp devproto.Reply, e devproto.Event) (*devproto.Request, error) {
		if e.NeedBundle && j.req.Bundle == nil {
			b, err := r.Server().FetchBundle(to)
			if err != nil {
				r.log("%s: send failed: fetching a bundle: %v", id, err)
				return nil, nil
			}
			again := j.req
			again.Bundle = devproto.FromBundle(b)
			return &again, nil
		}
		if !e.OK {
			r.log("%s: send failed: %s", id, e.Err)
			return nil, nil
		}
		r.ToPeer(p, msg, id, 0, e.Kind, e.CT)
		return nil, nil
	}
	return r.start(j)
}

// read is the contact taking a delivery from the device; its retry
// receipt, by whatsmeow's rules (Contacts.Read), the child handles when it
// is up.
func (r *hrun) read(d *fakeserver.Delivery) error {
	rc, err := r.Read(r.ctx, d)
	if err != nil || rc == nil {
		return err
	}
	job := func(id string) error { return r.retryReceipt(rc.Peer, rc.Msg, id, rc.Body, rc.Count, rc.Bundle) }
	if r.down {
		r.redo = append(r.redo, redo{msg: rc.Msg, run: job})
		return nil
	}
	return job(rc.ID)
}

// retryReceipt has the child handle p's retry receipt for msg (count
// retry, keys b): admitted or dropped, the session recreated from a
// fetched bundle if the child says so, then the message encrypted again.
// Instance 0 handles receipts, as in the model.
func (r *hrun) retryReceipt(p *fakeserver.Peer, msg, id, body string, retry int, b *prekey.Bundle) error {
	to := p.Address()
	req := devproto.Request{Op: devproto.OpEncrypt, Task: id, Peer: to.Name(), PeerDev: uint16(to.DeviceID()),
		PT: fakeserver.Payload{ID: msg, Body: body}.Encode(), Retry: true, Msg: msg, Count: retry}
	if b != nil {
		req.Bundle = devproto.FromBundle(b)
	}
	j := &job{inst: 0, req: req}
	j.end = func(resp devproto.Reply, e devproto.Event) (*devproto.Request, error) {
		switch {
		case resp.Dropped:
			r.log("%s: retry receipt %d dropped", id, retry)
			return nil, nil
		case e.NeedBundle && !j.req.Fetched:
			fb, err := r.Server().FetchBundle(to)
			if err != nil {
				r.log("%s: send failed: fetching a bundle: %v", id, err)
				return nil, nil
			}
			r.log("%s: recreating the session (%s)", id, resp.Reason)
			again := j.req
			again.Bundle, again.Fetched = devproto.FromBundle(fb), true
			return &again, nil
		case !e.OK:
			r.log("%s: send failed: %s", id, e.Err)
			return nil, nil
		}
		r.ToPeer(p, msg, id, retry, e.Kind, e.CT)
		return nil, nil
	}
	return r.start(j)
}

// crash kills the device process with SIGKILL (Local: drops it, and the
// storage's volatile state by mode as the model's crash does). Without
// gates it lands between requests: nothing is in flight, nothing un-acked;
// with gates the tasks in flight die at their gates (abandon).
func (r *hrun) crash(mode string) {
	if r.down {
		return
	}
	writes := 0
	for _, n := range r.writes {
		writes += n
	}
	where, inFlight := "between requests", r.inFlight()
	if len(inFlight) > 0 {
		where = fmt.Sprintf("inside requests (%s in flight)", strings.Join(inFlight, ", "))
	}
	r.crashPoints = append(r.crashPoints, fmt.Sprintf("crash (SIGKILL) %s, after %d requests and %d store writes since start %d",
		where, r.requests, writes, r.inc))
	for _, p := range r.procs {
		if k, ok := p.(interface{ Kill() }); ok {
			k.Kill()
		}
		_ = p.Close() // reaps the killed process; its exit status is the kill
	}
	lost := 0
	if c, ok := r.storage.(stores.Crasher); ok && r.dev.Local {
		lost = c.PendingWrites()
		c.Crash(mode)
	}
	r.abandon()
	r.down = true
	r.crashes++
	r.log("crash %q: device processes killed %s, %d pending writes hit", mode, where, lost)
}

// snapshot backs up the durable state: the SQLite file and its WAL as they
// are between requests (what a file copy of a live database's volume
// gets: the image a crash would leave), or Local storage's snapshot. A
// PostgreSQL database is not backed up: its rollback is a crash.
func (r *hrun) snapshot(op harness.Op) error {
	if r.dev.Local {
		if sn, ok := r.storage.(stores.Snapshotter); ok {
			r.snap = sn.Snapshot()
			r.log("%s: backup of the durable state taken", op)
		}
		return nil
	}
	loc, ok := sqlstores.Locate(r.storage)
	if !ok || loc.Driver != "sqlite" {
		return nil
	}
	files := map[string][]byte{}
	for _, suffix := range sqliteFiles {
		b, err := os.ReadFile(loc.DSN + suffix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		files[suffix] = b
	}
	r.snapFiles = files
	r.log("%s: backup of the durable state taken", op)
	return nil
}

// sqliteFiles are the suffixes of the files a SQLite database in WAL mode
// keeps its content in (the -shm index is rebuilt from them).
var sqliteFiles = []string{"", "-wal"}

// rollback is a backup restore: the device processes die, the database
// comes back as the last backup, and they restart from it. Without a
// backup it is a crash (the device stays down until restart).
func (r *hrun) rollback() error {
	if r.down {
		return nil
	}
	r.crash("")
	switch {
	case r.snap != nil:
		r.storage.(stores.Snapshotter).Restore(r.snap)
	case r.snapFiles != nil:
		loc, _ := sqlstores.Locate(r.storage)
		for _, suffix := range append(sqliteFiles, "-shm") {
			err := os.Remove(loc.DSN + suffix)
			if b, ok := r.snapFiles[suffix]; ok {
				err = os.WriteFile(loc.DSN+suffix, b, 0o600)
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("restoring the backup: %w", err)
			}
		}
	default:
		return nil
	}
	r.crashPoints[len(r.crashPoints)-1] += ", storage restored from the backup"
	r.log("rollback: storage restored from the backup")
	return r.restart()
}

// stop is a clean shutdown: the child's stdin closes and it exits (Local:
// the storage's clean shutdown, stores.Stopper).
func (r *hrun) stop() error {
	if r.down {
		return nil
	}
	if err := r.finishTasks(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	for i, p := range r.procs {
		if err := p.Close(); err != nil {
			return fmt.Errorf("stop: instance %d: %w", i, err)
		}
	}
	if s, ok := r.storage.(stores.Stopper); ok && r.dev.Local {
		if err := s.Stop(r.ctx); err != nil {
			r.log("stop: the store's clean shutdown failed: %v", err)
		}
	}
	r.down = true
	r.log("stop: clean shutdown")
	return nil
}

// restart starts a new device process on the same database: it loads its
// credentials (compared with the first ones) and must still hold every
// prekey the server hands out; receipts that came while it was down run.
func (r *hrun) restart() error {
	if !r.down || r.refused {
		return nil
	}
	r.inc++
	n := len(r.procs)
	var h devproto.Reply
	for i := range n {
		// Each process draws from its own stream: instance i of start k.
		p, err := r.launch(r.ctx, r.inc*n+i, 0)
		if err != nil {
			return fmt.Errorf("restart: instance %d: %w", i, err)
		}
		r.procs[i], r.writes[i] = p, 0
		if h, err = p.Do(r.ctx, devproto.Request{Op: devproto.OpLoad}); err != nil {
			return fmt.Errorf("restart: instance %d: %w", i, err)
		}
		if !h.OK {
			for _, p := range r.procs[:i+1] {
				_ = p.Close()
			}
			r.refused = true
			r.log("restart refused: %s", h.Err)
			return nil
		}
	}
	r.down, r.requests = false, 0
	if !wireCreds(h.Creds).Same(r.creds) {
		r.regenerated = true
		r.log("restart: CREDENTIALS REGENERATED (%v): identity and registration id changed", nil)
	} else {
		r.log("restart: credentials intact")
		if err := r.checkPreKeys(); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
	}
	if err := r.redoTasks(); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	jobs := r.redo
	r.redo = nil
	for _, j := range jobs {
		id, _ := r.Server().NextCopy(j.msg)
		r.log("restart: retry-handling of %s runs as %s", j.msg, id)
		if err := j.run(id); err != nil {
			return err
		}
	}
	return nil
}

// checkPreKeys asks the child for every uploaded, unclaimed prekey (a
// state request with their ids).
func (r *hrun) checkPreKeys() error {
	want := r.Server().Unclaimed(r.me.Address())
	req := devproto.Request{Op: devproto.OpState}
	for _, pk := range want {
		req.IDs = append(req.IDs, pk.KeyID)
	}
	resp, err := r.do(0, req)
	if err != nil {
		return err
	}
	if !resp.OK {
		return fmt.Errorf("prekeys: %s", resp.Err)
	}
	have := map[uint32][]byte{}
	for _, pk := range resp.PreKeys {
		have[pk.ID] = pk.Pub
	}
	lost := 0
	for _, pk := range want {
		if got, ok := have[pk.KeyID]; !ok || string(got) != string(pk.Pub[:]) {
			lost++
		}
	}
	if lost > 0 {
		r.lostPreKeys += lost
		r.log("restart: %d UNUSED PREKEYS LOST (uploaded, not yet handed out)", lost)
	}
	return nil
}

// drain is the harness's Finish: a crashed device is restarted, queued
// deliveries taken, replies read, until nothing is left.
func (r *hrun) drain() error {
	for {
		if r.down {
			if err := r.restart(); err != nil {
				return err
			}
		}
		if t := r.runnable(); len(t) > 0 {
			if err := r.step(t[0]); err != nil {
				return err
			}
			continue
		}
		take := func(d *fakeserver.Delivery) error { return r.receive(0, d) }
		if done, err := r.DrainStep(r.down, take, r.read); done || err != nil {
			return err
		}
	}
}

func (r *hrun) result() *harness.Result {
	res := r.Result()
	res.Crashes, res.CrashPoints = r.crashes, append([]string(nil), r.crashPoints...)
	res.RegeneratedCreds, res.StartRefused, res.LostPreKeys = r.regenerated, r.refused, r.lostPreKeys
	res.KilledUnacked = append([]string(nil), r.killedUnacked...)
	return res
}

var (
	_ harness.Device     = Device{}
	_ harness.Referencer = Device{}
	_ harness.View       = (*hrun)(nil)
)
