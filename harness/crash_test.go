package harness

import (
	"context"
	"strings"
	"testing"
)

const crashSchedule = `badmac schedule v1
seed 7
scenario crash
discipline locked
store STORE
contacts alice:1
ops
send alice.0 m1
deliver m1
run m1
reply alice.0 r1
run r1
reply alice.0 r1b
run r1b
read r1b
read r1
send alice.0 m2
deliver m2
run m2
reply alice.0 r2
run r2
read r2
crash
restart
send alice.0 m3
deliver m3
run m3
reply alice.0 r3
run r3
read r3
`

func TestCrashRestartOps(t *testing.T) {
	for _, st := range []string{"reference", "debounced", "files", "files-atomic", "mutexed"} {
		s, err := Parse(strings.NewReader(strings.Replace(crashSchedule, "STORE", st, 1)))
		if err != nil {
			t.Fatal(err)
		}
		res, err := Replay(context.Background(), s, Controlled)
		if err != nil {
			t.Fatal(err)
		}
		c := res.Counts()
		t.Logf("%s: %s %+v", st, res.Summary(), c)
		if c.Crashes != 1 {
			t.Errorf("%s: crashes %d", st, c.Crashes)
		}
		switch st {
		case "debounced":
			if !res.Failed() {
				t.Errorf("debounced: a crash after a reply lost the ratchet step, want a failure")
			}
		case "files":
			if !res.RegeneratedCreds {
				t.Errorf("files: creds.json was never written back before the crash, want regenerated credentials")
			}
		case "reference", "files-atomic", "mutexed":
			if res.Failed() {
				t.Errorf("%s: durable store blamed: %s\n%s", st, res.Summary(), res.HistoryText())
			}
		}
	}
}

// TestRetryCycle is the seed's cycle on a debounced store: OK, a crash
// loses the ratchet step a reply went out on, the peer's next message is
// Bad MAC. whatsmeow's first retry receipt has no keys, so the peer
// re-encrypts on the broken session: Bad MAC again; the second carries a
// bundle, the peer rebuilds and the resent pkmsg is OK (retry.go
// sendRetryReceipt, handleRetryReceipt). Then the seed's "→ Bad MAC"
// again: the bot's reply r3b went out on the stale session before the
// rebuild arrived; the peer decrypts it with its archived state, which
// libsignal promotes back to current, so the peer's m4 is on the broken
// session again: Bad MAC twice, rebuild, OK.
func TestRetryCycle(t *testing.T) {
	text := strings.Replace(crashSchedule, "STORE", "debounced", 1) + `deliver m3.2
run m3.2
reply alice.0 r3b
run r3b
read r3b
deliver m3.3
run m3.3
send alice.0 m4
deliver m4
run m4
deliver m4.2
run m4.2
deliver m4.3
run m4.3
reply alice.0 r4
run r4
read r4
`
	s, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(context.Background(), s, Controlled)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Counts()
	t.Logf("counts: %+v\n%s", c, res.HistoryText())
	var cycle []string
	for _, m := range res.Messages {
		if m.Dir != In {
			continue
		}
		for _, a := range m.Attempts {
			st := "OK"
			if !a.OK {
				st = string(a.Class)
			}
			cycle = append(cycle, a.Delivery+":"+st)
		}
	}
	got := strings.Join(cycle, " ")
	t.Logf("cycle: %s", got)
	if want := "m1:OK m2:OK m3:BadMAC m3.2:BadMAC m3.3:OK m4:BadMAC m4.2:BadMAC m4.3:OK"; got != want {
		t.Errorf("cycle %q, want %q", got, want)
	}
	// m3 and m4 each fail twice with Bad MAC and are recovered by the
	// second retry; nothing is lost.
	if c.Recovered != 2 || c.Failures["BadMAC"] != 4 || c.Lost != 0 || c.Delivered != c.Messages-2 || c.Blamed != 2 {
		t.Errorf("counts %+v: want two messages recovered after two Bad MACs each, none lost", c)
	}
}
