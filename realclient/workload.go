package realclient

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/harness/webledger"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// Config is one conversation through the real client.
type Config struct {
	Seed     uint64
	Messages int // messages the contacts send
	Contacts int // contacts (one device each), 1..len(contactNames)
	// Burst is the most stanzas sent back to back before the server waits
	// for the device to settle (every copy answered, every reply read).
	// Burst 1 is one stanza in flight: the run is then deterministic.
	Burst int
	Reply Reply
	// ReplyRate is the share of texts the bot answers (0: all).
	ReplyRate float64
	Buffer    bool
	// Drop is the chance that the server drops the connection right after
	// sending a burst (a network drop; whatsmeow reconnects by itself and
	// the unacknowledged stanzas come again).
	Drop float64
	Dir  string // where the SQLite file goes
	// Store is the candidate key store: "sqlite" (default) and "postgres"
	// are whatsmeow's sqlstore for the whole device; any other stores
	// variant takes over the four Signal interfaces of the device (sessions,
	// prekeys, identities, sender keys) while the rest stays in SQLite.
	Store string
	// NewSet, when set, is the candidate store instead of Store: a fresh
	// one per conversation (Check uses it).
	NewSet func() (stores.Set, error)
	Settle time.Duration // longest wait for a burst to settle (default 60 s)
	Log    func(string)  // client warnings and errors (nil: dropped)
}

var contactNames = []string{"alice", "bob", "carol", "dave"}

// BotJID is the device under test.
var BotJID = types.JID{User: fmt.Sprint(BotUser), Device: 5, Server: types.DefaultUserServer}

// MaxAttempts is where whatsmeow gives up on a message it cannot decrypt
// (waweb.MaxRetries).
const MaxAttempts = waweb.MaxRetries

// ConvStats are what a conversation counted beside its messages (the
// messages and their verdict are the harness.Result).
type ConvStats struct {
	RetriesIn int // retry receipts from the device
	// RetriesOut counts retry receipts the peers sent for the device's replies.
	RetriesOut int
	Drops      int // connections the server dropped
	// Overlaps counts message handlers that started while another ran.
	Overlaps int
}

// judgeAlone is the verdict of a conversation, by harness.Judge: there is
// no protocol baseline for this driver, so the baseline is empty and
// every message not delivered cleanly is blamed (harness.Worse against a
// message the baseline does not have).
func judgeAlone(res *harness.Result) *harness.Result {
	harness.Judge(res, harness.Baselines{Protocol: &harness.Result{}})
	return res
}

// Converse runs one conversation on a new server and a new SQLite database:
// the seed picks the burst sizes and which contact sends each message; the
// client's goroutines then run freely. The result is judged by
// harness.Judge against an empty baseline (judgeAlone); its History is
// the server's log. It is the driver behind `badmac client`'s workload
// flags (-messages, -burst, -drop, …) and realclient.Check; the harness's
// scenarios run the same client through Device.
func Converse(ctx context.Context, cfg Config) (*harness.Result, ConvStats, error) {
	if cfg.Contacts < 1 || cfg.Contacts > len(contactNames) {
		return nil, ConvStats{}, fmt.Errorf("realclient: %d contacts (1..%d)", cfg.Contacts, len(contactNames))
	}
	if cfg.Burst < 1 || cfg.Messages < 1 {
		return nil, ConvStats{}, fmt.Errorf("realclient: burst %d, messages %d: both must be at least 1", cfg.Burst, cfg.Messages)
	}
	if cfg.Settle == 0 {
		cfg.Settle = 60 * time.Second
	}
	srv, cv, err := listen()
	if err != nil {
		return nil, ConvStats{}, err
	}
	defer srv.Close()
	var peers []*fakeserver.Peer
	for _, name := range contactNames[:cfg.Contacts] {
		p, err := cv.AddPeer(ctx, name, 1)
		if err != nil {
			return nil, ConvStats{}, err
		}
		peers = append(peers, p)
	}
	c, jid, done, err := openDevice(ctx, cfg)
	if err != nil {
		return nil, ConvStats{}, err
	}
	defer done()
	dev, err := Provision(ctx, c, jid)
	if err != nil {
		return nil, ConvStats{}, err
	}
	if cfg.NewSet != nil {
		set, err := cfg.NewSet()
		if err != nil {
			return nil, ConvStats{}, fmt.Errorf("realclient: new store: %w", err)
		}
		if err := Plug(dev, set); err != nil {
			return nil, ConvStats{}, fmt.Errorf("realclient: new store: %w", err)
		}
	} else if cfg.Store != "" && cfg.Store != "sqlite" && cfg.Store != "postgres" {
		if cfg.Buffer {
			return nil, ConvStats{}, fmt.Errorf("realclient: store %s: the decrypted-event buffer needs sqlstore's transaction (stores sqlite, postgres)", cfg.Store)
		}
		v, err := stores.Lookup(cfg.Store)
		if err != nil {
			return nil, ConvStats{}, fmt.Errorf("realclient: %w", err)
		}
		st, err := v.Open(ctx)
		if err != nil {
			return nil, ConvStats{}, fmt.Errorf("realclient: store %s: %w", cfg.Store, err)
		}
		defer st.Close()
		set, err := st.Instance(ctx)
		if err != nil {
			return nil, ConvStats{}, fmt.Errorf("realclient: store %s: %w", cfg.Store, err)
		}
		if err := Plug(dev, set); err != nil {
			return nil, ConvStats{}, fmt.Errorf("realclient: store %s: %w", cfg.Store, err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.Settle)
	bot, err := Start(sctx, srv.HTTPClient(), ConvRecorder{CV: cv, Keys: KeysOf(dev)}, dev, Options{Reply: cfg.Reply, Buffer: cfg.Buffer, Log: cfg.Log,
		ReplyRate: cfg.ReplyRate, Seed: cfg.Seed})
	cancel()
	if err != nil {
		return nil, ConvStats{}, err
	}
	defer bot.Stop()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xbad3ac))
	drops := 0
	for i := 0; i < cfg.Messages; {
		k := 1 + rng.IntN(cfg.Burst)
		for j := 0; j < k && i < cfg.Messages; j++ {
			i++
			p := peers[rng.IntN(len(peers))]
			id := fmt.Sprintf("m%d", i)
			if err := cv.Send(ctx, p, id, fmt.Sprintf("%s says %d", p.Name, i)); err != nil {
				return nil, ConvStats{}, err
			}
		}
		if cfg.Drop > 0 && rng.Float64() < cfg.Drop {
			srv.Kick()
			drops++
		}
		sctx, cancel := context.WithTimeout(ctx, cfg.Settle)
		err := cv.L.Wait(sctx)
		cancel()
		if err != nil {
			// The partial result carries the server log of the stuck run.
			return judgeAlone(&harness.Result{Messages: webledger.Messages(cv.L), History: srv.Log()}), ConvStats{Drops: drops},
				fmt.Errorf("realclient: seed %d after m%d: %w", cfg.Seed, i, err)
		}
	}
	in, out := cv.L.Retries()
	log := srv.Log()
	// The table's retry counts come from the ledger; they must be the
	// server's log, line for line.
	logIn, logOut := 0, 0
	for _, l := range log {
		switch {
		case strings.HasPrefix(l, "retry-receipt "):
			logIn++
		case strings.HasPrefix(l, "peer ") && strings.Contains(l, ": retry-receipt "):
			logOut++
		}
	}
	if logIn != in || logOut != out {
		return nil, ConvStats{}, fmt.Errorf("realclient: seed %d: ledger counts %d/%d retry receipts, server log %d/%d", cfg.Seed, in, out, logIn, logOut)
	}
	return judgeAlone(&harness.Result{Messages: webledger.Messages(cv.L), History: log}),
		ConvStats{RetriesIn: in, RetriesOut: out, Drops: drops, Overlaps: bot.Overlaps()}, nil
}

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
// its rows are deleted at the end) or on a SQLite file in cfg.Dir
// (anything else; the device is BotJID).
func openDevice(ctx context.Context, cfg Config) (*sqlstore.Container, types.JID, func(), error) {
	if cfg.Store != "postgres" || cfg.NewSet != nil {
		c, err := OpenSQLite(ctx, filepath.Join(cfg.Dir, fmt.Sprintf("client-%d.db", cfg.Seed)))
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
