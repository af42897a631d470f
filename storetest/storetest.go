// Package storetest checks a whatsmeow key store the way badmac's CLI does,
// from a store author's own `go test`:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func() (stores.Set, error) {
//			s := mystore.New(t.TempDir())
//			return stores.SetOf(s), nil
//		})
//	}
//
// Each schedule gets a fresh store from the constructor. The store is driven
// by the locked client discipline (one lock per address across
// load→decrypt→store, the correct client), so any failure the protocol
// baseline survives is the store's. A failure prints the shrunk schedule
// and the command that replays it.
package storetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// NewStore returns a fresh, empty store: the four whatsmeow interfaces.
type NewStore func() (stores.Set, error)

// Options tune Check; zero values are the defaults.
type Options struct {
	Scenarios  []string // default: burst, reply, multi, group, reorder
	Schedules  int      // per scenario; default 20
	Seed       uint64   // default 1
	Discipline harness.Discipline
	// Workers is how many schedules run at once (default GOMAXPROCS), so
	// the constructor is called from several goroutines. The result is the
	// same for any count.
	Workers int
}

// TB is the part of testing.TB that Check uses.
type TB interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// ReplayEnv names a schedule file for Run to replay instead of the suite.
const ReplayEnv = "BADMAC_REPLAY"

// Run checks the store with the default options.
func Run(t *testing.T, newStore NewStore) { Check(t, newStore, Options{}) }

// variant adapts a constructor to a badmac store variant.
func variant(name string, newStore NewStore) stores.Variant {
	return stores.Variant{Name: name, Doc: "the store under test", Open: func(context.Context) (stores.Storage, error) {
		return &storage{newStore: newStore}, nil
	}}
}

type storage struct {
	newStore NewStore
	set      *stores.Set
}

// Instance returns the same store each time: the suite's scenarios run one
// device process.
func (s *storage) Instance(context.Context) (stores.Set, error) {
	if s.set == nil {
		set, err := s.newStore()
		if err != nil {
			return stores.Set{}, err
		}
		s.set = &set
	}
	return *s.set, nil
}

func (s *storage) Close() error { return nil }

// Check runs the suite (or the schedule named by $BADMAC_REPLAY) against the
// store and reports every failing scenario with a replay command.
func Check(t TB, newStore NewStore, o Options) {
	t.Helper()
	ctx := context.Background()
	if o.Schedules == 0 {
		o.Schedules = 20
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Discipline == "" {
		o.Discipline = harness.Locked
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = scenarios.Default
	}
	v := variant("yours", newStore)
	if path := os.Getenv(ReplayEnv); path != "" {
		replay(t, v, path)
		return
	}
	for _, name := range o.Scenarios {
		sc, err := scenarios.Lookup(name)
		if err != nil {
			t.Fatalf("storetest: %v", err)
			return
		}
		pr, err := scenarios.RunPair(ctx, sc, o.Discipline, v,
			scenarios.Config{Mode: harness.Controlled, Policy: scenarios.Random, Seed: o.Seed, Schedules: o.Schedules, ShrinkBudget: 200, Workers: o.Workers})
		if err != nil {
			t.Fatalf("storetest: scenario %s: %v", name, err)
			return
		}
		if pr.First == nil {
			t.Logf("storetest: %s: %d schedules, %d messages, no failures", name, pr.Schedules, pr.Counts.Messages)
			continue
		}
		path := filepath.Join(os.TempDir(), fmt.Sprintf("badmac-%s-%s-seed%d.txt", sanitize(t.Name()), name, pr.First.Seed))
		werr := os.WriteFile(path, []byte(pr.First.String()), 0o644)
		cmd := fmt.Sprintf("%s=%s go test -run '^%s$' .", ReplayEnv, path, t.Name())
		if werr != nil {
			cmd = fmt.Sprintf("(could not save schedule: %v)", werr)
		}
		t.Errorf("storetest: scenario %s: %d of %d schedules failed (%d messages blamed): %s\nshrunk schedule (%d ops):\n%s\nreplay: %s",
			name, pr.Failed, pr.Schedules, pr.Counts.Blamed, pr.FirstResult.Summary(), len(pr.First.Ops), pr.First, cmd)
	}
}

func replay(t TB, v stores.Variant, path string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("storetest: %v", err)
		return
	}
	defer f.Close()
	s, err := harness.Parse(f)
	if err != nil {
		t.Fatalf("storetest: %s: %v", path, err)
		return
	}
	_, res, err := harness.Execute(context.Background(), s, v, harness.Controlled, harness.Ops(s.Ops))
	if err != nil {
		t.Fatalf("storetest: replay %s: %v", path, err)
		return
	}
	t.Logf("storetest: replay of %s, history:\n%s", path, res.HistoryText())
	if res.Failed() {
		t.Errorf("storetest: replay of %s fails: %s", path, res.Summary())
	}
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '\\' {
			return '_'
		}
		return r
	}, s)
}
