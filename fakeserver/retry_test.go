package fakeserver

import (
	"context"
	"testing"
)

// sendRetryReceipt's counting: per message, continuing from the count a
// resent copy carries when this process has no count of its own (a restart).
func TestRetryCounter(t *testing.T) {
	var c RetryCounter
	for want := 1; want <= 5; want++ {
		if got := c.Next("m1", want-1); got != want {
			t.Fatalf("failure %d of m1: count %d", want, got)
		}
	}
	if got := c.Next("m2", 0); got != 1 {
		t.Fatalf("m2 counted with m1: %d", got)
	}
	var restarted RetryCounter
	if got := restarted.Next("m1", 3); got != 4 {
		t.Fatalf("after a restart, a copy with count 3 fails: count %d, want 4", got)
	}
	for count, want := range map[int]bool{1: false, 2: true, 4: true} {
		if WantsKeys(count, false) != want {
			t.Errorf("count %d: keys %v, want %v", count, !want, want)
		}
	}
	if !WantsKeys(1, true) {
		t.Error("forceIncludeIdentity at count 1: no keys")
	}
}

// handleRetryReceipt's drop from the tenth receipt, and
// shouldRecreateSession's cases.
func TestRetryHandler(t *testing.T) {
	ctx := context.Background()
	srv := New()
	alice, err := NewPeer(ctx, srv, "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := NewPeer(ctx, srv, "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	var h RetryHandler
	for i := 1; i < MaxIncomingRetries; i++ {
		if !h.Admit(bob.Address(), "m1") {
			t.Fatalf("receipt %d dropped", i)
		}
	}
	if h.Admit(bob.Address(), "m1") {
		t.Fatalf("receipt %d admitted", MaxIncomingRetries)
	}
	if !h.Admit(bob.Address(), "m2") {
		t.Fatal("m2 dropped for m1's receipts")
	}

	if _, ok := h.ShouldRecreate(ctx, alice.Endpoint, bob.Address(), 1); !ok {
		t.Fatal("no session: not recreated")
	}
	if err := alice.ensureSession(ctx, bob.Address()); err != nil {
		t.Fatal(err)
	}
	var fresh RetryHandler
	if _, ok := fresh.ShouldRecreate(ctx, alice.Endpoint, bob.Address(), 1); ok {
		t.Fatal("count 1 with a session: recreated")
	}
	if _, ok := fresh.ShouldRecreate(ctx, alice.Endpoint, bob.Address(), 2); !ok {
		t.Fatal("count 2, first time: not recreated")
	}
	if _, ok := fresh.ShouldRecreate(ctx, alice.Endpoint, bob.Address(), 3); ok {
		t.Fatal("count 3 within the hour of the last recreation: recreated")
	}
}
