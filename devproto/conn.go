package devproto

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTimeout bounds each request: a device that has not answered by then
// is silent. Generous, because the machine may be loaded (a Node device
// importing Baileys takes seconds); no test depends on it being short.
const DefaultTimeout = 60 * time.Second

// Conn is a running device process.
type Conn struct {
	Hello   Hello
	name    string // for errors: the command
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan []byte
	exited  chan struct{}
	waitErr error
	stderr  *tailBuffer
	timeout time.Duration
	nextID  int
}

// Start runs the device command and reads its Hello line. timeout bounds
// the Hello and every later request (0: DefaultTimeout).
func Start(ctx context.Context, argv []string, dir string, timeout time.Duration) (*Conn, error) {
	if len(argv) == 0 {
		return nil, errors.New("device: empty command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	return StartCmd(ctx, cmd, timeout)
}

// StartCmd is Start on a command its caller prepared (its environment, its
// working directory). A Stderr the caller set gets the device's stderr
// too, beside the tail Conn keeps for its errors.
func StartCmd(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) (*Conn, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := &Conn{name: strings.Join(cmd.Args, " "), cmd: cmd, lines: make(chan []byte, 16), exited: make(chan struct{}),
		stderr: &tailBuffer{}, timeout: timeout}
	var stderr io.Writer = c.stderr
	if cmd.Stderr != nil {
		stderr = io.MultiWriter(c.stderr, cmd.Stderr)
	}
	if os.Getenv("BADMAC_DEVICE_STDERR") != "" { // debugging: the device's log on ours
		stderr = io.MultiWriter(stderr, os.Stderr)
	}
	cmd.Stderr = stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("device %s: %w", c.name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", c.name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("device %s: %w", c.name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			c.lines <- append([]byte(nil), sc.Bytes()...)
		}
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	line, err := c.read(ctx, "hello")
	if err != nil {
		c.Kill()
		return nil, err
	}
	if c.Hello, err = ParseHello(line); err != nil {
		c.Kill()
		return nil, fmt.Errorf("device %s: %w", c.name, err)
	}
	return c, nil
}

// Call sends req (its V and ID are filled in) and returns the validated
// reply. A failed reply (OK false) is returned with a nil error: the
// device answered. Errors are the device misbehaving: malformed reply,
// exit, silence past the timeout; the Conn is then dead.
func (c *Conn) Call(ctx context.Context, req Request) (Reply, error) {
	c.nextID++
	req.V, req.ID = 1, c.nextID
	what := fmt.Sprintf("request %d (%s)", req.ID, req.Op)
	b, err := json.Marshal(req)
	if err != nil {
		return Reply{}, fmt.Errorf("device %s: %s: %w", c.name, what, err)
	}
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		// A dead device closes its stdin: report why it died.
		select {
		case <-c.exited:
			return Reply{}, c.exitError(what)
		case <-time.After(c.timeout):
			return Reply{}, fmt.Errorf("device %s: %s: %w", c.name, what, err)
		}
	}
	line, err := c.read(ctx, what)
	if err != nil {
		return Reply{}, err
	}
	r, err := ParseReply(line, req)
	if err != nil {
		c.Kill()
		return r, fmt.Errorf("device %s: malformed reply to %s: %w: %.200q", c.name, what, err, line)
	}
	return r, nil
}

func (c *Conn) read(ctx context.Context, what string) ([]byte, error) {
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	select {
	case line := <-c.lines:
		return line, nil
	case <-c.exited:
		// Lines read before the exit come first.
		select {
		case line := <-c.lines:
			return line, nil
		default:
		}
		return nil, c.exitError(what)
	case <-t.C:
		c.Kill()
		return nil, fmt.Errorf("device %s: silent for %s after %s", c.name, c.timeout, what)
	case <-ctx.Done():
		c.Kill()
		return nil, fmt.Errorf("device %s: %s: %w", c.name, what, ctx.Err())
	}
}

func (c *Conn) exitError(what string) error {
	return &ExitError{Device: c.name, What: what, Err: c.waitErr, Stderr: c.stderr.last()}
}

// ExitError is a device that exited before answering: its exit status
// (Err, nil for a clean exit) and the last line of its stderr.
type ExitError struct {
	Device string
	What   string // "request 3 (decrypt)", "hello"
	Err    error
	Stderr string
}

func (e *ExitError) Error() string {
	msg := "exited"
	if e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Stderr != "" {
		return fmt.Sprintf("device %s: %s before answering %s; stderr: %s", e.Device, msg, e.What, e.Stderr)
	}
	return fmt.Sprintf("device %s: %s before answering %s", e.Device, msg, e.What)
}

// Killed reports whether the process died of SIGKILL: the harness's kill
// (Kill) or the device's own at a failpoint, a crash the harness expects,
// where any other exit is the device misbehaving.
func (e *ExitError) Killed() bool {
	var x *exec.ExitError
	if !errors.As(e.Err, &x) {
		return false
	}
	ws, ok := x.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// Killed reports whether err is a device process's death by SIGKILL
// before it answered (ExitError.Killed).
func Killed(err error) bool {
	var e *ExitError
	return errors.As(err, &e) && e.Killed()
}

// Stderr is the last line of the device's stderr that says something.
func (c *Conn) Stderr() string { return c.stderr.last() }

// Kill ends the process at once (a crash) and waits for it.
func (c *Conn) Kill() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
	c.drain()
}

// drain waits for the exit, dropping lines nobody will read (the reader
// must not block on a full channel).
func (c *Conn) drain() {
	for {
		select {
		case <-c.exited:
			return
		case <-c.lines:
		}
	}
}

// Close closes the device's stdin and waits for it to exit, killing it
// after the timeout.
func (c *Conn) Close() error {
	_ = c.stdin.Close()
	t := time.AfterFunc(c.timeout, func() { _ = c.cmd.Process.Kill() })
	defer t.Stop()
	c.drain()
	return nil
}

// ExitStatus is the process's exit status once it has exited (after
// Close or Kill): nil for a clean exit.
func (c *Conn) ExitStatus() error {
	<-c.exited
	return c.waitErr
}

// Exited reports whether the process has ended, waiting for it up to d.
func (c *Conn) Exited(d time.Duration) bool {
	select {
	case <-c.exited:
		return true
	default:
	}
	select {
	case <-c.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// tailBuffer keeps the end of the device's stderr for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8192 {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-4096:]...)
	}
	return len(p), nil
}

// last returns the last line that says something: not blank, not a
// stack frame ("at ..."), not Node's closing "Node.js vX" line nor its
// "Emitted 'error' event on ..." note, so a Node process that died of an
// uncaught error shows the error's line.
func (t *tailBuffer) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := bytes.Split(bytes.TrimSpace(t.buf), []byte("\n"))
	s := strings.TrimSpace(string(lines[len(lines)-1]))
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(string(lines[i]))
		if l != "" && !strings.HasPrefix(l, "at ") && !strings.HasPrefix(l, "Node.js v") && !strings.HasPrefix(l, "Emitted 'error' event") {
			s = l
			break
		}
	}
	if len(s) > 300 {
		return s[:300]
	}
	return s
}
