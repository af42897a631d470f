package realclient

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/harness/webledger"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// A real SIGKILL of the real client: the bot runs in a child process
// (ChildMain) on whatsmeow's sqlstore over SQLite or PostgreSQL, and kills
// itself at a store call: as the call starts (between two calls) or as it
// returns, before the next (inside whatsmeow's load→decrypt→store→ack or
// its send). Messages go one at a time, each handled to its end before the
// next, so the Nth store call is the same on every run and on every
// database; a new process then opens the same database and the
// conversation goes on.

// KillOptions is one killed conversation.
type KillOptions struct {
	Exe      string // the binary whose main calls ChildMain under EnvChild
	Store    string // "sqlite" or "postgres" (BADMAC_POSTGRES_DSN)
	Dir      string // where the SQLite file goes
	Messages int    // texts from alice, each answered from the handler
	Kill     string // ChildOptions.Kill: "before:N", "after:N" or ""
	Hold     int    // ChildOptions.Hold: a broken store
}

// KillResult is what the conversation came to.
type KillResult struct {
	Messages []*harness.Message
	// Killed: the child died at the kill point; Calls: the store calls of
	// an unkilled child (0 when it was killed).
	Killed bool
	Calls  int
	// The restart invariants, checked on the database after the run: the
	// identity the contacts know, and every one-time prekey the server
	// still hands out.
	IdentityKept bool
	LostPreKeys  int
	ServerLog    []string
}

// ConverseKilled runs o's conversation through a child process killed at
// o.Kill, restarted once on the same database. It is TestKillPoints'
// driver, test code: a SIGKILL of the real client in a child process is a
// test, not a device op (docs/realclient.md); the devices' one result type
// is harness.Result.
func ConverseKilled(ctx context.Context, o KillOptions) (*KillResult, error) {
	srv, cv, err := listen()
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	peer, err := cv.AddPeer(ctx, "alice", 1)
	if err != nil {
		return nil, err
	}
	db, co, cleanup, err := killDatabase(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	dev, err := Provision(ctx, db, co.JID)
	if err != nil {
		return nil, err
	}
	if err := UploadPreKeys(ctx, dev, srv.Core, 0); err != nil {
		return nil, err
	}
	keys := KeysOf(dev)
	rec := ConvRecorder{CV: cv, Keys: keys}
	res := &KillResult{}
	co.Reply, co.Kill, co.Hold = Inline, o.Kill, o.Hold
	child, err := StartChildWith(ctx, o.Exe, srv, co, rec, nil)
	if errors.Is(err, ErrChildDied) && co.Kill != "" {
		// Killed at a store call of its login.
		res.Killed = true
		co.Kill = ""
		child, err = StartChildWith(ctx, o.Exe, srv, co, rec, nil)
	}
	if err != nil {
		return nil, err
	}
	identity := child.Identity
	// settle waits until the ledger says nothing is in flight, or the
	// child dies; then a new process takes over (not killed again).
	settle := func() error {
		for {
			ch := cv.L.Changed()
			if cv.L.Settled() {
				return nil
			}
			select {
			case <-ch:
			case <-child.done:
				if res.Killed {
					return errors.New("the restarted child died")
				}
				res.Killed = true
				cv.L.Abandon("the process was killed before the reply reached the server")
				co.Kill, co.Hold = "", o.Hold
				if child, err = StartChildWith(ctx, o.Exe, srv, co, rec, nil); err != nil {
					return err
				}
				if child.Identity != identity {
					res.IdentityKept = false
				}
			case <-ctx.Done():
				return fmt.Errorf("conversation: %w; server log: %v", ctx.Err(), srv.Log())
			}
		}
	}
	res.IdentityKept = true
	for i := 1; i <= o.Messages; i++ {
		if err := cv.Send(ctx, peer, fmt.Sprintf("m%d", i), fmt.Sprintf("alice says %d", i)); err != nil {
			return nil, err
		}
		if err := settle(); err != nil {
			return nil, err
		}
	}
	if err := child.Stop(); err != nil {
		return nil, err
	}
	if !res.Killed {
		res.Calls = child.Calls
	}
	// The invariants, on what the database holds now.
	dev, err = db.GetDevice(ctx, co.JID)
	if err != nil || dev == nil {
		return nil, fmt.Errorf("device after the run: %v", err)
	}
	if *dev.IdentityKey.Pub != *keys.Creds.Identity.Pub || dev.RegistrationID != keys.Creds.RegistrationID {
		res.IdentityKept = false
	}
	for _, pk := range srv.Core.Unclaimed(co.JID.SignalAddress()) {
		if got, err := dev.PreKeys.GetPreKey(ctx, pk.KeyID); err != nil || got == nil {
			res.LostPreKeys++
		}
	}
	res.Messages, res.ServerLog = webledger.Messages(cv.L), srv.Log()
	return res, nil
}

// killDatabase opens the database the child will run on and says how the
// child opens it.
func killDatabase(ctx context.Context, o KillOptions) (*sqlstore.Container, ChildOptions, func(), error) {
	if o.Store != "postgres" {
		path := filepath.Join(o.Dir, "bot.db")
		c, err := OpenSQLite(ctx, path)
		if err != nil {
			return nil, ChildOptions{}, nil, err
		}
		return c, ChildOptions{DB: path, JID: BotJID}, func() { _ = c.Close() }, nil
	}
	v, err := stores.Lookup("postgres")
	if err != nil {
		return nil, ChildOptions{}, nil, err
	}
	st, err := v.Open(ctx) // a database of its own on the server
	if err != nil {
		return nil, ChildOptions{}, nil, fmt.Errorf("store postgres: %w", err)
	}
	loc, ok := sqlstores.Locate(st)
	if !ok {
		st.Close()
		return nil, ChildOptions{}, nil, errors.New("store postgres: database cannot be located")
	}
	u, err := url.Parse(loc.DSN)
	if err != nil {
		st.Close()
		return nil, ChildOptions{}, nil, fmt.Errorf("store postgres: %s: %w", sqlstores.Redact(loc.DSN), err)
	}
	u.Path = "/" + loc.Database
	c, err := OpenPostgres(ctx, u.String())
	if err != nil {
		st.Close()
		return nil, ChildOptions{}, nil, err
	}
	jid := types.JID{User: fmt.Sprint(BotUser + pgBotSeq.Add(1)), Device: BotJID.Device, Server: types.DefaultUserServer}
	return c, ChildOptions{DSN: u.String(), JID: jid}, func() {
		_ = c.Close()
		st.Close()
	}, nil
}

// killTimeout bounds a killed conversation (a guard: the waits are on the
// ledger and the child).
const killTimeout = 2 * time.Minute
