package procs

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/badmac/badmac/stores"
)

// writeLine is what a child started with -report-writes writes to stderr
// after each counted store write.
const writeLine = "badmac-write\n"

// RandomKill is a kill at a random moment: the parent sends SIGKILL Delay
// after it sent recv or send request number Request (1-based), whatever
// the child is doing then: mid-request, between two of its store writes or
// inside one, or idle after answering (then the next request finds it dead).
type RandomKill struct {
	Request int
	Delay   time.Duration
}

// NewRandomKill draws a kill from seed: a request among the first
// requests-1 of a conversation that makes requests, and a delay up to
// twice the mean request time.
func NewRandomKill(seed uint64, requests int, meanRequest time.Duration) RandomKill {
	rng := mrand.New(mrand.NewPCG(seed, 0x6b696c6c))
	n := 1
	if requests > 2 {
		n = 1 + rng.IntN(requests-1)
	}
	return RandomKill{Request: n, Delay: time.Duration(rng.Int64N(int64(2*meanRequest) + 1))}
}

func (k RandomKill) String() string {
	return fmt.Sprintf("SIGKILL %v after request %d", k.Delay, k.Request)
}

// ConverseRandomKill runs the conversation against real child processes
// (Child.Launch) and kills the first incarnation at the random moment k;
// the parent restarts it on the same database and drives on.
func ConverseRandomKill(ctx context.Context, cfg Config, launch Launcher, k RandomKill) (*Result, error) {
	return converse(ctx, cfg, launch, 0, &k)
}

// KillPoint is where a device process died, as the parent saw it.
type KillPoint struct {
	Request      int    // the recv or send request that found it dead (1-based)
	Op           string // that request's op
	WritesBefore int    // store writes the incarnation had answered for before it
	// Writes is the store writes it reported before dying (-1: unknown).
	// One more may have committed unreported.
	Writes int
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
	return fmt.Sprintf("died in request %d (%s) after %d of its writes (%d in all)", k.Request, k.Op, k.InRequest(), k.Writes)
}

// LocalAt is Local whose first incarnation dies in request number request
// (counting recv and send requests from 1) right after writes of that
// request's store writes (0: before it starts), or right after the request
// if it makes fewer, before it answers: the model of a KillPoint.
func LocalAt(storage stores.Storage, txn bool, request, writes int) Launcher {
	return func(ctx context.Context, inc, _ int) (Proc, error) {
		d, err := NewDevice(ctx, storage, txn, 0, func() { panic(killed{}) })
		if err != nil {
			return nil, err
		}
		p := &localProc{d: d}
		if inc == 0 {
			p.atReq, p.atWrites = request, writes
		}
		return p, nil
	}
}

// JudgeAny judges the real run against each of several models of its kill
// point (a kill whose last write may or may not have committed has two)
// and returns the verdict that blames the store least: the real run is
// store-blamed only when no model explains it.
func JudgeAny(real, base *Result, models ...*Result) Verdict {
	var best Verdict
	for i, m := range models {
		if v := Judge(real, m, base); i == 0 || len(v.StoreBlamed) < len(best.StoreBlamed) {
			best = v
		}
	}
	return best
}
