package sim

import (
	"context"
	"strings"
	"testing"
)

func TestAbandon(t *testing.T) {
	s := New()
	ctx := context.Background()
	steps := 0
	unwound := false
	a := s.Spawn(ctx, "a", func(ctx context.Context) {
		defer func() { unwound = true }()
		for range 5 {
			Yield(ctx, "x")
			steps++
		}
	})
	b := s.Spawn(ctx, "b", func(ctx context.Context) { steps += 100 })
	s.Step(a)
	s.Step(a)
	s.Abandon(a)
	s.Abandon(b) // never started: never runs
	if !a.Done() || !a.Killed() || !unwound {
		t.Fatalf("a: done %v killed %v unwound %v", a.Done(), a.Killed(), unwound)
	}
	if steps != 1 {
		t.Fatalf("steps %d, want 1", steps)
	}
	if len(s.Live()) != 0 || s.Step(a) || s.Step(b) {
		t.Fatal("abandoned tasks still run")
	}
}

// Run passes yield points without returning to the driver, and stops when
// the task blocks, as repeated Steps would.
func TestRunThroughYields(t *testing.T) {
	s := New()
	var mu Mutex
	ctx := context.Background()
	var trace []string
	a := s.Spawn(ctx, "a", func(ctx context.Context) {
		mu.Lock(ctx)
		Yield(ctx, "a1")
		trace = append(trace, "a1")
		Yield(ctx, "a2")
		trace = append(trace, "a2")
		mu.Unlock(ctx)
	})
	b := s.Spawn(ctx, "b", func(ctx context.Context) {
		Yield(ctx, "b1")
		trace = append(trace, "b1")
		mu.Lock(ctx)
		trace = append(trace, "b locked")
		mu.Unlock(ctx)
	})
	s.Step(a) // a holds the lock, parked at a1
	if !s.Run(b) || b.Done() || b.Runnable() {
		t.Fatalf("b should run past b1 and block on the lock: done=%v", b.Done())
	}
	if !s.Run(a) || !a.Done() {
		t.Fatal("a should run to its end")
	}
	if !s.Run(b) || !b.Done() {
		t.Fatal("b should finish once a released the lock")
	}
	want := "b1 a1 a2 b locked"
	if got := strings.Join(trace, " "); got != want {
		t.Fatalf("trace %q, want %q", got, want)
	}
	if s.Yields != 3 { // a1, b1, a2
		t.Fatalf("%d yields counted, want 3", s.Yields)
	}
	if s.Run(a) {
		t.Fatal("Run of a finished task")
	}
}
