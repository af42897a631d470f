package harness

import (
	"context"
	"fmt"

	"github.com/badmac/badmac/stores"
)

// View is what a Source sees of a run in progress, whatever the device under
// test: generators decide the next op from it alone, so one scenario drives
// every device unchanged (docs/design.md §4.1).
type View interface {
	// Peers are the contact devices' names ("alice.0"), in order.
	Peers() []string
	// HeardFrom is how many receives from peer have completed.
	HeardFrom(peer string) int
	// Runnable are the device tasks a step op can advance, in start order
	// (none on a device whose tasks run freely).
	Runnable() []string
	// Pending are the queued deliveries to the device and to the peers.
	Pending() (inbound, outbound []string)
	// Delivered are the inbound deliveries the device took so far (for dup).
	Delivered() []string
	// Down reports a device crashed and not restarted.
	Down() bool
	// PendingWrites is how many writes a crash now would lose (0 when the
	// device cannot tell).
	PendingWrites() int
}

// Device is a device under test as the harness drives it and the oracle
// judges it: the in-process model of a client (Model), a child process, the
// real whatsmeow Client, a Baileys adapter. Each takes the same schedules
// (ops from a Source, then the drain) and returns the same per-message
// Result; RunOn judges every one of them with the same oracle.
//
// Exec may be called from several goroutines at once; a device that cannot
// run two schedules at the same time serializes them itself.
type Device interface {
	// Name labels the device's rows and schedules ("model" for Model).
	Name() string
	// Check says why the device cannot run setup in mode (a mode, an op,
	// a store or an instance count it does not have), in one line naming
	// the device; nil when it can.
	Check(setup *Schedule, mode Mode) error
	// Exec runs setup (its header: seed, contacts, store, discipline; its
	// ops are ignored) with ops from src, then the drain, and returns the
	// explicit schedule it applied (it replays on the same device, with
	// Ops(sched.Ops) as the source) and the result, not judged yet.
	Exec(ctx context.Context, setup *Schedule, mode Mode, src Source) (*Schedule, *Result, error)
	// Baseline runs an explicit schedule as the protocol baseline: every
	// task to its end as it starts, on a store that loses nothing.
	Baseline(ctx context.Context, s *Schedule) (*Result, error)
}

// Referencer is a Device that can also run an explicit schedule under the
// same client on the reference store, for the store attribution (Judge's
// ref). Devices without it are judged against the protocol baseline only,
// and their store is reported as not judged.
type Referencer interface {
	Reference(ctx context.Context, s *Schedule, res *Result) (*Result, error)
}

// Restorer is a Device whose protocol baseline can also restore the
// schedule's backups (RestoreBaseline): a loss a serial client on a perfect
// store suffers from the same restore is the restore's, never blamed
// (Baselines.Restored). A device without it is blamed for what a restore
// costs it.
type Restorer interface {
	RestoreBaseline(ctx context.Context, s *Schedule, cand *Result) (*Result, error)
}

// StoreJudger is a Referencer that says, for a run in which every message
// was delivered cleanly (no reference run is made), whether its store
// would have been judged: not when the candidate is the reference store
// itself, or the run is not replayable. Referencers without it are judged
// in every clean run.
type StoreJudger interface {
	JudgesStore(s *Schedule, res *Result) bool
}

// RunOn runs setup with ops from src on dev and judges the result: against
// dev's protocol baseline, and, when dev is a Referencer, against the
// reference store under the same client. A run in which every message was
// delivered cleanly cannot be blamed for anything, so its baselines are
// skipped (half the cost of a passing schedule).
func RunOn(ctx context.Context, dev Device, setup *Schedule, mode Mode, src Source) (*Schedule, *Result, error) {
	if err := dev.Check(setup, mode); err != nil {
		return nil, nil, err
	}
	sched, res, err := dev.Exec(ctx, setup, mode, src)
	if err != nil {
		return nil, nil, err
	}
	return judge(ctx, dev, sched, res)
}

func judge(ctx context.Context, dev Device, sched *Schedule, res *Result) (*Schedule, *Result, error) {
	rf, _ := dev.(Referencer)
	if res.clean() {
		// Nothing is worse than anything: judged whenever a reference run
		// would have been made (the model: a controlled run on a store
		// other than the reference store).
		if _, model := dev.(Model); model {
			res.StoreJudged = res.refNeeded
		} else if sj, ok := dev.(StoreJudger); ok {
			res.StoreJudged = sj.JudgesStore(sched, res)
		} else {
			res.StoreJudged = rf != nil
		}
		return sched, res, nil
	}
	var b Baselines
	var err error
	if b.Protocol, err = dev.Baseline(ctx, sched); err != nil {
		return nil, nil, fmt.Errorf("baseline: %w", err)
	}
	if rs, ok := dev.(Restorer); ok && sched.Restores() {
		if b.Restored, err = rs.RestoreBaseline(ctx, sched, res); err != nil {
			return nil, nil, fmt.Errorf("baseline with the backups restored: %w", err)
		}
	}
	if rf != nil {
		if b.Reference, err = rf.Reference(ctx, sched, res); err != nil {
			return nil, nil, fmt.Errorf("reference run: %w", err)
		}
	}
	Judge(res, b)
	res.StoreJudged = b.Reference != nil && b.Reference != res
	return sched, res, nil
}

// Model is the in-process model of a client (package harness's Run: the
// disciplines of docs/design.md §4 over endpoint.Endpoint) on a store
// variant: the reference device, and the only one whose every interleaving
// the scheduler decides.
type Model struct {
	Variant stores.Variant
	// Against, when set, is the store of the same-client run instead of
	// the reference store: a test judges two correct stores against each
	// other both ways (neither may be store-blamed).
	Against *stores.Variant
}

// Name is "model".
func (Model) Name() string { return "model" }

// Check accepts every schedule without a device line.
func (m Model) Check(setup *Schedule, mode Mode) error {
	if setup.Device != "" && setup.Device != m.Name() {
		return fmt.Errorf("schedule is for device %s, not the in-process model", setup.Device)
	}
	return refuseDeviceOnly(setup)
}

// Exec runs the schedule on the model.
func (m Model) Exec(ctx context.Context, setup *Schedule, mode Mode, src Source) (*Schedule, *Result, error) {
	r, err := Start(ctx, setup, m.Variant, mode)
	if err != nil {
		return nil, nil, err
	}
	if err := r.Drive(src); err != nil {
		return nil, nil, err
	}
	sched, res, err := r.Drain()
	if err != nil {
		return nil, nil, err
	}
	m.noteReference(r, res)
	return sched, res, nil
}

// noteReference keeps in res what Reference needs. Only a controlled run
// replays: the reference store can be run on the same interleaving (free
// mode leaves no explicit schedule).
func (m Model) noteReference(r *Run, res *Result) {
	if r.mode != Controlled {
		return
	}
	res.trace = r.verdict.trace
	if m.Variant.Name == m.against() {
		res.refSelf = true
		return
	}
	res.refNeeded = true
}

// against names the store of the same-client run.
func (m Model) against() string {
	if m.Against != nil {
		return m.Against.Name
	}
	return referenceStore
}

// Baseline is the schedule run serially on the reference store.
func (Model) Baseline(ctx context.Context, s *Schedule) (*Result, error) { return Baseline(ctx, s) }

// RestoreBaseline is the same crashed and restored at the candidate's
// points.
func (Model) RestoreBaseline(ctx context.Context, s *Schedule, cand *Result) (*Result, error) {
	return RestoreBaseline(ctx, s, cand)
}

// Reference is the same client on the reference store (SameClient); the
// reference store is its own reference, and a free run has none.
func (m Model) Reference(ctx context.Context, s *Schedule, res *Result) (*Result, error) {
	switch {
	case res.refSelf:
		return res, nil
	case !res.refNeeded:
		return nil, nil
	case m.Against != nil:
		return follow(ctx, s, res.trace, *m.Against)
	}
	return SameClient(ctx, s, res)
}
