package seeded

import (
	"bytes"
	"crypto/rand"
	"sync"
	"testing"
)

func draw(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// Goroutines bound to a stream draw exactly its bytes, whatever other
// goroutines draw at the same time; goroutines started with Go draw from
// their parent's stream; unbound goroutines get real randomness.
func TestStreamsPerGoroutine(t *testing.T) {
	want := func(seed uint64) []byte {
		b := make([]byte, 64*40)
		NewStream(seed, 0).Read(b)
		return b
	}
	var wg sync.WaitGroup
	got := make([][]byte, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer Bind(NewStream(uint64(g), 0))()
			var b []byte
			for range 20 {
				b = append(b, draw(64)...)
				// A child goroutine continues the same stream.
				ch := make(chan []byte)
				Go(func() { ch <- draw(64) })
				b = append(b, <-ch...)
			}
			got[g] = b
		}()
	}
	unbound := draw(64)
	wg.Wait()
	for g := range 4 {
		if !bytes.Equal(got[g], want(uint64(g))) {
			t.Errorf("goroutine %d: drew other bytes than its stream", g)
		}
		if bytes.Equal(unbound, want(uint64(g))[:64]) {
			t.Errorf("an unbound goroutine drew from stream %d", g)
		}
	}
	if Current() != nil {
		t.Errorf("the test goroutine is bound after its binders returned")
	}
}

// Bind inside a bound goroutine (a run's baseline) and its unbind restore
// the outer stream.
func TestBindNests(t *testing.T) {
	defer Bind(NewStream(1, 0))()
	a := draw(8)
	unbind := Bind(NewStream(1, 1))
	b := draw(8)
	unbind()
	c := draw(8)
	all := make([]byte, 16)
	NewStream(1, 0).Read(all)
	if !bytes.Equal(append(a, c...), all) {
		t.Errorf("outer stream not resumed after the inner unbind")
	}
	inner := make([]byte, 8)
	NewStream(1, 1).Read(inner)
	if !bytes.Equal(b, inner) {
		t.Errorf("inner binding not used")
	}
}
