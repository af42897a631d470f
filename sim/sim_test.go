package sim

import (
	"context"
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
