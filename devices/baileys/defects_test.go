package baileys

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The known Baileys defects (docs/design.md §3), each found by a schedule
// the harness generated (badmac run -device …, seed 1) and saved in
// testdata; each replays here against the real Baileys code, and the test
// checks both the failure and the mechanism in the replayed history.
func TestKnownDefects(t *testing.T) {
	if _, err := AdapterDir(); err != nil {
		needAdapter(t, err)
		t.Skip("Baileys adapter not installed")
	}
	ctx := context.Background()
	cases := []struct {
		file    string
		summary string
		// mechanism checks the history (and the adapter's transaction log).
		mechanism func(t *testing.T, history string, txnLog string)
	}{
		{
			// 6.x addTransactionCapability: one global transaction. r1's
			// send commits (its store write is parked at the gate) when r2's
			// send joins the same transaction; r2's session write lands in
			// the mutations after the commit read them, and the commit's end
			// clears them: r2's ratchet step reaches neither the cache nor
			// the files. r3 encrypts from r1's record and reuses r2's
			// counter: the peer drops r3 as an old counter.
			file: "baileys6-stock-reply-dropped-commit.txt", summary: "r3 lost [OldCounter]",
			mechanism: func(t *testing.T, h, _ string) {
				inOrder(t, h, "reply alice.0 r1", "reply alice.0 r2", "r2: sent (msg)", "r1 set session alice.0", "r3 set session alice.0")
				if strings.Contains(h, "r2 set session") {
					t.Errorf("r2 wrote its session itself; the defect is that its write is dropped")
				}
			},
		},
		{
			// The same 6.x defect under the seed's fix (a mutex around each
			// get and set, no cache): the mutex does not stop a decrypt from
			// joining a send's global transaction. r2's commit is pending
			// while m2 and m4 (decrypts) and r3, r4 (sends) run inside r2's
			// transaction; all their writes are dropped. m2 carried the
			// contact's new ratchet key and r4 went out on the device's new
			// one; the contact answers on that chain, which the device no
			// longer has: m6 Bad MAC, recovered by a retry receipt.
			file: "baileys6-seedfix-reply-dropped-commit-badmac.txt", summary: "m6 recovered [BadMAC]",
			mechanism: func(t *testing.T, h, _ string) {
				inOrder(t, h, "reply alice.0 r2", "r2 get session alice.0", "m2: ok", "m4: ok", "r4: sent (msg)",
					"r2 set session alice.0", "read r4", "r4: ok", "m6: BadMAC (No matching sessions found for message)")
				for _, own := range []string{"m2 set session", "m4 set session", "r4 set session"} {
					if strings.Contains(h, own) {
						t.Errorf("%q: the task wrote its session itself; the defect is that its write is dropped", own)
					}
				}
			},
		},
		{
			// 7.x: per-key transaction mutexes, but a send's transaction is
			// keyed by the bot's own jid and encryptMessage's nested
			// transaction for the contact reuses it without taking the
			// contact's lock. m2's decrypt (the contact's transaction) commits
			// while r3's encrypt holds a record loaded before it; r3's commit
			// overwrites m2's step and r3/r4 end on one counter.
			file: "baileys7-stock-reply-nested-txn.txt", summary: "r3 lost [OldCounter]",
			mechanism: func(t *testing.T, h, txn string) {
				inOrder(t, txn, "txn r3 key=bot:0@s.whatsapp.net nested=false", "txn m2 key=alice@s.whatsapp.net nested=false",
					"txn r3 key=alice@s.whatsapp.net nested=true")
				inOrder(t, h, "reply alice.0 r3", "m2 set session alice.0", "r3: sent (msg)")
			},
		},
		{
			// The same 7.x lock skip ending in Bad MAC: r1's encrypt (its
			// nested transaction for alice takes no lock on alice) and m2's
			// decrypt (alice's own transaction) work on alice's session at
			// once, from records loaded before the other's commit; one
			// commit overwrites the other's ratchet state, and the contact's
			// m6 fails Bad MAC (recovered by a retry receipt).
			file: "baileys7-stock-reply-nested-txn-badmac.txt", summary: "m6 recovered [BadMAC]",
			mechanism: func(t *testing.T, h, txn string) {
				inOrder(t, txn, "txn r1 key=bot:0@s.whatsapp.net nested=false", "txn r1 key=alice@s.whatsapp.net nested=true",
					"txn m2 key=alice@s.whatsapp.net nested=false")
				inOrder(t, h, "reply alice.0 r1", "deliver m2", "r1 set session alice.0", "m2: ok",
					"m6: BadMAC (No matching sessions found for message)")
			},
		},
		{
			// useMultiFileAuthState writes creds.json in place; a crash part
			// way leaves a prefix, and on restart the unparsable file reads as
			// null and becomes initAuthCreds(): a new identity and
			// registration id, and the contact's sessions go Bad MAC.
			file: "baileys6-stock-torn-creds.txt", summary: "REGENERATED CREDENTIALS",
			mechanism: func(t *testing.T, h, _ string) {
				inOrder(t, h, "tear: the device died inside a creds.json write", "restart: REGENERATED CREDENTIALS (registration id 25 → 150)")
			},
		},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			s, err := Parse(string(text))
			if err != nil {
				t.Fatal(err)
			}
			version, _ := ParseDevice(s.Device)
			txnLog := filepath.Join(t.TempDir(), "txn.log")
			t.Setenv("BADMAC_DEBUG", txnLog) // the adapter logs its transactions there
			rn, err := NewRunner(ctx, version, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer rn.Close()
			o, err := rn.Run(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if !o.Result.Failed() || !strings.Contains(o.Result.Summary(), c.summary) {
				t.Fatalf("replay: %q, want a failure with %q; history:\n%s", o.Result.Summary(), c.summary, strings.Join(o.Result.History, "\n"))
			}
			log, _ := os.ReadFile(txnLog)
			c.mechanism(t, strings.Join(o.Result.History, "\n"), string(log))
		})
	}
}

// inOrder checks that the lines occur in text in that order.
func inOrder(t *testing.T, text string, lines ...string) {
	t.Helper()
	at := 0
	for _, l := range lines {
		re := regexp.MustCompile("(?m)^(drain: )?" + regexp.QuoteMeta(l) + "$")
		loc := re.FindStringIndex(text[at:])
		if loc == nil {
			t.Fatalf("%q not found after offset %d in:\n%s", l, at, text)
		}
		at += loc[1]
	}
}

// The other direction: the locked variant (one lock per contact around
// each whole receive and send, no cache) survives the schedules that break
// stock and the seed's fix, on both versions.
func TestLockedHolds(t *testing.T) {
	if _, err := AdapterDir(); err != nil {
		needAdapter(t, err)
		t.Skip("Baileys adapter not installed")
	}
	ctx := context.Background()
	for _, v := range Versions {
		t.Run(v, func(t *testing.T) {
			rn, err := NewRunner(ctx, v, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer rn.Close()
			for _, name := range []string{"reply", "multi"} {
				sc, _ := LookupScenario(name)
				for i := range 8 {
					s := &Schedule{Device: "baileys@" + v, Variant: "locked", Scenario: name, Seed: uint64(1000 + i), Contacts: sc.Contacts}
					o, err := rn.Run(ctx, s)
					if err != nil {
						t.Fatal(err)
					}
					if o.Result.Failed() {
						t.Fatalf("locked failed: %s\n%s", o.Result.Summary(), o.Schedule)
					}
				}
			}
		})
	}
}

// Shrink keeps a failing schedule failing with fewer ops.
func TestShrink(t *testing.T) {
	if _, err := AdapterDir(); err != nil {
		needAdapter(t, err)
		t.Skip("Baileys adapter not installed")
	}
	ctx := context.Background()
	text, err := os.ReadFile(filepath.Join("testdata", "baileys7-stock-reply-nested-txn.txt"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(string(text))
	if err != nil {
		t.Fatal(err)
	}
	rn, err := NewRunner(ctx, "7.0.0-rc14", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rn.Close()
	o, err := rn.Run(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rn.Shrink(ctx, o, 20)
	if err != nil {
		t.Fatal(err)
	}
	if !small.Result.Failed() || len(small.Schedule.Ops) >= len(o.Schedule.Ops) || worst(small.Result) != worst(o.Result) {
		t.Fatalf("shrunk to %d ops (from %d), failed=%v, worst class %q (was %q)", len(small.Schedule.Ops), len(o.Schedule.Ops),
			small.Result.Failed(), worst(small.Result), worst(o.Result))
	}
	again, err := rn.Run(ctx, small.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	if again.Result.Summary() != small.Result.Summary() {
		t.Fatalf("the shrunk schedule replays to %q, not %q", again.Result.Summary(), small.Result.Summary())
	}
}
