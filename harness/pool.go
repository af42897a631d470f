package harness

import (
	"context"
	"runtime"
)

// Pool bounds how many runs execute at once across everything that shares
// it (the rows of `badmac run`, their schedules, shrink candidates): one
// token per core by default. A holder runs one schedule with a token and
// never waits for another token while holding one, so sharing cannot
// deadlock.
type Pool struct{ sem chan struct{} }

// NewPool returns a pool of n tokens; n < 1 means GOMAXPROCS.
func NewPool(n int) *Pool {
	if n < 1 {
		n = runtime.GOMAXPROCS(0)
	}
	return &Pool{sem: make(chan struct{}, n)}
}

// Size is the number of runs the pool lets execute at once.
func (p *Pool) Size() int { return cap(p.sem) }

// Acquire waits for a token.
func (p *Pool) Acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryAcquire takes a token if one is free.
func (p *Pool) TryAcquire() bool {
	select {
	case p.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

// Release returns a token.
func (p *Pool) Release() { <-p.sem }
