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
	db, err := OpenSQLite(ctx, getenv(envDB))
	if err != nil {
		fmt.Fprintf(stderr, "badmac: %v\n", err)
		return 2
	}
	defer db.Close()
	dev, err := db.GetDevice(ctx, BotJID)
	if err != nil || dev == nil {
		fmt.Fprintf(stderr, "badmac: realclient child: device %s in %s: %v\n", BotJID, getenv(envDB), err)
		return 2
	}
	rec := &lineRecorder{enc: json.NewEncoder(stdout), known: map[string]bool{}}
	bot, err := Start(ctx, waweb.HTTPClientFor(getenv(envAddr)), rec, dev, Options{Reply: Reply(getenv(envReply))})
	if err != nil {
		fmt.Fprintf(stderr, "badmac: %v\n", err)
		return 2
	}
	rec.emit(line{Op: "ready", Identity: hex.EncodeToString(dev.IdentityKey.Pub[:])})
	_, _ = io.Copy(io.Discard, stdin)
	bot.Stop()
	return 0
}

// Child is a running child bot, its lines applied to a ledger.
type Child struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	done     chan struct{}
	Identity string
	err      error
}

// StartChild runs exe (a binary whose main calls ChildMain when EnvChild is
// set) as the bot on the database file db, connected to srv; lines go to l
// (a ConvRecorder with the device's keys: it classifies what the child
// failed to decrypt from the reads the child reports), and onLine (may be
// nil) sees each after it is applied.
func StartChild(ctx context.Context, exe string, srv *waweb.Server, db string, reply Reply, l ConvRecorder, onLine func(op, id string)) (*Child, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), EnvChild+"=1", envAddr+"="+srv.Addr().String(), envDB+"="+db,
		envRoot+"="+hex.EncodeToString(waweb.DefaultCA().Root.Pub[:]), envReply+"="+string(reply))
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
		return nil, fmt.Errorf("realclient: child exited before it was ready")
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-c.done
		return nil, fmt.Errorf("realclient: child not ready: %w", ctx.Err())
	}
}

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
