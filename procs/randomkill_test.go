package procs_test

import (
	"context"
	"testing"
	"time"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/stores"
)

// RandomKill kills a real child process at a random moment (SIGKILL from
// the parent a seeded delay after a seeded request was sent, whatever the
// child is doing then) 30 times (at least 20 must land mid-conversation), restarts it on the same database, and
// judges what survived against the in-process model of the kill point the
// child reported (and of the one after it: a write can commit unreported).
func TestRandomKillSQLite(t *testing.T)   { testRandomKill(t, "sqlite", false) }
func TestRandomKillPostgres(t *testing.T) { testRandomKill(t, "postgres", false) }

// With the decrypted-event buffer nothing is lost at any moment.
func TestRandomKillTxnSQLite(t *testing.T) { testRandomKill(t, "sqlite", true) }

func testRandomKill(t *testing.T, name string, txn bool) {
	ctx := context.Background()
	v := needStore(t, name)
	const kills = 30
	l, c := fresh(t, v, 1, txn)
	t0 := time.Now()
	base, err := procs.Converse(ctx, conversation, l, 0)
	c()
	if err != nil {
		t.Fatal(err)
	}
	mean := time.Since(t0) / time.Duration(base.Requests+1)
	landed, storeBlamed, lostPoints := 0, 0, 0
	var tally procs.Tally
	for i := 1; i <= kills; i++ {
		k := procs.NewRandomKill(uint64(i), base.Requests, mean)
		l, c := fresh(t, v, uint64(i)+100, txn)
		real, err := procs.ConverseRandomKill(ctx, conversation, l, k)
		c()
		if err != nil {
			t.Fatalf("%v: %v", k, err)
		}
		tally.Add(real)
		if real.Kills == 0 {
			t.Logf("%v: landed after the last request", k)
			continue
		}
		landed++
		kp := real.KillPoints[0]
		if kp.Writes < 0 {
			t.Fatalf("%v: the child reported no writes", k)
		}
		var models []*procs.Result
		for _, w := range []int{kp.InRequest(), kp.InRequest() + 1} {
			st, err := stores.MustLookup("reference").Open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			mod, err := procs.Converse(ctx, conversation, procs.LocalAt(st, false, kp.Request, w), 0)
			st.Close()
			if err != nil {
				t.Fatalf("%v: model: %v", k, err)
			}
			if mod.Kills != 1 {
				t.Fatalf("%v: model of %v died %d times", k, kp, mod.Kills)
			}
			models = append(models, mod)
		}
		verdict := procs.JudgeAny(real, base, models...)
		t.Logf("%v: %v: %s", k, kp, verdict)
		storeBlamed += len(verdict.StoreBlamed)
		if len(verdict.StoreBlamed) > 0 || verdict.Regenerated {
			t.Errorf("%v: %s\nreal history:\n%v", k, verdict, real.History)
		}
		if verdict.Outcomes[harness.Delivered] != len(real.Messages) {
			lostPoints++
		}
		if len(real.Messages) != len(base.Messages) {
			t.Errorf("%v: %d messages judged, base has %d", k, len(real.Messages), len(base.Messages))
		}
	}
	t.Logf("%s txn=%v: %d of %d random kills landed; store-blamed messages %d; kills after which not every message was delivered cleanly %d; %s",
		name, txn, landed, kills, storeBlamed, lostPoints, tally)
	if landed < 20 {
		t.Errorf("only %d of %d random kills landed mid-conversation; want at least 20", landed, kills)
	}
	if txn && tally.Outcomes[harness.Lost] > 0 {
		t.Errorf("with the decrypted-event buffer %d messages were lost", tally.Outcomes[harness.Lost])
	}
}
