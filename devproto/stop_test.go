package devproto

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// After waitStopped every thread of a busy multi-threaded process is
// stopped, and after SIGCONT it runs again: what Stop promises a copy
// taken in between (a kill at that instant). The child is this test
// binary spinning on several threads.
func TestWaitStopped(t *testing.T) {
	if os.Getenv("DEVPROTO_SPIN") == "1" {
		for range runtime.GOMAXPROCS(0) + 2 {
			go func() {
				for {
				}
			}()
		}
		select {}
	}
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("no /proc: waitStopped returns at once there")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWaitStopped$")
	cmd.Env = append(os.Environ(), "DEVPROTO_SPIN=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() { cmd.Process.Kill(); <-exited }()
	pid := cmd.Process.Pid
	// Running: not every thread is stopped.
	for stopped, _ := allStopped(pid); stopped; stopped, _ = allStopped(pid) {
		time.Sleep(time.Millisecond)
	}
	for range 20 {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if err := waitStopped(pid, exited, time.Minute); err != nil {
			t.Fatal(err)
		}
		if stopped, err := allStopped(pid); !stopped || err != nil {
			t.Fatalf("waitStopped returned with a thread running (%v)", err)
		}
		syscall.Kill(pid, syscall.SIGCONT)
		for stopped, _ := allStopped(pid); stopped; stopped, _ = allStopped(pid) {
			time.Sleep(100 * time.Microsecond)
		}
	}
	// A process that is gone counts as stopped.
	cmd.Process.Kill()
	<-exited
	if err := waitStopped(pid, exited, time.Second); err != nil {
		t.Fatal(err)
	}
}
