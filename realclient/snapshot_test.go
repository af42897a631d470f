package realclient

import "testing"

// A goroutine waiting for one of whatsmeow's own locks is blocked (its
// holder is the run's); one waiting for any other lock (SQLite's, held
// for an instant by whoever is in a call) is moving.
func TestBlockedLockWaits(t *testing.T) {
	block := func(state string, frames ...string) *goroutine {
		return &goroutine{state: state, frames: frames}
	}
	cases := []struct {
		g    *goroutine
		want bool
	}{
		{block("sync.Mutex.Lock", "internal/sync.runtime_SemacquireMutex", "internal/sync.(*Mutex).lockSlow", "sync.(*Mutex).Lock", "go.mau.fi/whatsmeow.(*Client).SendMessage"), true},
		{block("sync.Mutex.Lock", "internal/sync.runtime_SemacquireMutex", "sync.(*Mutex).Lock", "modernc.org/libc.(*mutex).enter"), false},
		{block("sync.Mutex.Lock", "sync.(*Mutex).Lock", "go.mau.fi/whatsmeow/store/sqlstore.(*SQLStore).GetOrGenPreKeys"), false},
		{block("semacquire", "runtime.semacquire1", "go.mau.fi/whatsmeow.(*Client).handlerQueueLoop"), false},
		{block("chan receive", "github.com/badmac/badmac/realclient.(*ctl).wait"), true},
		{block("IO wait", "internal/poll.runtime_pollWait"), true},
		{block("runnable", "go.mau.fi/whatsmeow.(*Client).decryptDM"), false},
		{block("sleep", "time.Sleep"), false},
		{block("syscall", "syscall.Syscall"), false},
	}
	for _, c := range cases {
		if got := c.g.blocked(); got != c.want {
			t.Errorf("%s at %v: blocked %t, want %t", c.g.state, c.g.frames, got, c.want)
		}
	}
	g := parseGoroutine("goroutine 21 [sync.Mutex.Lock, 2 minutes labels:{\"badmac-realclient\": \"7\", \"badmac-task\": \"reply:r1\"}]:\n" +
		"internal/sync.runtime_SemacquireMutex(0x1)\n\t/x.go:1 +0x1\nsync.(*Mutex).Lock(...)\n\t/y.go:2\n" +
		"go.mau.fi/whatsmeow.(*Client).SendMessage(0x2)\n\t/send.go:385 +0x3\ncreated by github.com/badmac/badmac/realclient.(*Bot).scripted in goroutine 20\n\t/bot.go:1 +0x1")
	if g == nil || g.id != 21 || g.state != "sync.Mutex.Lock" || g.labels[taskLabel] != "reply:r1" || g.labels[runLabel] != "7" ||
		g.createdIn != 20 || g.creator != "github.com/badmac/badmac/realclient.(*Bot).scripted" || !g.blocked() {
		t.Errorf("parsed %+v", g)
	}
}
