package devproto

import (
	"bufio"
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

// A store server is the other kind of process the harness drives: one
// instance of a key store under test (storetest runs the user's own test
// binary again as one), answering store calls, so that a crash is a real
// SIGKILL of the process that holds the store's files, locks, goroutines
// and timers (docs/device-protocol.md, "Store servers"). The lines are the
// device protocol's: a hello, then requests and replies of v 1 with an id,
// one JSON object a line, unknown fields refused. Unlike a device's, store
// calls are pipelined: several requests may be in flight, each answered
// once, in any order, matched by id, so calls made at once by real
// goroutines reach the store at once.

// StoreVersion is a store server's hello.
const StoreVersion = "badmac store v1"

// Store request ops.
const (
	StoreOpen     = "open"     // open the store over Dir (once, first)
	StoreCall     = "call"     // call Method on the open store
	StoreClose    = "close"    // Close the store cleanly; the server exits after the reply
	StoreSnapshot = "snapshot" // the store's own backup (Backup in the reply)
	StoreRestore  = "restore"  // put Backup back
)

// StoreRequest is one line to a store server.
type StoreRequest struct {
	V       int               `json:"v"`
	ID      int               `json:"id"`
	Op      string            `json:"op"`
	Dir     string            `json:"dir,omitempty"`
	Method  string            `json:"method,omitempty"`
	Addr    string            `json:"addr,omitempty"` // an address, a phone (Delete*All*), a group's sender ("user:dev")
	Addrs   []string          `json:"addrs,omitempty"`
	Group   string            `json:"group,omitempty"`
	Record  []byte            `json:"record,omitempty"`
	Records map[string][]byte `json:"records,omitempty"`
	Key     []byte            `json:"key,omitempty"` // an identity key
	KeyID   uint32            `json:"key_id,omitempty"`
	Count   uint32            `json:"count,omitempty"`
	PN      string            `json:"pn,omitempty"` // JIDs, as types.JID.String writes them
	LID     string            `json:"lid,omitempty"`
	Backup  []byte            `json:"backup,omitempty"`
}

// StoreReply is a store server's answer to one StoreRequest. Records keeps
// GetManySessions' map as the store returned it: an address with no session
// is present with null, an address left out is absent.
type StoreReply struct {
	V       int               `json:"v"`
	ID      int               `json:"id"`
	OK      bool              `json:"ok"`
	Err     string            `json:"err,omitempty"`
	Record  []byte            `json:"record,omitempty"`
	Records map[string][]byte `json:"records,omitempty"`
	Bool    bool              `json:"bool,omitempty"`
	Int     int               `json:"int,omitempty"`
	PreKeys []StorePreKey     `json:"prekeys,omitempty"`
	// Nil is set when a single prekey answer (GetPreKey) was nil.
	Nil    bool   `json:"nil,omitempty"`
	Backup []byte `json:"backup,omitempty"`
	// Snapshots says, in the reply to open, that the store has its own
	// backup and restore.
	Snapshots bool `json:"snapshots,omitempty"`
}

// StorePreKey is a one-time prekey as the store returned it, private half
// included: a prekey is judged by its key, not only its id.
type StorePreKey struct {
	ID   uint32 `json:"id"`
	Priv []byte `json:"priv"`
	Pub  []byte `json:"pub"`
}

// ParseStoreReply decodes and checks a store server's reply line.
func ParseStoreReply(line []byte) (StoreReply, error) {
	var r StoreReply
	if err := strictUnmarshal(line, &r); err != nil {
		return r, err
	}
	if r.V != 1 {
		return r, fmt.Errorf("protocol version %d, want 1", r.V)
	}
	if r.ID <= 0 {
		return r, fmt.Errorf("reply id %d", r.ID)
	}
	if !r.OK && r.Err == "" {
		return r, errors.New("failed reply without err")
	}
	for _, pk := range r.PreKeys {
		if len(pk.Priv) != 32 || len(pk.Pub) != 32 {
			return r, fmt.Errorf("prekey %d: keys of %d and %d bytes, want 32", pk.ID, len(pk.Priv), len(pk.Pub))
		}
	}
	return r, nil
}

// ParseStoreRequest decodes and checks a request line (the server's side).
func ParseStoreRequest(line []byte) (StoreRequest, error) {
	var r StoreRequest
	if err := strictUnmarshal(line, &r); err != nil {
		return r, err
	}
	if r.V != 1 || r.ID <= 0 {
		return r, fmt.Errorf("request v %d id %d, want v 1 and an id", r.V, r.ID)
	}
	switch r.Op {
	case StoreOpen, StoreCall, StoreClose, StoreSnapshot, StoreRestore:
	default:
		return r, fmt.Errorf("unknown op %q", r.Op)
	}
	return r, nil
}

// StoreConn is a running store server: requests may be sent from several
// goroutines at once. A server that exits, writes a malformed line or is
// killed fails every call in flight and every later one.
type StoreConn struct {
	Hello Hello
	Pid   int
	name  string
	req   *os.File // our end of the request pipe
	mu    sync.Mutex
	next  int
	wait  map[int]chan StoreReply
	dead  error // set once: why no reply will come
	done  chan struct{}
	// exited is closed when the process has been reaped; waitErr says how
	// it ended.
	exited  chan struct{}
	waitErr error
	stderr  *tailBuffer
	timeout time.Duration
	reap    func() error // waits for the process
	kill    func() error
}

// StoreCmd is a store server to start: the command, and how to start it.
// The server reads requests on fd 3 and writes replies on fd 4, leaving
// stdout and stderr to whatever the store and its test print.
type StoreCmd struct {
	Path string
	Args []string // argv[1:]
	Env  []string
	Dir  string
	// Timeout bounds the hello and each call (0: DefaultTimeout); a call
	// that has not been answered by then is an error naming it.
	Timeout time.Duration
	// Start, if set, starts the process instead of os/exec (a tracer that
	// must fork the child itself): it is given argv, env, dir and the files
	// for fds 0 to 4, and returns the pid, a function that waits for the
	// process's end, and one that kills it.
	Start func(argv, env []string, dir string, files []*os.File) (pid int, wait func() error, kill func() error, err error)
}

// StartStore starts a store server and reads its hello.
func StartStore(ctx context.Context, c StoreCmd) (*StoreConn, error) {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		repR.Close()
		repW.Close()
		return nil, err
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	s := &StoreConn{name: c.Path, req: reqW, wait: map[int]chan StoreReply{}, done: make(chan struct{}),
		exited: make(chan struct{}), stderr: &tailBuffer{}, timeout: c.Timeout}
	argv := append([]string{c.Path}, c.Args...)
	files := []*os.File{devNull, errW, errW, reqR, repW}
	if c.Start != nil {
		s.Pid, s.reap, s.kill, err = c.Start(argv, c.Env, c.Dir, files)
	} else {
		cmd := exec.Command(c.Path, c.Args...)
		cmd.Env, cmd.Dir = c.Env, c.Dir
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, errW, errW
		cmd.ExtraFiles = []*os.File{reqR, repW}
		if err = cmd.Start(); err == nil {
			s.Pid, s.reap, s.kill = cmd.Process.Pid, cmd.Wait, cmd.Process.Kill
		}
	}
	// The child has its copies; ours would keep the pipes open after it dies.
	devNull.Close()
	reqR.Close()
	repW.Close()
	errW.Close()
	if err != nil {
		reqW.Close()
		repR.Close()
		errR.Close()
		return nil, fmt.Errorf("store server %s: %w", c.Path, err)
	}
	go func() { io.Copy(s.stderr, errR); errR.Close() }()
	hello := make(chan []byte, 1)
	go s.readLoop(repR, hello)
	go func() {
		s.waitErr = s.reap()
		close(s.exited)
	}()
	t := time.NewTimer(c.Timeout)
	defer t.Stop()
	select {
	case line := <-hello:
		if err := strictUnmarshal(line, &s.Hello); err != nil || s.Hello.V != 1 || s.Hello.Hello != StoreVersion {
			s.Kill()
			return nil, fmt.Errorf("store server %s: hello line: want v 1 %q, got %.200q", c.Path, StoreVersion, line)
		}
	case <-s.done:
		s.Kill()
		return nil, s.deadErr("hello")
	case <-t.C:
		s.Kill()
		return nil, fmt.Errorf("store server %s: silent for %s before its hello", c.Path, c.Timeout)
	case <-ctx.Done():
		s.Kill()
		return nil, ctx.Err()
	}
	return s, nil
}

// readLoop hands each reply to the call waiting for its id; the first line
// is the hello.
func (s *StoreConn) readLoop(r *os.File, hello chan<- []byte) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	first := true
	var why error
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		if first {
			first = false
			hello <- line
			continue
		}
		rep, err := ParseStoreReply(line)
		if err != nil {
			why = fmt.Errorf("malformed reply: %w: %.200q", err, line)
			break
		}
		s.mu.Lock()
		ch := s.wait[rep.ID]
		delete(s.wait, rep.ID)
		s.mu.Unlock()
		if ch == nil {
			why = fmt.Errorf("reply to request %d, which is not in flight", rep.ID)
			break
		}
		ch <- rep
	}
	if why == nil {
		why = errors.New("exited")
	}
	s.mu.Lock()
	if s.dead == nil {
		s.dead = why
	}
	s.mu.Unlock()
	close(s.done)
}

func (s *StoreConn) deadErr(what string) error {
	s.mu.Lock()
	why := s.dead
	s.mu.Unlock()
	// How the process ended says more than a closed pipe.
	select {
	case <-s.exited:
		if s.waitErr != nil && why != nil && why.Error() == "exited" {
			why = s.waitErr
		}
	case <-time.After(time.Second):
	}
	msg := fmt.Sprintf("store server %s: %v before answering %s", s.name, why, what)
	if p := s.stderr.panicLine(); p != "" {
		msg += "; stderr: " + p
	} else if tail := s.stderr.last(); tail != "" {
		msg += "; stderr: " + tail
	}
	return errors.New(msg)
}

// Call sends req (its V and ID are filled in) and waits for its reply. A
// failed reply (OK false) comes back with a nil error: the store answered
// with an error. Any other error means the server is gone.
func (s *StoreConn) Call(ctx context.Context, req StoreRequest) (StoreReply, error) {
	ch := make(chan StoreReply, 1)
	s.mu.Lock()
	if s.dead != nil {
		s.mu.Unlock()
		return StoreReply{}, s.deadErr(req.what())
	}
	s.next++
	req.V, req.ID = 1, s.next
	s.wait[req.ID] = ch
	b, err := json.Marshal(req)
	if err == nil {
		// One write per line, under the lock: lines never interleave.
		_, err = s.req.Write(append(b, '\n'))
	}
	s.mu.Unlock()
	if err != nil {
		return StoreReply{}, fmt.Errorf("store server %s: %s: %w", s.name, req.what(), err)
	}
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case rep := <-ch:
		return rep, nil
	case <-s.done:
		select {
		case rep := <-ch:
			return rep, nil
		default:
		}
		return StoreReply{}, s.deadErr(req.what())
	case <-t.C:
		return StoreReply{}, fmt.Errorf("store server %s: %s did not return within %s", s.name, req.what(), s.timeout)
	case <-ctx.Done():
		return StoreReply{}, ctx.Err()
	}
}

func (r StoreRequest) what() string {
	if r.Op == StoreCall {
		return fmt.Sprintf("request %d (%s)", r.ID, r.Method)
	}
	return fmt.Sprintf("request %d (%s)", r.ID, r.Op)
}

// Kill ends the process with SIGKILL, as a crash does, and waits for it.
func (s *StoreConn) Kill() {
	s.signal(syscall.SIGKILL)
	<-s.exited
	<-s.done
	s.req.Close()
}

// Stop and Cont pause and resume the process (SIGSTOP, SIGCONT): a copy of
// its files taken in between is what a kill at that instant leaves. A
// signal is delivered asynchronously, so Stop returns only once every
// thread of the process has stopped (or the process is gone): a copy
// begun while a thread still runs could catch a write halfway.
func (s *StoreConn) Stop() error {
	if err := s.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return waitStopped(s.Pid, s.exited, s.timeout)
}

// waitStopped polls until every thread of pid is in a stopped state
// (/proc/PID/task/*/stat: T, or t under a tracer), pid has exited, or
// timeout passes. Where there is no /proc it returns at once.
func waitStopped(pid int, exited <-chan struct{}, timeout time.Duration) error {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return nil
		default:
		}
		stopped, err := allStopped(pid)
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d: not stopped %s after SIGSTOP", pid, timeout)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func allStopped(pid int) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true, nil // gone
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		// "tid (comm) S …": the state follows the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("process %d: unreadable %s", pid, "stat")
		}
		switch b[i+2] {
		case 'T', 't', 'Z', 'X':
		default:
			return false, nil
		}
	}
	return true, nil
}
func (s *StoreConn) Cont() error { return s.signal(syscall.SIGCONT) }

func (s *StoreConn) signal(sig syscall.Signal) error {
	if sig == syscall.SIGKILL && s.kill != nil {
		return s.kill()
	}
	return syscall.Kill(s.Pid, sig)
}

// Wait waits for the process to exit on its own (after close) and returns
// how it ended; a process still running after the timeout is killed.
func (s *StoreConn) Wait() error {
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-t.C:
		s.Kill()
		return fmt.Errorf("store server %s: still running %s after close", s.name, s.timeout)
	}
	<-s.done
	s.req.Close()
	return s.waitErr
}

// Exited reports whether the process has ended.
func (s *StoreConn) Exited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// Stderr is the last line the server wrote to stdout or stderr.
func (s *StoreConn) Stderr() string { return s.stderr.last() }

// StoreError says what a failed reply's error was, for the caller's message.
func StoreError(rep StoreReply) error {
	if rep.OK {
		return nil
	}
	return errors.New(strings.TrimSpace(rep.Err))
}

// panicLine is the "panic: …" line of a Go program that died of one: what
// the store did, where the last line is only a stack frame.
func (t *tailBuffer) panicLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range strings.Split(string(t.buf), "\n") {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			if len(l) > 300 {
				l = l[:300]
			}
			return l
		}
	}
	return ""
}
