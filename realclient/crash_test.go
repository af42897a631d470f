package realclient

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/stores"
)

// A crash kills the controlled client where the schedule says (every
// parked goroutine dies before its store call) and the device restarts on
// what the store made durable. On the reference store and on whatsmeow's
// sqlstore nothing is pair-blamed: what a crash loses there is lost to the
// crash (the client's decrypt→store→ack is not atomic: a receive killed
// after storing its decrypt, before its ack, meets an old counter in the
// redelivered copy; ctl.storedUnhandled, docs/verdicts.md); the restart
// invariants hold. A store that
// loses buffered writes in a crash (debounced) is store-blamed. A crash
// counterexample replays byte for byte.
func TestCrashRows(t *testing.T) {
	dev := &Device{Reply: Inline}
	crashes := 0
	for _, st := range []string{"reference", "sqlite"} {
		pr := runDeviceIn(t, harness.Controlled, dev, "crash", stores.MustLookup(st), 4)
		c := pr.Counts
		crashes += c.Crashes
		if pr.Failed != 0 || c.RegeneratedCreds != 0 || c.LostPreKeys != 0 {
			t.Errorf("client-inline/%s/crash: %d of %d failed, regenerated creds %d, lost prekeys %d: %s", st, pr.Failed, pr.Schedules,
				c.RegeneratedCreds, c.LostPreKeys, pr.FirstResult.Summary())
		}
	}
	if crashes == 0 {
		t.Fatalf("no crash landed on a running client in 8 schedules")
	}
	pr := runDeviceIn(t, harness.Controlled, dev, "crash", stores.MustLookup("debounced"), 6)
	if pr.First == nil || pr.Counts.StoreBlamed == 0 {
		t.Fatalf("client-inline/debounced/crash: %d failed, %d store-blamed; want the lost buffer blamed on the store", pr.Failed, pr.Counts.StoreBlamed)
	}
	res := replayExactly(t, dev, pr.First, 3)
	if res.Crashes == 0 || !res.Failed() {
		t.Errorf("the shrunk crash counterexample: %d crashes, failed %t", res.Crashes, res.Failed())
	}
}

// forgetsPreKeys is the reference store whose every instance (a process)
// starts with no prekeys: a restart finds the uploaded ones gone.
var forgetsPreKeys = stores.Variant{Name: "forgets-prekeys", Open: func(ctx context.Context) (stores.Storage, error) {
	st, err := stores.MustLookup("reference").Open(ctx)
	return prekeyLoss{Storage: st}, err
}}

type prekeyLoss struct{ stores.Storage }

func (p prekeyLoss) Instance(ctx context.Context) (stores.Set, error) {
	set, err := p.Storage.Instance(ctx)
	if err != nil {
		return set, err
	}
	fresh, err := stores.MustLookup("reference").Open(ctx)
	if err != nil {
		return set, err
	}
	own, err := fresh.Instance(ctx)
	set.PreKeys = own.PreKeys
	return set, err
}

// The restart invariants are computed on the real client: a store that
// loses the uploaded one-time prekeys across a restart fails the row
// (lost pk), and whatsmeow's sqlstore keeps them.
func TestRestartLostPreKeys(t *testing.T) {
	v := forgetsPreKeys
	pr := runDeviceIn(t, harness.Controlled, &Device{Reply: Inline, Variant: &v}, "restart", v, 2)
	if pr.Counts.LostPreKeys == 0 || pr.Failed == 0 {
		t.Errorf("forgets-prekeys/restart: %d lost prekeys, %d failed schedules; want both", pr.Counts.LostPreKeys, pr.Failed)
	}
	sq := runDeviceIn(t, harness.Controlled, &Device{Reply: Inline}, "restart", stores.MustLookup("sqlite"), 2)
	if sq.Counts.LostPreKeys != 0 || sq.Failed != 0 {
		t.Errorf("sqlite/restart: %d lost prekeys, %d failed: %s", sq.Counts.LostPreKeys, sq.Failed, sq.FirstResult.Summary())
	}
}

// whatsmeow answers a contact's retry receipts each in a goroutine of its
// own with no lock (retry.go handleRetryReceipt, receipt.go handleReceipt
// at the pinned commit): after a reinstall, two resends to one contact
// interleave and one is lost, with inline replies too. The serial protocol
// delivers it (pair-blamed), the reference store loses it as well (not
// the store's), and it replays byte for byte.
func TestConcurrentResendsAfterReinstall(t *testing.T) {
	s := readSchedule(t, "testdata/reinstall-concurrent-resends-sqlite.txt")
	res := replayExactly(t, &Device{Reply: Inline}, s, 5)
	if strings.Join(res.Blamed, " ") != "r5" || len(res.StoreBlamed) != 0 || !res.StoreJudged {
		t.Errorf("blamed %v, store-blamed %v (judged %t); want r5 pair-blamed, nothing store-blamed: %s", res.Blamed, res.StoreBlamed, res.StoreJudged, res.Summary())
	}
	if !strings.Contains(res.HistoryText(), "notify identity change of alice.0") {
		t.Errorf("no identity-change notification in the history")
	}
}

// A crash's outcome does not depend on what runs beside it: a killed
// client does nothing more, as a SIGKILLed process, whatever the clock.
// Two schedules, each a way a killed client in this process used to go on
// (the lid-crash rows' blame came and went with them, docs/lid.md §6.5):
//
//   - crash-killed-send: the crash cuts the async reply r1 in its send's
//     encryption, and the restarted client's reply must be "reply:r1".
//     The killed reply could reach whatsmeow's retryFrame, or not, by a
//     race with the client's socket reader noticing the drop, and once
//     there waited 5 s of wall clock for a reconnect (request.go,
//     client.go WaitForConnection), holding its name: the new goroutine
//     was "reply:r1#2" on some runs and the schedule's steps went nowhere;
//   - crash-killed-queue: the crash comes with a devices notification
//     queued behind the handler queue's parked goroutine. The killed
//     queue could still take it (its select between the queue and the
//     cancelled context picks at random) and store alice's LID through
//     the unprobed LID store: the restarted client then decrypted m1's
//     redelivery as a LID contact on some runs.
//
// Copies run at once, on sqlite and on the reference store (the store-blame
// run), under three GOMAXPROCS settings, and each history must be the one
// the copy run alone printed, byte for byte, and show what a SIGKILL
// leaves.
func TestCrashReplaysUnderLoad(t *testing.T) {
	for _, c := range []struct{ file, not string }{
		{"crash-killed-send-sqlite.txt", "#2"},
		{"crash-killed-queue-sqlite.txt", "MigratePNToLID"},
	} {
		t.Run(c.file, func(t *testing.T) { crashReplaysUnderLoad(t, "testdata/"+c.file, c.not) })
	}
}

func crashReplaysUnderLoad(t *testing.T, path, not string) {
	s := readSchedule(t, path)
	ctx := context.Background()
	cand := &Device{Reply: Async}
	devs := []*Device{cand, cand.on(stores.MustLookup("reference"))}
	alone := make([]string, len(devs))
	for i, d := range devs {
		_, res, err := d.Exec(ctx, s, harness.Controlled, harness.Ops(s.Ops))
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = res.HistoryText()
		if !strings.Contains(alone[i], "op restart") || strings.Contains(alone[i], not) {
			t.Errorf("%s on %s, alone: the history has %q, which a killed client leaves out:\n%s", d.Name(), d.storeName(s), not, alone[i])
		}
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	const copies = 3
	for _, procs := range []int{4, 2, 1} {
		runtime.GOMAXPROCS(procs)
		got := make([][]string, len(devs))
		errs := make(chan error, len(devs)*copies)
		var wg sync.WaitGroup
		for i, d := range devs {
			got[i] = make([]string, copies)
			for k := range copies {
				wg.Go(func() {
					_, res, err := d.Exec(ctx, s, harness.Controlled, harness.Ops(s.Ops))
					if err != nil {
						errs <- err
						return
					}
					got[i][k] = res.HistoryText()
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for i, d := range devs {
			for k, h := range got[i] {
				if h != alone[i] {
					t.Errorf("GOMAXPROCS %d, %s on %s, copy %d of %d at once: the history differs from the run alone at %s", procs, d.Name(), d.storeName(s), k+1,
						len(devs)*copies, testenv.FirstDiff(strings.Split(alone[i], "\n"), strings.Split(h, "\n")))
				}
			}
		}
	}
}
