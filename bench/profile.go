package bench

import (
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/badmac/badmac/stores"
)

// Categories are where a loop's CPU goes, in the order `badmac bench`
// prints them. A profile sample belongs to the leaf-most frame of its
// stack that has an owner (below); the Go runtime and the formatting and
// container packages of the standard library own nothing, so an
// allocation or a fmt.Sprint is charged to the code that asked for it.
var Categories = []string{
	CatCrypto, CatLogger, CatJSON, CatStore, CatHarness, CatGC, CatRuntime,
}

const (
	CatCrypto  = "libsignal crypto and protocol"
	CatLogger  = "libsignal's logger"
	CatJSON    = "JSON session records"
	CatStore   = "in-memory store"
	CatHarness = "harness's own"
	CatGC      = "GC background"
	CatRuntime = "Go scheduler, other"
)

// owner returns the category of a function, or "" when it owns nothing.
func owner(fn string) string {
	switch {
	case strings.HasPrefix(fn, "go.mau.fi/libsignal/logger."):
		// runtime.Caller and fmt.Sprint for every Debug line, before the
		// installed (silent) logger sees it.
		return CatLogger
	case strings.HasPrefix(fn, "encoding/json."), strings.HasPrefix(fn, "encoding/base64."):
		return CatJSON
	case strings.HasPrefix(fn, "go.mau.fi/"), strings.HasPrefix(fn, "crypto/"),
		strings.HasPrefix(fn, "golang.org/x/crypto/"), strings.HasPrefix(fn, "google.golang.org/protobuf/"):
		return CatCrypto
	case strings.HasPrefix(fn, "github.com/badmac/badmac/stores."):
		return CatStore
	case strings.HasPrefix(fn, "github.com/badmac/badmac/"):
		// The scheduler, probe and trace, history, oracle, peers' own
		// code, setup; and the raw loop's few lines.
		return CatHarness
	}
	return ""
}

// Where is the CPU time of one loop by category.
type Where struct {
	Messages int
	Samples  int
	CPU      map[string]time.Duration
	Total    time.Duration
}

// PerMessage is the CPU time per message of category c.
func (w Where) PerMessage(c string) time.Duration {
	if w.Messages == 0 {
		return 0
	}
	return w.CPU[c] / time.Duration(w.Messages)
}

// Profiled are the three loops of one profiling pass.
type Profiled struct {
	Raw, Run, WithBaseline Where
}

// ProfileLoops runs conversations of n messages through the raw loop, the
// harness (controlled run) and the harness with its protocol baseline,
// each until it used at least d of process CPU, under a CPU profile of
// its own, and splits each
// loop's CPU time by category. One profile per loop, so the runtime's own
// goroutines (the GC's background workers) are charged to the loop that
// made the garbage.
func ProfileLoops(ctx context.Context, v stores.Variant, n int, d time.Duration) (Profiled, error) {
	var out Profiled
	var err error
	if out.Raw, err = profileLoop(n, d, func() error { _, err := RawTimed(ctx, n); return err }); err != nil {
		return out, err
	}
	if out.Run, err = profileLoop(n, d, func() error { _, err := Harness(ctx, v, n, false); return err }); err != nil {
		return out, err
	}
	out.WithBaseline, err = profileLoop(n, d, func() error { _, err := Harness(ctx, v, n, true); return err })
	return out, err
}

func profileLoop(n int, d time.Duration, f func() error) (Where, error) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		return Where{}, fmt.Errorf("cpu profile: %w", err)
	}
	w := Where{CPU: map[string]time.Duration{}}
	var err error
	// d is CPU time, not wall time: on a loaded machine a wall-clock
	// budget would leave too few samples.
	used := func() func() time.Duration {
		start, wall := ProcessCPU(), time.Now()
		if start == 0 { // not measured on this platform
			return func() time.Duration { return time.Since(wall) }
		}
		return func() time.Duration { return ProcessCPU() - start }
	}()
	for err == nil && used() < d {
		if err = f(); err == nil {
			w.Messages += n
		}
	}
	pprof.StopCPUProfile()
	if err != nil {
		return w, err
	}
	p, err := profile.Parse(&buf)
	if err != nil {
		return w, fmt.Errorf("parsing the cpu profile: %w", err)
	}
	cpu := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			cpu = i
		}
	}
	if cpu < 0 {
		return w, fmt.Errorf("cpu profile without cpu samples")
	}
	for _, s := range p.Sample {
		t := time.Duration(s.Value[cpu])
		w.CPU[classify(s)] += t
		w.Total += t
		w.Samples++
	}
	return w, nil
}

func classify(s *profile.Sample) string {
	for _, loc := range s.Location { // leaf first
		for _, ln := range loc.Line { // inlined frames, innermost first
			if ln.Function == nil {
				continue
			}
			if strings.HasPrefix(ln.Function.Name, "runtime.gcBgMarkWorker") {
				return CatGC
			}
			if c := owner(ln.Function.Name); c != "" {
				return c
			}
		}
	}
	return CatRuntime
}
