package baileys

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// The known Baileys defects (docs/design.md §3), each found by a schedule
// the harness generated (badmac run -device …, seed 1) and saved in
// testdata; each replays here against the real Baileys code, and the test
// checks both the failure and the mechanism in the replayed history.
func TestKnownDefects(t *testing.T) {
	if _, err := installedAdapter(); err != nil {
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
			// The same 6.x defect under the locked variant, across two
			// contacts (found by the harness's multi scenario, seed 1,
			// shrunk): the per-contact lock keeps alice's tasks apart, but
			// 6.x has one global transaction. r1 (to bob) opens it and
			// parks at its commit; m2's decrypt and r2's encrypt for
			// alice.1 run inside it; r2's session write lands after the
			// commit read the mutations and is dropped. r3 reuses r2's
			// counter: the peer drops it as an old counter.
			file: "baileys6-locked-multi-global-txn.txt", summary: "r3 lost [OldCounter]",
			mechanism: func(t *testing.T, h, _ string) {
				inOrder(t, h, "reply bob.0 r1", "r1 get session bob.0", "reply alice.1 r2", "r2: sent (msg)",
					"r1 set pre-key 1 (delete), session alice.1, session bob.0", "reply alice.1 r3",
					"r3: OldCounter (OldCounter: failed to get or create message keys: received message with old counter (index: 1, count: 0))")
				if strings.Contains(h, "r2 set session") {
					t.Errorf("r2 wrote its session itself; the defect is that its write is dropped")
				}
			},
		},
		{
			// useMultiFileAuthState writes creds.json in place; a crash part
			// way leaves a prefix, and on restart the unparsable file reads as
			// null and becomes initAuthCreds(): a new identity and
			// registration id, and the contact's sessions go Bad MAC.
			file: "baileys6-stock-torn-creds.txt", summary: "REGENERATED CREDENTIALS",
			mechanism: func(t *testing.T, h, _ string) {
				inOrder(t, h, `crash "g": the device died inside a creds.json write`, "restart: REGENERATED CREDENTIALS (registration id 25 → 150)")
			},
		},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			s, err := harness.Parse(strings.NewReader(string(text)))
			if err != nil {
				t.Fatal(err)
			}
			version, err := ParseDevice(s.Device)
			if err != nil {
				t.Fatal(err)
			}
			txnLog := filepath.Join(t.TempDir(), "txn.log")
			t.Setenv("BADMAC_DEBUG", txnLog) // the adapter logs its transactions there
			dev, err := Open(ctx, version, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			sched, res, err := harness.RunOn(ctx, dev, s, harness.Controlled, harness.Ops(s.Ops))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Failed() || !strings.Contains(res.Summary(), c.summary) {
				t.Fatalf("replay: %q, want a failure with %q; history:\n%s", res.Summary(), c.summary, res.HistoryText())
			}
			schedText := string(text) // the schedule part: what follows "history" is its expected replay (docs/regressions.md)
			if i := strings.Index(schedText, "\nhistory\n"); i >= 0 {
				schedText = schedText[:i+1]
			}
			if sched.String() != schedText {
				t.Fatalf("the replayed schedule differs from the file:\n%s", sched)
			}
			log, _ := os.ReadFile(txnLog)
			c.mechanism(t, strings.Join(res.History, "\n"), string(log))
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
// each whole receive and send, no cache) survives the harness's scenarios
// that break stock and the seed's fix, on both versions: the scenarios run
// unchanged through scenarios.RunPairs and are judged by the harness.
// Not multi on 6.x: its one global transaction spans contacts, so a
// per-contact lock does not keep a send to bob out of a send to alice's
// commit (testdata/baileys6-locked-multi-global-txn.txt).
func TestLockedHolds(t *testing.T) {
	if _, err := installedAdapter(); err != nil {
		needAdapter(t, err)
		t.Skip("Baileys adapter not installed")
	}
	ctx := context.Background()
	n := testenv.Size(2, 6)
	for _, v := range Versions {
		t.Run(v, func(t *testing.T) {
			dev, err := Open(ctx, v, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			var pairs []scenarios.Pair
			names := []string{"reply", "reorder", "burst"}
			if v != "6.17.16" {
				names = append(names, "multi")
			}
			for _, name := range names {
				sc, _ := scenarios.Lookup(name)
				pairs = append(pairs, scenarios.Pair{Scenario: sc, Discipline: harness.Locked, Variant: stores.Variant{Name: "locked"}, Device: dev})
			}
			prs, err := scenarios.RunPairs(ctx, pairs, scenarios.Config{Mode: harness.Controlled, Seed: 1000, Schedules: n, Workers: 1})
			if err != nil {
				t.Fatal(err)
			}
			msgs := 0
			for _, pr := range prs {
				if pr.Failed > 0 {
					t.Errorf("locked/%s failed %d of %d: %s\n%s\nhistory:\n%s", pr.Scenario, pr.Failed, pr.Schedules, pr.FirstResult.Summary(), pr.First, pr.FirstResult.HistoryText())
				}
				msgs += pr.Counts.Messages
			}
			t.Logf("locked: %d schedules of %v, %d messages, no failure", n*len(prs), names, msgs)
		})
	}
}

// openAdapter starts the adapter for version, closed when t ends; without
// the adapter installed it skips (and fails under CI=true).
func openAdapter(t *testing.T, version string) *Device {
	t.Helper()
	if _, err := installedAdapter(); err != nil {
		needAdapter(t, err)
		t.Skip("Baileys adapter not installed")
	}
	dev, err := Open(context.Background(), version, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	return dev
}

// The harness's reply scenario, unchanged, catches stock 7.x through
// scenarios.RunPairs, shrinks its counterexample with harness.ShrinkWith on
// the device, and the shrunk schedule replays through harness.RunOn to the
// same failure, byte for byte.
func TestStockCaughtShrunkReplays(t *testing.T) {
	ctx := context.Background()
	dev := openAdapter(t, "7.0.0-rc14")
	sc, _ := scenarios.Lookup("reply")
	prs, err := scenarios.RunPairs(ctx, []scenarios.Pair{{Scenario: sc, Discipline: harness.Locked, Variant: stores.Variant{Name: "stock"},
		Device: dev}}, scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: 8, ShrinkBudget: testenv.Size(5, 15), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	pr := prs[0]
	if pr.First == nil {
		t.Fatalf("stock 7.x passed %d schedules of reply", pr.Schedules)
	}
	text := pr.First.String()
	s, err := harness.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	sched, res, err := harness.RunOn(ctx, dev, s, harness.Controlled, harness.Ops(s.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Failed() || res.Summary() != pr.FirstResult.Summary() || sched.String() != text || res.HistoryText() != pr.FirstResult.HistoryText() {
		t.Fatalf("replay: %q, want %q (or the schedule or history differ):\n%s", res.Summary(), pr.FirstResult.Summary(), text)
	}
	t.Logf("%d of %d failed; first shrunk to %d ops: %s", pr.Failed, pr.Schedules, len(pr.First.Ops), res.Summary())
}

// Crash ops run on the real process (a SIGKILL or a torn creds.json save,
// then a new process loading the folder) and still replay byte for byte:
// the harness's crash and torn scenarios, unchanged. By default the first
// schedule of each that crashed is replayed, under BADMAC_LONG each of 3.
func TestCrashReplays(t *testing.T) {
	ctx := context.Background()
	dev := openAdapter(t, "7.0.0-rc14")
	verbs := map[string]bool{}
	for _, name := range []string{"crash", "torn"} {
		sc, _ := scenarios.Lookup(name)
		replayed := 0
		for i := range 3 {
			if replayed == testenv.Size(1, 3) {
				break
			}
			seed := scenarios.SeedFor(1, i)
			setup := sc.Setup(seed, harness.Locked, "stock")
			sched, res, err := harness.RunOn(ctx, dev, setup, harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, seed))
			if err != nil {
				t.Fatal(err)
			}
			if res.Crashes == 0 {
				continue
			}
			replayed++
			for _, op := range sched.Ops {
				if _, ok := op.(harness.CrashOp); ok {
					verbs[op.String()] = true
				}
			}
			again, res2, err := harness.RunOn(ctx, dev, sched, harness.Controlled, harness.Ops(sched.Ops))
			if err != nil {
				t.Fatal(err)
			}
			if again.String() != sched.String() || res2.HistoryText() != res.HistoryText() || res2.Summary() != res.Summary() {
				t.Fatalf("%s seed %d: the replay differs: %q vs %q", name, seed, res2.Summary(), res.Summary())
			}
		}
	}
	if len(verbs) == 0 {
		t.Fatal("no schedule crashed the device")
	}
	t.Logf("crash ops replayed: %v", verbs)
}
