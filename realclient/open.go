package realclient

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// BotJID is the device under test.
var BotJID = types.JID{User: fmt.Sprint(BotUser), Device: 5, Server: types.DefaultUserServer}

// MaxAttempts is where whatsmeow gives up on a message it cannot decrypt
// (waweb.MaxRetries).
const MaxAttempts = waweb.MaxRetries

// listen starts a loopback server this process's clients trust, with a
// conversation on it.
func listen() (*waweb.Server, *waweb.Conversation, error) {
	ca := waweb.DefaultCA()
	Trust(ca)
	srv, err := waweb.Listen(ca)
	if err != nil {
		return nil, nil, err
	}
	return srv, waweb.NewConversation(srv), nil
}

// Plug puts a candidate key store under a whatsmeow device: the four
// interfaces whatsmeow's Signal paths call (decryptDM, the send path's
// session cache, retry receipts, prekey upload) go to set.
func Plug(dev *store.Device, set stores.Set) error {
	if err := set.Complete(); err != nil {
		return err
	}
	dev.Sessions, dev.PreKeys, dev.Identities, dev.SenderKeys = set.Sessions, set.PreKeys, set.Identities, set.SenderKeys
	return nil
}

// openDevice opens the database the whole device lives in and names the
// device's JID there: whatsmeow's sqlstore on PostgreSQL (store postgres:
// the stores variant's database on $BADMAC_POSTGRES_DSN's server, which the
// runs of a process share, so each run's device has a JID of its own and
// its rows are deleted at the end) or on a SQLite file in dir
// (anything else; the device is BotJID).
func openDevice(ctx context.Context, store, dir string, seed uint64) (*sqlstore.Container, types.JID, func(), error) {
	if store != "postgres" {
		c, err := OpenSQLite(ctx, filepath.Join(dir, fmt.Sprintf("client-%d.db", seed)))
		if err != nil {
			return nil, types.JID{}, nil, err
		}
		return c, BotJID, func() { _ = c.Close() }, nil
	}
	v, err := stores.Lookup("postgres")
	if err != nil {
		return nil, types.JID{}, nil, fmt.Errorf("realclient: %w", err)
	}
	st, err := v.Open(ctx)
	if err != nil {
		return nil, types.JID{}, nil, fmt.Errorf("realclient: store postgres: %w", err)
	}
	loc, ok := sqlstores.Locate(st)
	if !ok {
		st.Close()
		return nil, types.JID{}, nil, fmt.Errorf("realclient: store postgres: database cannot be located")
	}
	pc, err := pgx.ParseConfig(loc.DSN)
	if err != nil {
		st.Close()
		return nil, types.JID{}, nil, fmt.Errorf("realclient: store postgres: %s: %w", sqlstores.Redact(loc.DSN), err)
	}
	pc.Database = loc.Database
	raw := stdlib.OpenDB(*pc)
	c := sqlstore.NewWithDB(raw, "postgres", waLog.Noop)
	containerDBs.Store(c, containerDB{raw, "postgres"}) // emptyLIDCache
	// The login payload carries the user as a number: a numeric JID.
	jid := types.JID{User: fmt.Sprint(BotUser + pgBotSeq.Add(1)), Device: BotJID.Device, Server: types.DefaultUserServer}
	return c, jid, func() {
		// Cascades to every per-device table (sqlstores' own cleanup only
		// knows the variant's device).
		_, _ = raw.ExecContext(context.Background(), `DELETE FROM whatsmeow_device WHERE jid=$1`, jid)
		_ = c.Close()
		st.Close()
	}, nil
}

// BotUser is BotJID's user as a number.
const BotUser = 10000000001

var pgBotSeq atomic.Uint64
