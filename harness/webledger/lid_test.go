package webledger

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
)

// ApplyLID changes the server's state for the schedule's contacts only,
// hands the device nothing while it is down or offline (Handle not
// called), and refuses any op that is not a LID op in one line.
func TestApplyLID(t *testing.T) {
	srv, err := waweb.Listen(waweb.DefaultCA())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cv := waweb.NewConversation(srv)
	ctx := context.Background()
	p, err := cv.AddPeer(ctx, "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	handled := 0
	s := LIDServer{Conv: cv, Peers: []string{p.Name}, Handle: func() error { handled++; return nil }}
	apply := func(s LIDServer, op harness.Op) {
		t.Helper()
		if err := ApplyLID(ctx, s, "dev", op); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	apply(s, harness.PhaseOp{User: "bob", Phase: "mixed"}) // no contact of the schedule
	apply(s, harness.PhaseOp{User: "alice", Phase: "mixed"})
	apply(s, harness.ViaOp{Peer: "bob.0", Form: "lid"})
	apply(s, harness.ForgetOp{Peer: "bob.0"})
	down := s
	down.Down = true
	apply(down, harness.MappingOp{User: "alice"}) // not kept: nothing logged
	apply(s, harness.MappingOp{User: "alice"})    // no connection: not sent
	log := strings.Join(srv.Log(), "\n")
	if !strings.Contains(log, "phase alice mixed") || strings.Contains(log, "bob") {
		t.Errorf("phase: the server's log\n%s", log)
	}
	if n := strings.Count(log, "mapping of "+p.Name+" while the device is offline"); n != 1 || handled != 0 {
		t.Errorf("mapping: %d offline lines, handled %d times; want 1, 0; log\n%s", n, handled, log)
	}
	err = ApplyLID(ctx, s, "dev", harness.DeliverOp{ID: "m1"})
	if err == nil || err.Error() != "device dev does not implement op deliver" {
		t.Errorf("deliver: %v", err)
	}
	if slices.ContainsFunc(srv.Log(), func(l string) bool { return strings.Contains(l, "m1") }) {
		t.Error("a refused op reached the server")
	}
}
