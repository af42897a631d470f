//go:build linux && amd64

package storetest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// A tracer runs a store process under ptrace to kill it inside a store
// call: after the call's k-th write to the file system (a write, an fsync,
// a rename, an open that creates or truncates, ...), counted at the
// system call's return, so that the kill lands after the store began
// writing and before it returned, at a point that depends on the store's
// own system calls, not on timing. A store that writes only through memory
// maps has no such points (its writes are in the page cache, which a kill
// keeps).
type tracer struct {
	mu     sync.Mutex
	armed  bool
	killAt int // kill at this write while armed; 0: count only
	count  int
	killed bool
	pid    int
}

// traceSupported says whether this platform can run the tracer.
const traceSupported = true

func newTracer() *tracer { return &tracer{} }

// arm starts counting writes; the k-th kills the process (0: never).
func (t *tracer) arm(k int) {
	t.mu.Lock()
	t.armed, t.killAt, t.count, t.killed = true, k, 0, false
	t.mu.Unlock()
}

// disarm stops counting and returns the writes counted and whether the
// process was killed.
func (t *tracer) disarm() (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.armed = false
	return t.count, t.killed
}

// start forks the store process under ptrace (devproto.StoreCmd.Start).
// Every ptrace request must come from the thread that is the tracer, so
// the fork and the whole wait loop run on one locked OS thread.
func (t *tracer) start(argv, env []string, dir string, files []*os.File) (int, func() error, func() error, error) {
	type started struct {
		pid int
		err error
	}
	ready := make(chan started, 1)
	done := make(chan error, 1)
	fds := make([]uintptr, len(files))
	for i, f := range files {
		fds[i] = f.Fd()
	}
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with the goroutine, so no other
		// goroutine inherits a thread that is a tracer.
		pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Dir: dir, Env: env, Files: fds,
			Sys: &syscall.SysProcAttr{Ptrace: true, Setpgid: true}})
		if err != nil {
			ready <- started{err: err}
			return
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, syscall.WALL, nil); err != nil || !ws.Stopped() {
			syscall.Kill(pid, syscall.SIGKILL)
			ready <- started{err: fmt.Errorf("traced process did not stop at exec: %v %v", err, ws)}
			return
		}
		const exitKill = 0x100000 // PTRACE_O_EXITKILL: the process dies if the tracer does
		if err := syscall.PtraceSetOptions(pid, syscall.PTRACE_O_TRACECLONE|syscall.PTRACE_O_TRACESYSGOOD|exitKill); err != nil {
			syscall.Kill(pid, syscall.SIGKILL)
			ready <- started{err: fmt.Errorf("ptrace options: %w", err)}
			return
		}
		t.mu.Lock()
		t.pid = pid
		t.mu.Unlock()
		ready <- started{pid: pid}
		done <- t.loop(pid)
	}()
	s := <-ready
	if s.err != nil {
		return 0, nil, nil, s.err
	}
	var once sync.Once
	var werr error
	wait := func() error {
		once.Do(func() { werr = <-done })
		return werr
	}
	kill := func() error { return syscall.Kill(s.pid, syscall.SIGKILL) }
	return s.pid, wait, kill, nil
}

// loop resumes every stop of every thread of pid until the process ends,
// counting file-system writes at their return while armed.
func (t *tracer) loop(pid int) error {
	inCall := map[int]bool{}
	syscall.PtraceSyscall(pid, 0)
	for {
		var ws syscall.WaitStatus
		tid, err := syscall.Wait4(-pid, &ws, syscall.WALL, nil)
		if err != nil {
			return err
		}
		switch {
		case ws.Exited(), ws.Signaled():
			delete(inCall, tid)
			if tid == pid {
				if ws.Signaled() {
					return fmt.Errorf("signal: %v", ws.Signal())
				}
				if ws.ExitStatus() != 0 {
					return fmt.Errorf("exit status %d", ws.ExitStatus())
				}
				return nil
			}
			continue
		case !ws.Stopped():
			continue
		}
		sig := ws.StopSignal()
		switch {
		case sig == syscall.SIGTRAP|0x80: // a system call stop
			entering := !inCall[tid]
			inCall[tid] = entering
			if !entering && t.counts(tid) {
				t.mu.Lock()
				t.count++
				kill := t.killAt > 0 && t.count == t.killAt
				if kill {
					t.killed = true
				}
				t.mu.Unlock()
				if kill {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			syscall.PtraceSyscall(tid, 0)
		case sig == syscall.SIGTRAP, sig == syscall.SIGSTOP:
			// A new thread's first stop, a clone event, exec: not the
			// process's signals.
			syscall.PtraceSyscall(tid, 0)
		default:
			syscall.PtraceSyscall(tid, int(sig)) // the process's own signal (the Go runtime's SIGURG)
		}
	}
}

// counts reports whether the system call thread tid is returning from is
// a successful write to the file system, while armed.
func (t *tracer) counts(tid int) bool {
	t.mu.Lock()
	armed := t.armed
	t.mu.Unlock()
	if !armed {
		return false
	}
	var regs syscall.PtraceRegs
	if err := syscall.PtraceGetRegs(tid, &regs); err != nil {
		return false
	}
	if int64(regs.Rax) < 0 {
		return false // failed: nothing changed
	}
	const (
		oCreat = 0x40
		oTrunc = 0x200
	)
	switch regs.Orig_rax {
	case syscall.SYS_WRITE, syscall.SYS_PWRITE64, syscall.SYS_WRITEV, syscall.SYS_PWRITEV, 328, // pwritev2
		syscall.SYS_FSYNC, syscall.SYS_FDATASYNC, syscall.SYS_FTRUNCATE, syscall.SYS_FALLOCATE,
		syscall.SYS_SYNC_FILE_RANGE, 326: // copy_file_range
		return isFile(tid, int(regs.Rdi))
	case syscall.SYS_OPENAT:
		return regs.Rdx&(oCreat|oTrunc) != 0
	case syscall.SYS_OPEN, syscall.SYS_CREAT:
		return regs.Orig_rax == syscall.SYS_CREAT || regs.Rsi&(oCreat|oTrunc) != 0
	case syscall.SYS_RENAME, syscall.SYS_RENAMEAT, 316, // renameat2
		syscall.SYS_UNLINK, syscall.SYS_UNLINKAT, syscall.SYS_TRUNCATE, syscall.SYS_MKDIR, syscall.SYS_MKDIRAT,
		syscall.SYS_RMDIR, syscall.SYS_LINK, syscall.SYS_LINKAT, syscall.SYS_MSYNC, syscall.SYS_SYNC, 306: // syncfs
		return true
	}
	return false
}

// isFile reports whether fd of thread tid is a file (not a pipe, socket,
// eventfd or device): the Go runtime and the protocol write to those.
func isFile(tid, fd int) bool {
	target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", tid, fd))
	return err == nil && strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "/dev/")
}
