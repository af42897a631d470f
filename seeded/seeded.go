// Package seeded makes crypto/rand reproducible per run without making it
// a lock every run waits on. libsignal and whatsmeow draw ratchet keys,
// identities, signatures and padding from crypto/rand.Reader, a package
// variable (go.mau.fi/libsignal v0.2.1: ecc/Curve.go GenerateKeyPair and
// CalculateSignature, util/keyhelper, cipher/Cbc.go; whatsmeow
// v0.0.0-20251217143725-11cf47c62d32: util/keys through go.mau.fi/util
// v0.9.4 random.Bytes, which calls rand.Read, and Go 1.26's rand.Read reads
// Reader once it is not the default one). None of them uses the Go 1.26
// functions that ignore a replaced Reader (crypto/ecdh, ed25519
// GenerateKey). So the process gets one Reader that dispatches on the
// calling goroutine: a run binds its own goroutines (the driver, every
// scheduler task, free-mode goroutines) to its own stream, and any other
// goroutine reads the real crypto/rand. Runs on other goroutines therefore
// proceed in parallel, each drawing exactly the bytes it would draw alone.
package seeded

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/petermattis/goid"
)

// Stream is a ChaCha8 stream safe for the goroutines of one run (free-mode
// goroutines share it; controlled ones take turns).
type Stream struct {
	mu sync.Mutex
	c  *mrand.ChaCha8
}

// NewStream returns the stream for (seed, stream): the same bytes every time.
func NewStream(seed uint64, stream byte) *Stream {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	s[31] = stream
	return &Stream{c: mrand.NewChaCha8(s)}
}

// Read fills p from the stream; it never fails.
func (s *Stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.Read(p)
}

// dispatcher is the crypto/rand.Reader installed by Bind.
type dispatcher struct {
	bound  sync.Map // goroutine id (int64) -> io.Reader
	global atomic.Pointer[readerBox]
	real   io.Reader // the Reader found at install time
}

type readerBox struct{ r io.Reader }

func (d *dispatcher) Read(p []byte) (int, error) {
	if r, ok := d.bound.Load(goid.Get()); ok {
		return r.(io.Reader).Read(p)
	}
	if g := d.global.Load(); g != nil {
		return g.r.Read(p)
	}
	return d.real.Read(p)
}

var (
	installMu sync.Mutex
	disp      *dispatcher
)

// The dispatcher is installed before main starts, while nothing can read
// crypto/rand.Reader concurrently.
func init() { install() }

// install makes the dispatcher crypto/rand.Reader. After init it writes the
// variable only when something else (a child process seeding itself for
// good) put another reader there, so concurrent runs only ever read it.
func install() *dispatcher {
	installMu.Lock()
	defer installMu.Unlock()
	if disp != nil && rand.Reader == io.Reader(disp) {
		return disp
	}
	d := &dispatcher{real: rand.Reader}
	if disp != nil {
		// Keep the bindings of runs under way.
		disp.bound.Range(func(k, v any) bool { d.bound.Store(k, v); return true })
	}
	disp = d
	rand.Reader = d
	return d
}

// Bind makes r the calling goroutine's crypto/rand until unbind is called,
// which restores what was bound before (a run's baseline binds its own
// stream inside the run's goroutine, then gives it back).
func Bind(r io.Reader) (unbind func()) {
	d := install()
	id := goid.Get()
	prev, had := d.bound.Load(id)
	d.bound.Store(id, r)
	return func() {
		if had {
			d.bound.Store(id, prev)
		} else {
			d.bound.Delete(id)
		}
	}
}

// Current returns the reader bound to the calling goroutine, or nil.
func Current() io.Reader {
	installMu.Lock()
	d := disp
	installMu.Unlock()
	if d == nil {
		return nil
	}
	if r, ok := d.bound.Load(goid.Get()); ok {
		return r.(io.Reader)
	}
	return nil
}

// Go runs fn on a new goroutine bound to the caller's reader, if any: the
// goroutines a run starts draw from the run's stream.
func Go(fn func()) {
	r := Current()
	go func() {
		if r != nil {
			defer Bind(r)()
		}
		fn()
	}()
}

// SetGlobal makes r the crypto/rand of every goroutine not bound by Bind,
// until restore is called. It is for drivers that seed the whole process
// (procs' parent side); callers serialise among themselves.
func SetGlobal(r io.Reader) (restore func()) {
	d := install()
	old := d.global.Swap(&readerBox{r})
	return func() { d.global.Store(old) }
}
