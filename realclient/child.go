package realclient

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/fakeserver/waweb"
)

// The real client as a child process, so that it can be killed with
// SIGKILL at any moment: the child connects to the parent's server and
// reports what the client did on stdout, one JSON object a line; the parent
// applies each line to its ledger.

// Child environment.
const (
	EnvChild = "BADMAC_REALCLIENT_CHILD" // "1" in a child
	envAddr  = "BADMAC_REALCLIENT_ADDR"
	envDB    = "BADMAC_REALCLIENT_DB"
	envRoot  = "BADMAC_REALCLIENT_ROOT"
	envReply = "BADMAC_REALCLIENT_REPLY"
	envDSN   = "BADMAC_REALCLIENT_DSN"  // the device on PostgreSQL, not SQLite
	envJID   = "BADMAC_REALCLIENT_JID"  // the device's JID (default BotJID)
	envKill  = "BADMAC_REALCLIENT_KILL" // before:N or after:N: SIGKILL at the Nth store call
	envHold  = "BADMAC_REALCLIENT_HOLD" // N: session writes held in memory for N more (a broken store)
)

type line struct {
	Op       string `json:"op"` // ready, expect, accepted, undecryptable, sendfailed, gaveup
	ID       string `json:"id,omitempty"`
	Dir      string `json:"dir,omitempty"`
	Peer     string `json:"peer,omitempty"`
	Body     string `json:"body,omitempty"`
	Err      string `json:"err,omitempty"`
	Identity string `json:"identity,omitempty"`
	Reads    *Reads `json:"reads,omitempty"`
	Calls    int    `json:"calls,omitempty"`
}

// lineRecorder is the child's Recorder.
type lineRecorder struct {
	mu    sync.Mutex
	enc   *json.Encoder
	known map[string]bool
}

func (r *lineRecorder) emit(l line) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.enc.Encode(l)
}

func (r *lineRecorder) Expect(id, dir, peer, body string) {
	r.mu.Lock()
	r.known[id] = true
	r.mu.Unlock()
	r.emit(line{Op: "expect", ID: id, Dir: dir, Peer: peer, Body: body})
}

func (r *lineRecorder) Known(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.known[id]
}

func (r *lineRecorder) Accepted(id, body string) { r.emit(line{Op: "accepted", ID: id, Body: body}) }

func (r *lineRecorder) Undecryptable(id string, reads *Reads) {
	r.emit(line{Op: "undecryptable", ID: id, Reads: reads})
}

func (r *lineRecorder) GaveUp(id string) { r.emit(line{Op: "gaveup", ID: id}) }

func (r *lineRecorder) SendFailed(id string, err error) {
	r.emit(line{Op: "sendfailed", ID: id, Err: err.Error()})
}

// ChildMain runs the bot in a child process until stdin closes or it is
// killed. getenv supplies the server address, database file, root key and
// reply mode.
func ChildMain(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	root, err := hex.DecodeString(getenv(envRoot))
	if err != nil || len(root) != 32 {
		fmt.Fprintf(stderr, "badmac: realclient child: bad %s\n", envRoot)
		return 2
	}
	Trust(&waweb.CA{Root: &keys.KeyPair{Pub: (*[32]byte)(root)}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	jid := BotJID
	if j := getenv(envJID); j != "" {
		if jid, err = types.ParseJID(j); err != nil {
			fmt.Fprintf(stderr, "badmac: realclient child: %s: %v\n", envJID, err)
			return 2
		}
	}
	var db *sqlstore.Container
	where := getenv(envDB)
	if dsn := getenv(envDSN); dsn != "" {
		db, err = OpenPostgres(ctx, dsn)
		where = "PostgreSQL"
	} else {
		db, err = OpenSQLite(ctx, where)
	}
	if err != nil {
		fmt.Fprintf(stderr, "badmac: %v\n", err)
		return 2
	}
	defer db.Close()
	dev, err := db.GetDevice(ctx, jid)
	if err != nil || dev == nil {
		fmt.Fprintf(stderr, "badmac: realclient child: device %s in %s: %v\n", jid, where, err)
		return 2
	}
	opts := Options{Reply: Reply(getenv(envReply))}
	if k := getenv(envKill); k != "" {
		if _, err := fmt.Sscanf(k, "before:%d", &opts.killBefore); err != nil {
			if _, err := fmt.Sscanf(k, "after:%d", &opts.killAfter); err != nil {
				fmt.Fprintf(stderr, "badmac: realclient child: %s=%q: want before:N or after:N\n", envKill, k)
				return 2
			}
		}
	}
	if h := getenv(envHold); h != "" {
		var n int
		if _, err := fmt.Sscanf(h, "%d", &n); err != nil || n < 1 {
			fmt.Fprintf(stderr, "badmac: realclient child: %s=%q: want a count\n", envHold, h)
			return 2
		}
		dev.Sessions = &writeBehind{SessionStore: dev.Sessions, hold: n}
	}
	rec := &lineRecorder{enc: json.NewEncoder(stdout), known: map[string]bool{}}
	bot, err := Start(ctx, waweb.HTTPClientFor(getenv(envAddr)), rec, dev, opts)
	if err != nil {
		fmt.Fprintf(stderr, "badmac: %v\n", err)
		return 2
	}
	rec.emit(line{Op: "ready", Identity: hex.EncodeToString(dev.IdentityKey.Pub[:])})
	_, _ = io.Copy(io.Discard, stdin)
	bot.Stop()
	rec.emit(line{Op: "calls", Calls: int(bot.tap.calls.Load())})
	return 0
}

// Child is a running child bot, its lines applied to a ledger.
type Child struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	done     chan struct{}
	Identity string
	// Calls is the store calls the child made, reported when it stops.
	Calls int
	err   error
}

// ChildOptions are how StartChildWith runs the child.
type ChildOptions struct {
	DB    string    // the SQLite file, or
	DSN   string    // a PostgreSQL DSN naming the device's database
	JID   types.JID // the device (zero: BotJID)
	Reply Reply
	// Kill is "before:N" (SIGKILL as the Nth store call starts: between
	// calls) or "after:N" (as it returns, before the next: inside a
	// decrypt or a send), "" for none. Calls are counted from the start.
	Kill string
	// Hold, when positive, holds session writes in memory for Hold more
	// (a broken store: a SIGKILL loses them).
	Hold int
}

// StartChild runs exe (a binary whose main calls ChildMain when EnvChild is
// set) as the bot on the database file db, connected to srv; lines go to l
// (a ConvRecorder with the device's keys: it classifies what the child
// failed to decrypt from the reads the child reports), and onLine (may be
// nil) sees each after it is applied.
func StartChild(ctx context.Context, exe string, srv *waweb.Server, db string, reply Reply, l ConvRecorder, onLine func(op, id string)) (*Child, error) {
	return StartChildWith(ctx, exe, srv, ChildOptions{DB: db, Reply: reply}, l, onLine)
}

// StartChildWith is StartChild with options.
func StartChildWith(ctx context.Context, exe string, srv *waweb.Server, o ChildOptions, l ConvRecorder, onLine func(op, id string)) (*Child, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), EnvChild+"=1", envAddr+"="+srv.Addr().String(), envDB+"="+o.DB, envDSN+"="+o.DSN,
		envKill+"="+o.Kill, envRoot+"="+hex.EncodeToString(waweb.DefaultCA().Root.Pub[:]), envReply+"="+string(o.Reply))
	if !o.JID.IsEmpty() {
		cmd.Env = append(cmd.Env, envJID+"="+o.JID.String())
	}
	if o.Hold > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", envHold, o.Hold))
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("realclient: start child %s: %w", exe, err)
	}
	c := &Child{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			var ln line
			if err := json.Unmarshal(sc.Bytes(), &ln); err != nil {
				c.err = fmt.Errorf("child line %q: %w", sc.Text(), err)
				continue
			}
			switch ln.Op {
			case "ready":
				ready <- ln.Identity
			case "expect":
				l.Expect(ln.ID, ln.Dir, ln.Peer, ln.Body)
			case "accepted":
				l.Accepted(ln.ID, ln.Body)
			case "undecryptable":
				l.Undecryptable(ln.ID, ln.Reads)
			case "gaveup":
				l.GaveUp(ln.ID)
			case "calls":
				c.Calls = ln.Calls
			case "sendfailed":
				l.SendFailed(ln.ID, errors.New(ln.Err))
			}
			if onLine != nil {
				onLine(ln.Op, ln.ID)
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case c.Identity = <-ready:
		return c, nil
	case <-c.done:
		return nil, ErrChildDied
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-c.done
		return nil, fmt.Errorf("realclient: child not ready: %w", ctx.Err())
	}
}

// ErrChildDied is a child that exited before it was ready (killed at a
// store call of its login, say).
var ErrChildDied = errors.New("realclient: child exited before it was ready")

// Kill sends SIGKILL and waits for the child and its output to end.
func (c *Child) Kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// Stop closes the child's stdin (it disconnects and exits) and waits.
func (c *Child) Stop() error {
	_ = c.stdin.Close()
	<-c.done
	return c.err
}

// writeBehind holds session writes in memory and writes them to the store
// only after hold more (a broken store, for the kill tests: the child's
// reads see its own writes, and a SIGKILL loses what it held).
type writeBehind struct {
	store.SessionStore
	hold    int
	mu      sync.Mutex
	pending map[string][]byte
	order   []string
}

func (w *writeBehind) GetSession(ctx context.Context, addr string) ([]byte, error) {
	w.mu.Lock()
	b, ok := w.pending[addr]
	w.mu.Unlock()
	if ok {
		return b, nil
	}
	return w.SessionStore.GetSession(ctx, addr)
}

func (w *writeBehind) HasSession(ctx context.Context, addr string) (bool, error) {
	w.mu.Lock()
	_, ok := w.pending[addr]
	w.mu.Unlock()
	if ok {
		return true, nil
	}
	return w.SessionStore.HasSession(ctx, addr)
}

func (w *writeBehind) GetManySessions(ctx context.Context, addrs []string) (map[string][]byte, error) {
	out, err := w.SessionStore.GetManySessions(ctx, addrs)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range addrs {
		if b, ok := w.pending[a]; ok {
			out[a] = b
		}
	}
	return out, nil
}

func (w *writeBehind) PutSession(ctx context.Context, addr string, b []byte) error {
	return w.PutManySessions(ctx, map[string][]byte{addr: b})
}

func (w *writeBehind) PutManySessions(ctx context.Context, m map[string][]byte) error {
	w.mu.Lock()
	if w.pending == nil {
		w.pending = map[string][]byte{}
	}
	for a, b := range m {
		w.pending[a] = append([]byte(nil), b...)
		w.order = append(w.order, a)
	}
	var flush map[string][]byte
	if len(w.order) > w.hold {
		flush, w.pending, w.order = w.pending, nil, nil
	}
	w.mu.Unlock()
	if flush != nil {
		return w.SessionStore.PutManySessions(ctx, flush)
	}
	return nil
}
