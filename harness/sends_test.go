package harness_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
	_ "github.com/badmac/badmac/stores/sqlstores" // the sqlite variant
)

// Under whatsmeow (and txn, which only adds the decryption transaction) a
// reply runs while a receive is in the middle of its decrypt; the send
// lock serialises sends only. Under locked the reply waits for the receive.
func TestSendsRunAlongsideReceives(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		d     harness.Discipline
		store string
		free  bool
	}{{harness.Whatsmeow, "reference", true}, {harness.Txn, "sqlite", true}, {harness.Locked, "reference", false}} {
		s, err := harness.Parse(strings.NewReader(`badmac schedule v1
seed 1
scenario reply
discipline ` + string(c.d) + `
store ` + c.store + `
contacts alice:1
ops
send alice.0 m1
deliver m1
run m1
send alice.0 m2
deliver m2
step m2
step m2
reply alice.0 r1
step r1
step r1
`))
		if err != nil {
			t.Fatal(err)
		}
		v, err := stores.Lookup(c.store)
		if err != nil {
			t.Fatal(err)
		}
		r, err := harness.Start(ctx, s, v, harness.Controlled)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range s.Ops {
			if err := r.Apply(op); err != nil {
				t.Fatal(err)
			}
		}
		_, res, err := r.Stop()
		if err != nil {
			t.Fatal(err)
		}
		send := slices.Index(res.History, "r1 GetManySessions alice:0")
		recv := slices.Index(res.History, "m2: ok")
		if send < 0 || recv < 0 {
			t.Fatalf("%s: no reply load or no m2:\n%s", c.d, res.HistoryText())
		}
		if during := send < recv; during != c.free {
			t.Errorf("%s: reply loaded its session during a receive: %v, want %v\n%s", c.d, during, c.free, res.HistoryText())
		}
	}
}
