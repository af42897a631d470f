package procs_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/stores"
)

// RandomKill kills a real child process at a seeded random moment (30
// times in the long sweep, 10 by default): a request and a step inside it
// (the start of one of its store calls, or the moment before it answers),
// drawn uniformly over the steps
// of the unkilled run. The child stops there and the parent sends SIGKILL,
// so every kill lands where its seed says however loaded the machine is.
// The test restarts the child on the same database and judges what
// survived against the in-process model of the same kill point on a
// durable store.
func TestRandomKillSQLite(t *testing.T)   { testRandomKill(t, "sqlite", false) }
func TestRandomKillPostgres(t *testing.T) { testRandomKill(t, "postgres", false) }

// With the decrypted-event buffer nothing is lost at any moment.
func TestRandomKillTxnSQLite(t *testing.T) { testRandomKill(t, "sqlite", true) }

func testRandomKill(t *testing.T, name string, txn bool) {
	ctx := context.Background()
	v := needStore(t, name)
	kills := testenv.Size(10, 30)
	l, c := fresh(t, v, 1, txn)
	base, err := procs.Converse(ctx, conversation, l, 0)
	c()
	if err != nil {
		t.Fatal(err)
	}
	if base.Crashes != 0 || len(base.Calls) != base.Requests {
		t.Fatalf("unkilled run: %d kills, %d of %d requests answered", base.Crashes, len(base.Calls), base.Requests)
	}
	steps := 0
	for _, n := range base.Calls {
		steps += n + 1
	}
	storeBlamed, lostPoints, inWrites, beforeAnswer := 0, 0, 0, 0
	var tally harness.Counts
	for i := 1; i <= kills; i++ {
		k := procs.NewRandomKill(uint64(i), base)
		real := killAt(t, v, k, uint64(i)+100, txn)
		if i == 1 {
			// Same seed, same kill, on a fresh database: the same history.
			again := killAt(t, v, k, uint64(i)+100, txn)
			if !slices.Equal(again.History, real.History) || again.KillPoints[0] != real.KillPoints[0] {
				t.Errorf("%v twice: %v, then %v; histories differ:\n%v\n%v", k, real.KillPoints[0], again.KillPoints[0], real.History, again.History)
			}
		}
		tally.Add(real.Counts())
		kp := real.KillPoints[0]
		if kp.Request != k.Request || kp.Step != k.Step || kp.Writes < 0 {
			t.Fatalf("%v landed elsewhere: %v", k, kp)
		}
		if kp.Step > base.Calls[k.Request-1] {
			beforeAnswer++
		} else if kp.InRequest() > 0 {
			inWrites++
		}
		st, err := stores.MustLookup("reference").Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mod, err := procs.Converse(ctx, conversation, kp.Model(st), 0)
		st.Close()
		if err != nil {
			t.Fatalf("%v: model: %v", k, err)
		}
		if mod.Crashes != 1 {
			t.Fatalf("%v: model of %v died %d times", k, kp, mod.Crashes)
		}
		procs.JudgeKill(real, base, mod)
		t.Logf("%v: %v: %s", k, kp, verdict(real))
		storeBlamed += len(real.StoreBlamed)
		if len(real.StoreBlamed) > 0 || real.Failed() {
			t.Errorf("%v: %s\nreal history:\n%v", k, verdict(real), real.History)
		}
		if byOutcome(real)[harness.Delivered] != len(real.Messages) {
			lostPoints++
		}
		if len(real.Messages) != len(base.Messages) {
			t.Errorf("%v: %d messages judged, base has %d", k, len(real.Messages), len(base.Messages))
		}
	}
	t.Logf("%s txn=%v: %d random kills over %d steps of %d requests (%d after a write of their request, %d before the answer); store-blamed messages %d; kills after which not every message was delivered cleanly %d; %+v",
		name, txn, kills, steps, base.Requests, inWrites, beforeAnswer, storeBlamed, lostPoints, tally)
	if inWrites == 0 {
		t.Errorf("no kill landed between a request's writes; the steps are not reaching decrypt→store")
	}
	if txn && tally.Lost > 0 {
		t.Errorf("with the decrypted-event buffer %d messages were lost", tally.Lost)
	}
}

// killAt runs the conversation against real child processes on a fresh
// database and kills the first at k; it must die exactly once.
func killAt(t *testing.T, v stores.Variant, k procs.RandomKill, seed uint64, txn bool) *procs.Run {
	t.Helper()
	l, c := fresh(t, v, seed, txn)
	defer c()
	real, err := procs.ConverseRandomKill(context.Background(), conversation, l, k)
	if err != nil {
		t.Fatalf("%v: %v", k, err)
	}
	if real.Crashes != 1 {
		t.Fatalf("%v: the child died %d times, want 1\n%v", k, real.Crashes, real.History)
	}
	return real
}

// The same random kills in process catch a store that loses writes at a
// crash (debounced: writes wait in a buffer that the kill drops) and pass
// the reference store: the judge can fail.
func TestRandomKillCatchesLostWrites(t *testing.T) {
	ctx := context.Background()
	run := func(name string, k *procs.RandomKill) *procs.Run {
		t.Helper()
		st, err := stores.MustLookup(name).Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var res *procs.Run
		if k == nil {
			res, err = procs.Converse(ctx, conversation, crashOnRestart(st), 0)
		} else {
			res, err = procs.ConverseRandomKill(ctx, conversation, crashOnRestart(st), *k)
		}
		if err != nil {
			t.Fatalf("%s %v: %v", name, k, err)
		}
		return res
	}
	for _, tc := range []struct {
		store   string
		blamed0 bool
	}{{"reference", true}, {"debounced", false}} {
		base := run(tc.store, nil)
		blamed := 0
		var first string
		for i := 1; i <= 30; i++ {
			k := procs.NewRandomKill(uint64(i), base)
			real := run(tc.store, &k)
			if real.Crashes != 1 || real.KillPoints[0].Step != k.Step {
				t.Fatalf("%s %v: %d kills at %v", tc.store, k, real.Crashes, real.KillPoints)
			}
			st, _ := stores.MustLookup("reference").Open(ctx)
			mod, err := procs.Converse(ctx, conversation, real.KillPoints[0].Model(st), 0)
			st.Close()
			if err != nil {
				t.Fatal(err)
			}
			procs.JudgeKill(real, base, mod)
			if len(real.StoreBlamed) > 0 && first == "" {
				first = fmt.Sprintf("%v: %s", k, verdict(real))
			}
			blamed += len(real.StoreBlamed)
		}
		t.Logf("%s: %d store-blamed messages over 30 random kills; first: %s", tc.store, blamed, first)
		if tc.blamed0 != (blamed == 0) {
			t.Errorf("%s: %d store-blamed messages, want zero: %v", tc.store, blamed, tc.blamed0)
		}
	}
}

// crashOnRestart runs the device in process over st and crashes st (drops
// its volatile state) before every restart, as a killed process loses what
// it had not made durable; the credentials and prekeys of init are flushed,
// as pairing ends with a flush.
func crashOnRestart(st stores.Storage) procs.Launcher {
	local := procs.Local(st, false)
	return func(ctx context.Context, inc, dieAfter int) (procs.Proc, error) {
		if c, ok := st.(stores.Crasher); ok && inc > 0 {
			c.Crash("")
		}
		p, err := local(ctx, inc, dieAfter)
		if err != nil {
			return nil, err
		}
		return flushInit{p, st}, nil
	}
}

type flushInit struct {
	procs.Proc
	st stores.Storage
}

func (f flushInit) Do(ctx context.Context, req devproto.Request) (devproto.Reply, error) {
	resp, err := f.Proc.Do(ctx, req)
	if fl, ok := f.st.(stores.Flusher); ok && err == nil && req.Op == devproto.OpProvision {
		err = fl.Flush(ctx)
	}
	return resp, err
}

func (f flushInit) StoppedAt() (step, writes int, ok bool) {
	return f.Proc.(interface{ StoppedAt() (int, int, bool) }).StoppedAt()
}
