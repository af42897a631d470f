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
