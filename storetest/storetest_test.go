package storetest_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/storetest"
)

func reference() (stores.Set, error) {
	st, err := stores.MustLookup("reference").Open(context.Background())
	if err != nil {
		return stores.Set{}, err
	}
	return st.Instance(context.Background())
}

// The reference store passes the suite.
func TestReferencePasses(t *testing.T) {
	storetest.Check(t, reference, storetest.Options{Schedules: 10})
}

// dropper loses every third PutSession: a store with a lost-update bug.
type dropper struct {
	stores.All
	mu sync.Mutex
	n  int
}

func (d *dropper) PutSession(ctx context.Context, addr string, b []byte) error {
	d.mu.Lock()
	d.n++
	drop := d.n%3 == 0
	d.mu.Unlock()
	if drop {
		return nil
	}
	return d.All.PutSession(ctx, addr, b)
}

func broken() (stores.Set, error) {
	set, err := reference()
	if err != nil {
		return set, err
	}
	d := &dropper{All: set.Sessions.(stores.All)}
	return stores.SetOf(d), nil
}

// record is a storetest.TB that keeps failures instead of failing.
type record struct {
	errors []string
	logs   []string
}

func (r *record) Helper()                   {}
func (r *record) Name() string              { return "TestBrokenStore" }
func (r *record) Logf(f string, a ...any)   { r.logs = append(r.logs, fmt.Sprintf(f, a...)) }
func (r *record) Errorf(f string, a ...any) { r.errors = append(r.errors, fmt.Sprintf(f, a...)) }
func (r *record) Fatalf(f string, a ...any) { r.Errorf(f, a...) }

// A store that drops every third PutSession fails, with a replay command
// that reproduces the failure.
func TestBrokenStoreFails(t *testing.T) {
	rec := &record{}
	storetest.Check(rec, broken, storetest.Options{Schedules: 5, Scenarios: []string{"reply"}})
	require.Len(t, rec.errors, 1)
	msg := rec.errors[0]
	require.Contains(t, msg, "replay: "+storetest.ReplayEnv+"=")
	path := strings.Fields(strings.SplitN(msg, storetest.ReplayEnv+"=", 2)[1])[0]
	t.Logf("%s", msg)

	t.Setenv(storetest.ReplayEnv, path)
	again := &record{}
	storetest.Check(again, broken, storetest.Options{})
	require.Len(t, again.errors, 1, "replay must fail the same way")
	require.Contains(t, again.errors[0], "fails")
	os.Remove(path)
}

// The report is the same for one worker and for two: the same failing
// schedule, shrunk the same way.
func TestBrokenStoreWorkers(t *testing.T) {
	var msgs []string
	for _, w := range []int{1, 2} {
		rec := &record{}
		storetest.Check(rec, broken, storetest.Options{Schedules: 6, Scenarios: []string{"reply", "burst"}, Workers: w})
		require.NotEmpty(t, rec.errors)
		msgs = append(msgs, strings.Join(rec.errors, "\n"))
	}
	require.Equal(t, msgs[0], msgs[1])
}
