package webledger

import (
	"context"
	"fmt"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
)

// LIDServer is what a device on the loopback server gives ApplyLID: the
// conversation, the schedule's contact devices by name, whether the
// device is down, and what the device does after the server handed it
// something to handle (a mapping notification, the account's migration):
// the real client settles, the socket device syncs.
type LIDServer struct {
	Conv   *waweb.Conversation
	Peers  []string
	Down   bool
	Handle func() error
}

// ApplyLID runs a LID addressing op (docs/lid.md §5.2) on the server: a
// contact's phase, the form of its next stanzas, a mapping notification
// (not kept while the device is down), its forgotten session, the
// account's migration (kept for the next login when the device is down).
// An op naming no contact of the schedule does nothing; any other op is
// an error. The device's answers are its own code.
func ApplyLID(ctx context.Context, s LIDServer, device string, op harness.Op) error {
	switch o := op.(type) {
	case harness.PhaseOp:
		ph, err := waweb.ParsePhase(o.Phase)
		if err != nil {
			return fmt.Errorf("op %q: %w", op, err)
		}
		if _, ok := s.userPeer(o.User); ok {
			s.Conv.SetPhase(o.User, ph)
		}
	case harness.ViaOp:
		if p, ok := s.Conv.Peer(o.Peer); ok {
			s.Conv.SetVia(p, o.Form)
		}
	case harness.MappingOp:
		if s.Down {
			return nil // a notification is not kept for an offline device
		}
		if name, ok := s.userPeer(o.User); ok {
			p, _ := s.Conv.Peer(name)
			if s.Conv.Mapping(p) {
				return s.Handle()
			}
		}
	case harness.MigrateOp:
		sent, err := s.Conv.Migrate(ctx)
		if err != nil || !sent {
			return err // kept for the next login, as the offline queue keeps it
		}
		return s.Handle()
	case harness.ForgetOp:
		if p, ok := s.Conv.Peer(o.Peer); ok {
			return s.Conv.Forget(ctx, p)
		}
	default:
		return fmt.Errorf("device %s does not implement op %s", device, op.Verb())
	}
	return nil
}

// userPeer is the first of the schedule's contact devices of user.
func (s LIDServer) userPeer(user string) (string, bool) {
	for _, name := range s.Peers {
		if p, ok := s.Conv.Peer(name); ok && p.JID.User == user {
			return name, true
		}
	}
	return "", false
}

// FailureClasses are the classes of m's failed attempts, and whether m
// is one a public report can be named for (a failure, or lost): what a
// device's note of the report it matches starts from.
func FailureClasses(m *harness.Message) ([]endpoint.Class, bool) {
	var classes []endpoint.Class
	for _, a := range m.Failures() {
		classes = append(classes, a.Class)
	}
	return classes, len(classes) > 0 || m.Outcome() == harness.Lost
}
