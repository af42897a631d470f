package realclient

import (
	"context"
	"fmt"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// T is the part of *testing.T that Check uses.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// CheckOptions tune Check; zero values take the defaults.
type CheckOptions struct {
	Seed     uint64 // default 1
	Messages int    // per conversation, default 12
	// FreeRuns is the number of free-running conversations with async
	// replies whose rates are logged (never failed: whatsmeow itself races
	// there). Default 0.
	FreeRuns int
}

// checkStore is the candidate's name in Check's schedules.
const checkStore = "candidate"

// Check runs an unmodified whatsmeow Client on the candidate store (a
// fresh one from newStore per conversation) for a store author's own test:
//
//	func TestMyStoreUnderWhatsmeow(t *testing.T) {
//		realclient.Check(t, func() (stores.Set, error) { return stores.SetOf(mystore.New()), nil }, realclient.CheckOptions{})
//	}
//
// It is the harness's run of the scenario reply with two contacts and a
// reply to every text, one message at a time
// (reply:messages=N:contacts=2:burst=1:reply=1, scenarios/params.go), on
// the device client-inline and then client-async over the candidate, in
// serial mode: every goroutine the client starts runs to its end before
// the next op, so nothing overlaps and whatsmeow itself cannot lose a
// message: every message not delivered cleanly is the store's, and fails
// the test. FreeRuns then runs the same scenario in bursts of up to four
// on client-async in free mode and logs its rates.
func Check(t T, newStore func() (stores.Set, error), opts CheckOptions) {
	t.Helper()
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Messages == 0 {
		opts.Messages = 12
	}
	ctx := context.Background()
	v := stores.Variant{Name: checkStore, Doc: "the store under Check", Open: func(context.Context) (stores.Storage, error) {
		return freshStorage(newStore), nil
	}}
	shape := fmt.Sprintf("reply:messages=%d:contacts=2:reply=1:burst=", opts.Messages)
	for _, mode := range []Reply{Inline, Async} {
		res, err := checkRun(ctx, t, v, mode, shape+"1", opts.Seed, harness.Serial)
		if err != nil {
			t.Errorf("real client, %s replies: %v", mode, err)
			continue
		}
		in := 0
		for _, m := range res.Messages {
			if m.Dir == harness.In {
				in++
			}
			if o := m.Outcome(); o != harness.Delivered {
				t.Errorf("real client, %s replies, one stanza in flight: %s", mode, describe(m))
			}
		}
		// A run that sent less than asked is no pass: the store was not
		// exercised (a clean result over fewer messages proves less).
		if in != opts.Messages {
			t.Errorf("real client, %s replies: %d of %d messages sent", mode, in, opts.Messages)
		}
	}
	for i := 0; i < opts.FreeRuns; i++ {
		seed := opts.Seed + uint64(i)
		res, err := checkRun(ctx, t, v, Async, shape+"4", seed, harness.Free)
		if err != nil {
			t.Errorf("real client, free run %d: %v", i, err)
			continue
		}
		c := res.Counts()
		lo, hi := harness.Wilson(c.Blamed, c.Messages)
		t.Logf("real client, async replies, free run seed %d: %d/%d not delivered cleanly [%.1f%%, %.1f%%], failures %v (rerun, not replayed)",
			seed, c.Blamed, c.Messages, 100*lo, 100*hi, c.Failures)
	}
}

// checkRun is one of Check's conversations: the scenario sc on the device
// with reply mode over v, judged by the device's judge (harness.RunOn).
func checkRun(ctx context.Context, t T, v stores.Variant, mode Reply, sc string, seed uint64, m harness.Mode) (*harness.Result, error) {
	s, err := scenarios.Lookup(sc)
	if err != nil {
		return nil, err
	}
	d := &Device{Reply: mode, Variant: &v, Dir: t.TempDir()}
	setup := s.Setup(seed, harness.Whatsmeow, v.Name)
	setup.Device = d.Name()
	_, res, err := harness.RunOn(ctx, d, setup, m, scenarios.NewGenerator(s, scenarios.Random, seed))
	return res, err
}

// freshStorage is Check's candidate as stores.Storage: each instance a
// fresh store from newStore.
type freshStorage func() (stores.Set, error)

func (f freshStorage) Instance(context.Context) (stores.Set, error) { return f() }
func (f freshStorage) Close() error                                 { return nil }

func describe(m *harness.Message) string {
	s := fmt.Sprintf("%s (%s, %s) %s", m.ID, m.Dir, m.Peer, m.Outcome())
	for _, a := range m.Attempts {
		if a.OK {
			s += fmt.Sprintf("; %s ok", a.Delivery)
		} else {
			s += fmt.Sprintf("; %s %s: %s", a.Delivery, a.Class, a.Err)
		}
	}
	return s
}
