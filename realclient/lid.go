package realclient

import (
	"context"
	"database/sql"
	"sync"

	"go.mau.fi/whatsmeow/store/sqlstore"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/harness/webledger"
)

// applyLID runs the LID addressing ops (docs/lid.md §5.2) on the server
// (webledger.ApplyLID); the client's answers are whatsmeow's own
// (message.go decryptMessages, send.go encryptMessageForDevices, retry.go
// handleRetryReceipt) and the run settles after the server handed it a
// notification or the migration; any other op is an error (apply runs
// the others).
func (r *run) applyLID(ctx context.Context, op harness.Op) error {
	return webledger.ApplyLID(ctx, webledger.LIDServer{Conv: r.cv, Peers: r.peers, Down: r.down,
		Handle: func() error { return r.after(ctx) }}, r.d.Name(), op)
}

// contactOp runs a reinstall or rekey of contact device peer (fn), then
// lets the client answer; an unknown peer does nothing.
func (r *run) contactOp(ctx context.Context, peer string, fn func(context.Context, *fakeserver.Peer) error) error {
	p, ok := r.cv.Peer(peer)
	if !ok {
		return nil
	}
	if err := fn(ctx, p); err != nil {
		return err
	}
	return r.after(ctx)
}

// noteReport names the public LID report m's failure matches, if any
// (waweb.Conversation.Report).
func noteReport(cv *waweb.Conversation, m *harness.Message) {
	classes, ok := webledger.FailureClasses(m)
	if !ok {
		return
	}
	m.Note = cv.Report(m.ID, m.Outcome() == harness.Lost, classes)
}

// OwnLIDUser is the account's LID user, given to the server in a LID
// schedule (ownLID).
const OwnLIDUser = "800001"

// ownLID gives the server the account's LID in a LID schedule (a LID
// scenario, whose ops a generator may not have drawn yet, or any LID op):
// every login's <success> then carries it, as WhatsApp's does for an
// account that has a LID, and whatsmeow stores it
// (connectionevents.go:163-180); the switched sends after a migrate need
// it (send.go:346, docs/lid.md §1.4). Any other schedule logs in as before
// LIDs.
func (r *run) ownLID(setup *harness.Schedule) {
	if setup.LID() {
		r.srv.SetOwnLID(OwnLIDUser)
	}
}

// containerDBs holds the database under each whatsmeow container this
// package opened (newContainer), for emptyLIDCache.
var containerDBs sync.Map // *sqlstore.Container → containerDB

type containerDB struct {
	db      *sql.DB
	dialect string
}

// newContainer is sqlstore.NewWithDB, remembering db for emptyLIDCache.
func newContainer(db *sql.DB, dialect string) *sqlstore.Container {
	c := sqlstore.NewWithDB(db, dialect, waLog.Noop)
	containerDBs.Store(c, containerDB{db, dialect})
	return c
}

// emptyLIDCache gives c a new LID map over the same database, its
// in-memory cache empty, as a restarted process has: whatsmeow keeps the
// PN↔LID pairs it learned in CachedLIDMap's maps (store/sqlstore/lidmap.go:27-45
// at the pinned commit), built empty with the container and filled as
// pairs are stored or read, never by FillCache. A restart that kept the
// container would keep the cache, and a DM after it would never take
// GetManyLIDsForPNs' database path (lidmap.go:165-197), where #1027 is
// (docs/lid.md §3.1). The pairs themselves stay in the database.
func emptyLIDCache(c *sqlstore.Container) {
	if v, ok := containerDBs.Load(c); ok {
		cd := v.(containerDB)
		c.LIDMap = sqlstore.NewWithDB(cd.db, cd.dialect, waLog.Noop).LIDMap
	}
}

// forgetContainer drops c from containerDBs (the run closes it).
func forgetContainer(c *sqlstore.Container) { containerDBs.Delete(c) }
