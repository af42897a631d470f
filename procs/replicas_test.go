package procs_test

import (
	"context"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/procs"
)

var replicaConversation = procs.Config{Messages: 12, Reply: 0.7}

// Two real device processes on one database and one device JID, messages
// and replies handed to either with requests in flight on both at once.
// Real processes do not replay an interleaving, so the test asserts the
// accounting (every message judged exactly once, the one-process baseline
// clean, no wrong plaintext, no credential change, the processes really
// overlapped) and logs the failure rates it measured.
func TestReplicasPostgres(t *testing.T) { testReplicas(t, "postgres") }
func TestReplicasSQLite(t *testing.T)   { testReplicas(t, "sqlite") }

func testReplicas(t *testing.T, name string) {
	ctx := context.Background()
	v := needStore(t, name)
	const seeds = 10
	var two, one harness.Counts
	overlapped, requests := 0, 0
	for s := uint64(1); s <= seeds; s++ {
		cfg := replicaConversation
		cfg.Seed = s
		for _, n := range []int{1, 2} {
			l, c := fresh(t, v, s, false)
			res, err := procs.ConverseReplicas(ctx, cfg, n, l)
			c()
			if err != nil {
				t.Fatalf("seed %d, %d replicas: %v", s, n, err)
			}
			seen := map[string]bool{}
			ins := 0
			for _, m := range res.Messages {
				if seen[m.ID] {
					t.Fatalf("seed %d: %s judged twice", s, m.ID)
				}
				seen[m.ID] = true
				if m.Dir == harness.In {
					ins++
				}
				if o := m.Outcome(); o == harness.Wrong {
					t.Errorf("seed %d, %d replicas: %s decrypted to a wrong plaintext", s, n, m.ID)
				} else if n == 1 && o != harness.Delivered {
					t.Errorf("seed %d baseline: %s %s\n%v", s, m.ID, o, res.History)
				}
			}
			if ins != cfg.Messages {
				t.Errorf("seed %d: %d inbound messages judged, want %d", s, ins, cfg.Messages)
			}
			if res.RegeneratedCreds {
				t.Errorf("seed %d: a replica loaded other credentials", s)
			}
			procs.JudgeAlone(res)
			if n == 1 {
				one.Add(res.Counts())
				if res.Failed() {
					t.Errorf("seed %d, one process: blamed %v", s, res.Blamed)
				}
			} else {
				two.Add(res.Counts())
				overlapped, requests = overlapped+res.Overlapped, requests+res.Requests
			}
		}
	}
	t.Logf("%s one process: %+v", name, one)
	t.Logf("%s two processes: %+v; %d of %d requests sent while the other process had one in flight", name, two, overlapped, requests)
	if overlapped == 0 {
		t.Errorf("no request was ever in flight on both processes at once")
	}
}
