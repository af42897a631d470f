package realclient

import (
	"context"
	"fmt"

	"github.com/badmac/badmac/harness"
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

// Check runs an unmodified whatsmeow Client on the candidate store (a
// fresh one from newStore per conversation) for a store author's own test:
//
//	func TestMyStoreUnderWhatsmeow(t *testing.T) {
//		realclient.Check(t, func() (stores.Set, error) { return stores.SetOf(mystore.New()), nil }, realclient.CheckOptions{})
//	}
//
// Two contacts talk to the bot, which replies from its handler and, in a
// second conversation, from a goroutine; one stanza is in flight at a time,
// so nothing overlaps and whatsmeow itself cannot lose a message: every
// message not delivered cleanly is the store's, and fails the test.
func Check(t T, newStore func() (stores.Set, error), opts CheckOptions) {
	t.Helper()
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Messages == 0 {
		opts.Messages = 12
	}
	ctx := context.Background()
	for _, mode := range []Reply{Inline, Async} {
		res, _, err := Converse(ctx, Config{Seed: opts.Seed, Messages: opts.Messages, Contacts: 2, Burst: 1,
			Reply: mode, Dir: t.TempDir(), NewSet: newStore})
		if err != nil {
			t.Errorf("real client, %s replies: %v", mode, err)
			continue
		}
		for _, m := range res.Messages {
			if o := m.Outcome(); o != harness.Delivered {
				t.Errorf("real client, %s replies, one stanza in flight: %s", mode, describe(m))
			}
		}
	}
	for i := 0; i < opts.FreeRuns; i++ {
		res, _, err := Converse(ctx, Config{Seed: opts.Seed + uint64(i), Messages: opts.Messages, Contacts: 2, Burst: 4,
			Reply: Async, Dir: t.TempDir(), NewSet: newStore})
		if err != nil {
			t.Errorf("real client, free run %d: %v", i, err)
			continue
		}
		c := res.Counts()
		lo, hi := harness.Wilson(c.Blamed, c.Messages)
		t.Logf("real client, async replies, free run seed %d: %d/%d not delivered cleanly [%.1f%%, %.1f%%], failures %v (rerun, not replayed)",
			opts.Seed+uint64(i), c.Blamed, c.Messages, 100*lo, 100*hi, c.Failures)
	}
}

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
