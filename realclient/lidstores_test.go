package realclient

import (
	"context"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/stores"
)

// Broken MigratePNToLID variants of the reference store, for the LID
// tests' failing direction (docs/lid.md §5.5): a no-op, a copy that
// deletes nothing (X8), each on every call, and a move of the sessions
// that leaves the sender keys under the PN.

type migrateSessions struct {
	store.SessionStore
	ids  store.IdentityStore
	mode string
}

func (m migrateSessions) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	switch m.mode {
	case "noop":
		return nil
	case "nosenderkeys":
		// Sessions moved (copy, then delete), sender keys left under the
		// PN; identities are left too (whatsmeow trusts a LID address with
		// none stored, so that alone loses nothing).
		for d := uint16(0); d < 4; d++ {
			from := types.JID{User: pn.User, Device: d, Server: pn.Server}.SignalAddress().String()
			to := types.JID{User: lid.User, Device: d, Server: lid.Server}.SignalAddress().String()
			b, err := m.GetSession(ctx, from)
			if err != nil || b == nil {
				if err != nil {
					return err
				}
				continue
			}
			if err := m.PutSession(ctx, to, b); err != nil {
				return err
			}
			if err := m.DeleteSession(ctx, from); err != nil {
				return err
			}
		}
		return nil
	}
	// Copy without delete: device 0..3's session and identity, every call.
	for d := uint16(0); d < 4; d++ {
		from := types.JID{User: pn.User, Device: d, Server: pn.Server}.SignalAddress().String()
		to := types.JID{User: lid.User, Device: d, Server: lid.Server}.SignalAddress().String()
		b, err := m.GetSession(ctx, from)
		if err != nil {
			return err
		}
		if b == nil {
			continue
		}
		if err := m.PutSession(ctx, to, b); err != nil {
			return err
		}
	}
	return nil
}

type migrateStorage struct {
	stores.Storage
	mode string
}

func (s migrateStorage) Instance(ctx context.Context) (stores.Set, error) {
	set, err := s.Storage.Instance(ctx)
	if err != nil {
		return set, err
	}
	set.Sessions = migrateSessions{SessionStore: set.Sessions, ids: set.Identities, mode: s.mode}
	return set, nil
}

// brokenMigrate is the reference store with MigratePNToLID replaced:
// "noop", "nodelete" or "nosenderkeys".
func brokenMigrate(mode string) stores.Variant {
	ref := stores.MustLookup("reference")
	return stores.Variant{Name: "migrate-" + mode, Doc: "the reference store, MigratePNToLID " + mode,
		Open: func(ctx context.Context) (stores.Storage, error) {
			st, err := ref.Open(ctx)
			if err != nil {
				return nil, err
			}
			return migrateStorage{Storage: st, mode: mode}, nil
		}}
}
