package procs

import (
	"context"
	"fmt"
	mrand "math/rand/v2"

	"github.com/badmac/badmac/stores"
)

// writeLine is what a child started with -report-writes writes to stderr
// after each counted store write (the parent's count for a -die-after kill).
const writeLine = "badmac-write\n"

// RandomKill is a kill at a random moment, placed by count so that a
// loaded machine kills at the same place as an idle one: request number
// Request (1-based, recv and send requests), step Step of it. Step s is
// the start of the request's s-th store call (a read or a write: between a
// load and the write that follows it, between two writes, or inside a
// decrypt's transaction), and the step after its last call is the moment
// before it answers. The child stops there, says so, and the parent sends
// it a real SIGKILL.
type RandomKill struct {
	Request int
	Step    int
}

// NewRandomKill draws a kill from seed, uniformly over every step of base,
// a run of the same conversation without kills (base.Calls). The
// conversation is deterministic up to the kill, so the step exists in the
// killed run too.
func NewRandomKill(seed uint64, base *Run) RandomKill {
	total := 0
	for _, n := range base.Calls {
		total += n + 1
	}
	if total == 0 {
		return RandomKill{Request: 1, Step: 1}
	}
	rng := mrand.New(mrand.NewPCG(seed, 0x6b696c6c))
	u := rng.IntN(total)
	for i, n := range base.Calls {
		if u <= n {
			return RandomKill{Request: i + 1, Step: u + 1}
		}
		u -= n + 1
	}
	panic("unreachable")
}

func (k RandomKill) String() string {
	return fmt.Sprintf("SIGKILL at step %d of request %d", k.Step, k.Request)
}

// ConverseRandomKill runs the conversation against real child processes
// (Child.Launch) and kills the first incarnation at the random moment k;
// the parent restarts it on the same database and drives on.
func ConverseRandomKill(ctx context.Context, cfg Config, launch Launcher, k RandomKill) (*Run, error) {
	return converse(ctx, cfg, launch, 0, &k)
}

// KillPoint is where a device process died, as the parent saw it.
type KillPoint struct {
	Request      int    // the recv or send request that found it dead (1-based)
	Op           string // that request's op
	WritesBefore int    // store writes the incarnation had answered for before it
	// Writes is the store writes it had completed when it died (-1:
	// unknown): exact for a RandomKill; for a failpoint kill, the writes it
	// reported, and one more may have committed unreported.
	Writes int
	// Step is the step a RandomKill stopped it at (0: not a RandomKill).
	Step int
}

// InRequest is the writes made inside the request that found the process
// dead (0 when it died before writing, or idle between requests).
func (k KillPoint) InRequest() int {
	if k.Writes < k.WritesBefore {
		return 0
	}
	return k.Writes - k.WritesBefore
}

func (k KillPoint) String() string {
	at := ""
	if k.Step > 0 {
		at = fmt.Sprintf(" at step %d", k.Step)
	}
	return fmt.Sprintf("died in request %d (%s)%s after %d of its writes (%d in all)", k.Request, k.Op, at, k.InRequest(), k.Writes)
}

// LocalAt is Local whose first incarnation dies in request number request
// (counting recv and send requests from 1) right after writes of that
// request's store writes (0: before it starts), or right after the request
// if it makes fewer, before it answers: the model of a KillPoint.
func LocalAt(storage stores.Storage, txn bool, request, writes int) Launcher {
	return func(ctx context.Context, inc, _ int) (Proc, error) {
		d, err := NewHandler(ctx, storage, txn, 0, func() { panic(killed{}) })
		if err != nil {
			return nil, err
		}
		p := newLocalProc(d)
		if inc == 0 {
			p.atReq, p.atWrites = request, writes
		}
		return p, nil
	}
}

// Model is the in-process model of where a RandomKill killed the real
// run: the same conversation on storage whose first incarnation dies in
// the same request after the same writes. The stop is at a store-call
// boundary and its writes are counted exactly, so there is one model.
func (k KillPoint) Model(storage stores.Storage) Launcher {
	return LocalAt(storage, false, k.Request, k.InRequest())
}
