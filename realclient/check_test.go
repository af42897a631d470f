package realclient

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/badmac/badmac/stores"
)

func reference() (stores.Set, error) {
	st, err := stores.MustLookup("reference").Open(context.Background())
	if err != nil {
		return stores.Set{}, err
	}
	return st.Instance(context.Background())
}

// forgetful keeps the first session it is given per address and drops
// every later write: a store that loses ratchet steps.
type forgetful struct {
	stores.All
	mu   sync.Mutex
	seen map[string]bool
}

func (f *forgetful) keep(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	first := !f.seen[addr]
	f.seen[addr] = true
	return first
}

func (f *forgetful) PutSession(ctx context.Context, addr string, rec []byte) error {
	if !f.keep(addr) {
		return nil
	}
	return f.All.PutSession(ctx, addr, rec)
}

func (f *forgetful) PutManySessions(ctx context.Context, recs map[string][]byte) error {
	for addr, rec := range recs {
		if err := f.PutSession(ctx, addr, rec); err != nil {
			return err
		}
	}
	return nil
}

type recordingT struct {
	*testing.T
	mu     sync.Mutex
	errors []string
	logs   []string
}

func (r *recordingT) Logf(format string, args ...any) {
	r.mu.Lock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *recordingT) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// The reference store passes, its free run's rate logged.
func TestCheckPassesReferenceStore(t *testing.T) {
	rt := &recordingT{T: t}
	Check(rt, reference, CheckOptions{Messages: 6, FreeRuns: 1})
	if len(rt.errors) > 0 {
		t.Fatalf("Check failed the reference store: %s", strings.Join(rt.errors, "; "))
	}
	if len(rt.logs) != 1 || !strings.Contains(rt.logs[0], "free run seed 1: ") {
		t.Fatalf("want the free run's rate logged, got %q", rt.logs)
	}
	t.Log(rt.logs[0])
}

func TestCheckCatchesForgetfulStore(t *testing.T) {
	rt := &recordingT{T: t}
	Check(rt, func() (stores.Set, error) {
		set, err := reference()
		if err != nil {
			return set, err
		}
		all, ok := set.Sessions.(stores.All)
		if !ok {
			return set, fmt.Errorf("reference sessions are not stores.All")
		}
		f := &forgetful{All: all, seen: map[string]bool{}}
		set.Sessions = f
		return set, nil
	}, CheckOptions{Messages: 6})
	if len(rt.errors) == 0 {
		t.Fatal("Check passed a store that drops every session write after the first")
	}
	t.Logf("caught: %s", strings.Join(rt.errors[:1], ""))
}
