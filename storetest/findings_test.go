package storetest_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/sim"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/storetest"
)

// dirBackend keeps each key in a file of its own under dir, written to a
// temporary file and renamed: what one process writes, another reads.
type dirBackend struct{ dir string }

func (b dirBackend) path(key string) string {
	return filepath.Join(b.dir, hex.EncodeToString([]byte(key)))
}

func (b dirBackend) Get(_ context.Context, key string) ([]byte, error) {
	v, err := os.ReadFile(b.path(key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return v, err
}

func (b dirBackend) Put(_ context.Context, key string, val []byte) error {
	tmp := b.path(key) + ".tmp"
	if err := os.WriteFile(tmp, val, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, b.path(key))
}

func (b dirBackend) Delete(_ context.Context, key string) error {
	if err := os.Remove(b.path(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (b dirBackend) Keys(_ context.Context, prefix string) ([]string, error) {
	ents, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		k, err := hex.DecodeString(e.Name())
		if err == nil && strings.HasPrefix(string(k), prefix) {
			out = append(out, string(k))
		}
	}
	sort.Strings(out)
	return out, nil
}

// openDir is a correct file store: badmac's KV layout, one file per key,
// one lock per process around each call. (Two processes never write one
// key at once in these tests.)
func openDir(dir string) (stores.Set, io.Closer, error) {
	return stores.SetOf(&stores.KV{Backend: dirBackend{dir}, Lock: &sim.Mutex{}}), nil, nil
}

// openCachedDir reads through a cache of its own process: another
// process's writes never reach it.
func openCachedDir(dir string) (stores.Set, io.Closer, error) {
	return stores.SetOf(&stores.KV{Backend: stores.NewCache(dirBackend{dir}, stores.DefaultCacheTTL), Lock: &sim.Mutex{}}), nil, nil
}

// openDroppingDir loses every second session write.
func openDroppingDir(dir string) (stores.Set, io.Closer, error) {
	set, _, _ := openDir(dir)
	return stores.SetOf(&dropper{All: set.Sessions.(stores.All), every: 2}), nil, nil
}

// Each finding kind names its culprit, on a store built to have that bug
// and no other. Stores under an Opener run in processes of this test
// binary, one (sub)test per CheckOpener call.
func TestFindingsNameTheCulprit(t *testing.T) {
	two := storetest.Options{Conformance: []string{"two instances at once"}, Scenarios: []string{"burst"}, Schedules: 1, FreeSchedules: -1}
	t.Run("stale read from another instance", func(t *testing.T) {
		rec := &record{name: t.Name()}
		storetest.CheckOpener(rec, openCachedDir, two)
		require.Len(t, rec.errors, 1, "%q", rec.errors)
		require.Contains(t, rec.errors[0], "GetSession alice:0 by instance @1 returned nothing, not what PutSession by instance @0 wrote before it")
		require.Contains(t, rec.errors[0], "a stale read, not a lost write")
		require.NotContains(t, rec.errors[0], "dropped")
		require.Contains(t, rec.errors[0], "set Options.SingleProcess", "the failure says how to declare a store written for one process")
	})
	t.Run("single process declared", func(t *testing.T) {
		// The same store, declared as opened by one process at a time: no
		// two instances run, each left out with why, and nothing fails.
		rec := &record{name: t.Name()}
		one := two
		one.Scenarios, one.SingleProcess = []string{"burst", "combined"}, true
		storetest.CheckOpener(rec, openCachedDir, one)
		require.Empty(t, rec.errors)
		logs := strings.Join(rec.logs, "\n")
		require.Contains(t, logs, "conformance checks not run: two instances at once (Options.SingleProcess")
		require.Contains(t, logs, "scenario combined without a second process (Options.SingleProcess")
	})
	t.Run("dropped write", func(t *testing.T) {
		rec := &record{name: t.Name()}
		storetest.CheckOpener(rec, openDroppingDir, two)
		defer rec.removeReplays()
		require.NotEmpty(t, rec.errors)
		require.Contains(t, rec.errors[0], "the write was lost")
		require.NotContains(t, rec.errors[0], "stale read")
	})
	t.Run("correct", func(t *testing.T) {
		rec := &record{name: t.Name()}
		storetest.CheckOpener(rec, openDir, two)
		require.Empty(t, rec.errors)
	})
	t.Run("missing prekey", func(t *testing.T) {
		rec := &record{}
		storetest.Check(rec, wrap(func(a stores.All) stores.All { return forgetPreKeys{a} }),
			storetest.Options{Conformance: []string{"prekeys and identities"}, Scenarios: []string{"burst"}, Schedules: 1, FreeSchedules: -1})
		require.NotEmpty(t, rec.errors)
		require.Contains(t, rec.errors[0], "GetPreKey 1 returned nothing, though GetOrGenPreKeys handed it out and RemovePreKey never removed it")
	})
	t.Run("reused prekey id", func(t *testing.T) {
		rec := &record{}
		storetest.Check(rec, wrap(func(a stores.All) stores.All { return reuseOne{a} }),
			storetest.Options{Conformance: []string{"prekeys and identities"}, Scenarios: []string{"burst"}, Schedules: 1, FreeSchedules: -1})
		require.NotEmpty(t, rec.errors)
		require.Contains(t, rec.errors[0], "GenOnePreKey handed out prekey 1 with a different key than GetOrGenPreKeys had given it")
	})
	t.Run("omitted address", func(t *testing.T) {
		rec := &record{}
		storetest.Check(rec, wrap(func(a stores.All) stores.All { return omitting{a} }),
			storetest.Options{Conformance: []string{"keys and batches"}, Scenarios: []string{"firstcontact"}, Schedules: 2, FreeSchedules: -1})
		defer rec.removeReplays()
		require.Len(t, rec.errors, 2, "%q", rec.errors)
		require.Contains(t, rec.errors[0], "GetManySessions left out nobody:0, nobody:1, nobody:2 (no session)")
		require.Contains(t, rec.errors[1], "scenario firstcontact")
		require.Contains(t, rec.errors[1], "GetManySessions left out alice:")
		require.Contains(t, rec.errors[1], "shrunk schedule (1 ops)")

		// Shrinking a schedule of one op finds nothing shorter: it says so
		// and still saves the .shrunk.txt; a relative HTML path says where
		// it went.
		path := strings.Fields(strings.SplitN(rec.errors[1], storetest.ReplayEnv+"=", 2)[1])[0]
		t.Setenv(storetest.ReplayEnv, path)
		t.Setenv(storetest.ShrinkEnv, "5")
		t.Setenv(storetest.HTMLEnv, "timeline-test.html")
		again := &record{}
		storetest.Check(again, wrap(func(a stores.All) stores.All { return omitting{a} }), storetest.Options{})
		defer os.Remove("timeline-test.html")
		shrunk := strings.TrimSuffix(path, ".txt") + ".shrunk.txt"
		defer os.Remove(shrunk)
		logs := strings.Join(again.logs, "\n")
		require.Contains(t, logs, "found nothing shorter than its 1 ops in 5 runs; saved as it is to "+shrunk)
		require.FileExists(t, shrunk)
		require.Contains(t, logs, "(a relative BADMAC_HTML is relative to the test's package directory")
		require.Len(t, again.errors, 1, "the replay fails as the run did")
	})
}

// wrap is the reference store with one method changed.
func wrap(f func(stores.All) stores.All) storetest.NewStore {
	return func() (stores.Set, error) {
		set, err := reference()
		if err != nil {
			return set, err
		}
		return stores.SetOf(f(set.Sessions.(stores.All))), nil
	}
}

// forgetPreKeys finds no prekey.
type forgetPreKeys struct{ stores.All }

func (forgetPreKeys) GetPreKey(context.Context, uint32) (*keys.PreKey, error) { return nil, nil }

// reuseOne hands out id 1, with a new key, for every single prekey.
type reuseOne struct{ stores.All }

func (r reuseOne) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	k, err := r.All.GenOnePreKey(ctx)
	if k != nil {
		k.KeyID = 1
	}
	return k, err
}

// omitting leaves addresses without a session out of GetManySessions.
type omitting struct{ stores.All }

func (o omitting) GetManySessions(ctx context.Context, addrs []string) (map[string][]byte, error) {
	m, err := o.All.GetManySessions(ctx, addrs)
	for a, v := range m {
		if v == nil {
			delete(m, a)
		}
	}
	return m, err
}
