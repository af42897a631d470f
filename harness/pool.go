package harness

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

// Pool bounds how many runs execute at once across everything that shares
// it (the rows of `badmac run`, their schedules, shrink candidates): one
// token per core by default. A holder runs one schedule with a token and
// never waits for another token while holding one, so sharing cannot
// deadlock.
type Pool struct {
	sem   chan struct{}
	start time.Time
	busy  atomic.Int64 // nanoseconds tokens were held, once all are back
}

// NewPool returns a pool of n tokens; n < 1 means GOMAXPROCS.
func NewPool(n int) *Pool {
	if n < 1 {
		n = runtime.GOMAXPROCS(0)
	}
	return &Pool{sem: make(chan struct{}, n), start: time.Now()}
}

// Utilisation is the share of the pool's token time, since it was made,
// that runs held tokens: how busy the workers were kept. On a machine
// shared with other jobs it stays near what free cores would see, where
// wall-time speedups do not.
func (p *Pool) Utilisation() float64 {
	wall := time.Since(p.start)
	if wall <= 0 {
		return 0
	}
	return float64(p.busy.Load()) / float64(wall) / float64(p.Size())
}

// Size is the number of runs the pool lets execute at once.
func (p *Pool) Size() int { return cap(p.sem) }

// Acquire waits for a token.
func (p *Pool) Acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		p.busy.Add(-time.Since(p.start).Nanoseconds())
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryAcquire takes a token if one is free.
func (p *Pool) TryAcquire() bool {
	select {
	case p.sem <- struct{}{}:
		p.busy.Add(-time.Since(p.start).Nanoseconds())
		return true
	default:
		return false
	}
}

// Release returns a token.
func (p *Pool) Release() {
	p.busy.Add(time.Since(p.start).Nanoseconds())
	<-p.sem
}
