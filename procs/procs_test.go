package procs_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// The test binary doubles as the child: `badmac device` is procs.ChildMain.
func TestMain(m *testing.M) {
	if os.Getenv("BADMAC_PROCS_CHILD") == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "device" { // started as badmac's subcommand
			args = args[1:]
		}
		os.Exit(procs.ChildMain(context.Background(), args, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(testenv.Main(m, sqlstores.Shutdown))
}

func needStore(t *testing.T, name string) stores.Variant {
	t.Helper()
	if name == "postgres" {
		testenv.PostgresDSN(t) // $BADMAC_POSTGRES_DSN, or a cluster of this binary's
	}
	return stores.MustLookup(name)
}

// fresh opens a new database (a new device row) and a launcher of real
// child processes on it.
func fresh(t *testing.T, v stores.Variant, seed uint64, txn bool) (procs.Launcher, func()) {
	t.Helper()
	st, err := v.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	loc, ok := sqlstores.Locate(st)
	if !ok {
		t.Fatalf("%s storage cannot be located", v.Name)
	}
	c := procs.Child{Exe: os.Args[0], Env: append(os.Environ(), "BADMAC_PROCS_CHILD=1"), Loc: loc, Seed: seed, Txn: txn}
	return c.Launch, func() { st.Close() }
}

func model(t *testing.T, txn bool) (procs.Launcher, func()) {
	t.Helper()
	st, err := stores.MustLookup("reference").Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return procs.Local(st, txn), func() { st.Close() }
}

var conversation = procs.Config{Seed: 7, Messages: 10, Reply: 0.7}

// KillPoints kills a real child process right after each store write of a
// conversation in turn (SIGKILL, restart on the same database, drive on)
// and judges every kill point against the in-process model of the same
// kill on a durable store.
func TestKillPointsSQLite(t *testing.T)   { testKillPoints(t, "sqlite", false) }
func TestKillPointsPostgres(t *testing.T) { testKillPoints(t, "postgres", false) }

// With whatsmeow's decrypted-event buffer (DoDecryptionTxn) the same kill
// points lose nothing: a kill inside the transaction rolls the session
// back, a kill after its commit is answered from the buffer on redelivery.
// The model stays the plain client on a durable store, so store-blamed
// still means "worse than the model".
func TestKillPointsTxnSQLite(t *testing.T)   { testKillPoints(t, "sqlite", true) }
func TestKillPointsTxnPostgres(t *testing.T) { testKillPoints(t, "postgres", true) }

func testKillPoints(t *testing.T, name string, txn bool) {
	ctx := context.Background()
	v := needStore(t, name)
	run := func(launch procs.Launcher, closeFn func(), k int) *procs.Run {
		t.Helper()
		defer closeFn()
		res, err := procs.Converse(ctx, conversation, launch, k)
		if err != nil {
			t.Fatalf("kill point %d: %v", k, err)
		}
		return res
	}
	l, c := fresh(t, v, 1, txn)
	base := run(l, c, 0)
	if base.Crashes != 0 {
		t.Fatalf("unkilled run died %d times", base.Crashes)
	}
	for _, m := range base.Messages {
		if m.Outcome() != harness.Delivered {
			t.Fatalf("unkilled run: %s %s\n%v", m.ID, m.Outcome(), base.History)
		}
	}
	if base.Writes < 20 {
		t.Fatalf("only %d write points; want at least 20", base.Writes)
	}
	t.Logf("%s: %d messages, %d store writes (kill points)", name, len(base.Messages), base.Writes)
	storeBlamed, clientPoints, lost := 0, 0, 0
	tally := map[harness.Outcome]int{}
	// Every write point in the long sweep; every third by default.
	for k := 1; k <= base.Writes; k += testenv.Size(3, 1) {
		l, c := fresh(t, v, uint64(k)+1, txn)
		real := run(l, c, k)
		ml, mc := model(t, false)
		mod := run(ml, mc, k)
		if real.Crashes != 1 {
			t.Fatalf("kill point %d: child died %d times, want 1", k, real.Crashes)
		}
		if mod.Crashes != 1 {
			t.Fatalf("kill point %d: model died %d times, want 1", k, mod.Crashes)
		}
		procs.JudgeKill(real, base, mod)
		t.Logf("kill after write %2d: %s", k, verdict(real))
		outs := byOutcome(real)
		for o, n := range outs {
			tally[o] += n
		}
		storeBlamed += len(real.StoreBlamed)
		if len(outs) > 1 || outs[harness.Delivered] != len(real.Messages) {
			lost++
		}
		if len(real.LostToCrash) > 0 {
			clientPoints++
		}
		if len(real.StoreBlamed) > 0 || real.Failed() {
			t.Errorf("kill point %d: %s\nreal history:\n%v", k, verdict(real), real.History)
		}
	}
	t.Logf("%s txn=%v: %d kill points; outcomes over all points %v; store-blamed messages %d; points where the model loses %d; points where the real run loses %d",
		name, txn, base.Writes, tally, storeBlamed, clientPoints, lost)
	if txn && lost > 0 {
		t.Errorf("with the decrypted-event buffer %d kill points still lose messages", lost)
	}
	if !txn && lost == 0 {
		t.Errorf("without the buffer no kill point loses a message; the failpoints are not reaching decrypt→ack")
	}
}

// byOutcome counts a run's messages by outcome.
func byOutcome(r *procs.Run) map[harness.Outcome]int {
	out := map[harness.Outcome]int{}
	for _, m := range r.Messages {
		out[m.Outcome()]++
	}
	return out
}

// verdict is a judged run in one line: its outcomes and harness.Judge's
// lists.
func verdict(r *procs.Run) string {
	return fmt.Sprintf("%v; store-blamed %v; lost to the kill %v; blamed %v; regenerated creds %t",
		byOutcome(r), r.StoreBlamed, r.LostToCrash, r.Blamed, r.RegeneratedCreds)
}
