package realclient

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/store"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// runDevice runs n schedules of scenario name on dev over store through
// scenarios.RunPairs, as badmac run does for a device row, and logs the
// row with its interval.
func runDevice(t *testing.T, dev harness.Device, name string, v stores.Variant, n int) *scenarios.PairResult {
	return runDeviceIn(t, harness.Free, dev, name, v, n)
}

// runDeviceIn is runDevice in mode.
func runDeviceIn(t *testing.T, mode harness.Mode, dev harness.Device, name string, v stores.Variant, n int) *scenarios.PairResult {
	t.Helper()
	sc, err := scenarios.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	prs, err := scenarios.RunPairs(ctx, []scenarios.Pair{{Scenario: sc, Discipline: harness.Whatsmeow, Variant: v, Device: dev}},
		scenarios.Config{Mode: mode, Policy: scenarios.Random, Seed: 1, Schedules: n, Workers: 2, ShrinkBudget: 20})
	if err != nil {
		t.Fatal(err)
	}
	pr := prs[0]
	c := pr.Counts
	lo, hi := harness.Wilson(c.Blamed, c.Messages)
	t.Logf("%s/%s/%s: %d schedules, %d failed, %d msgs, pair blamed %d [%.1f%%, %.1f%%] (95%% CI), failed attempts %v",
		pr.Device, pr.Store, pr.Scenario, pr.Schedules, pr.Failed, c.Messages, c.Blamed, 100*lo, 100*hi, c.Failures)
	if pr.First != nil {
		t.Logf("first failing schedule (%d): %s", pr.FirstIndex, pr.FirstResult.Summary())
	}
	return pr
}

// The harness's reply and burst scenarios, unchanged, run on the real
// client and are judged against the serial protocol. Inline replies never
// overlap a receive (whatsmeow's handler queue runs one at a time) and a
// burst has no replies: zero pair failures over every schedule, on the
// reference store and on whatsmeow's sqlstore. Async replies race the
// receive that follows them in the handler queue (SendMessage takes only
// messageSendLock, decryptDM no lock: docs/design.md §3): their rate is
// logged, a measurement, not asserted
// (BADMAC_CLIENT_SCHEDULES=N for a longer one).
func TestDeviceScenariosOnRealClient(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real client over many schedules")
	}
	n := 12
	if v := os.Getenv("BADMAC_CLIENT_SCHEDULES"); v != "" { // a longer measurement
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("BADMAC_CLIENT_SCHEDULES=%q: want a number of schedules", v)
		}
	}
	for _, store := range []string{"reference", "sqlite"} {
		v, err := stores.Lookup(store)
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range []string{"reply", "burst"} {
			for _, dev := range []*Device{{Reply: Inline}, {Reply: Async}} {
				pr := runDevice(t, dev, sc, v, n)
				if pr.Schedules != n || pr.Counts.Messages < n*8 {
					t.Fatalf("%s/%s/%s: %d schedules, %d messages; want %d schedules of 8 messages or more",
						dev.Name(), store, sc, pr.Schedules, pr.Counts.Messages, n)
				}
				if dev.Reply == Inline || sc == "burst" {
					if pr.Failed != 0 {
						t.Errorf("%s/%s/%s: %d of %d schedules failed, want none: %s\n%s", dev.Name(), store, sc,
							pr.Failed, n, pr.FirstResult.Summary(), pr.First)
					}
				}
			}
		}
	}
}

// dropBatch is the reference store with PutManySessions doing nothing:
// the session cache of SendMessage writes back through it, so the bot's
// replies reuse their message keys. (PutSession, on the receive path, works.)
type dropBatch struct{ stores.All }

func (dropBatch) PutManySessions(context.Context, map[string][]byte) error { return nil }

type dropBatchStorage struct{ stores.Storage }

func (s dropBatchStorage) Instance(ctx context.Context) (stores.Set, error) {
	set, err := s.Storage.Instance(ctx)
	if err != nil {
		return set, err
	}
	return stores.SetOf(dropBatch{set.Sessions.(stores.All)}), nil
}

var dropBatchVariant = stores.Variant{Name: "drop-put-many", Open: func(ctx context.Context) (stores.Storage, error) {
	st, err := stores.MustLookup("reference").Open(ctx)
	return dropBatchStorage{st}, err
}}

var _ store.SessionStore = dropBatch{}

// A store that drops PutManySessions is caught on the real client in
// controlled mode with inline replies, and blamed on the store: the same
// client under the same schedule on the reference store delivers what it
// loses. Its counterexample, shrunk, parsed back from text and replayed,
// fails again with the same history, byte for byte. whatsmeow's own
// sqlstore under the same schedules is blamed for nothing.
func TestDeviceCatchesDroppedBatchWrites(t *testing.T) {
	dev := &Device{Reply: Inline, Variant: &dropBatchVariant}
	pr := runDeviceIn(t, harness.Controlled, dev, "reply", dropBatchVariant, 4)
	if pr.First == nil {
		t.Fatalf("a store that drops PutManySessions passed %d schedules of replies", pr.Schedules)
	}
	if pr.First.Device != dev.Name() || pr.First.Store != dropBatchVariant.Name {
		t.Fatalf("counterexample header: device %q store %q", pr.First.Device, pr.First.Store)
	}
	if pr.Counts.StoreBlamed == 0 {
		t.Errorf("drop-put-many: %d pair-blamed messages, none store-blamed", pr.Counts.Blamed)
	}
	text := pr.First.String()
	parsed, err := harness.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("counterexample does not parse back: %v\n%s", err, text)
	}
	res := replayExactly(t, dev, parsed, 3)
	if !res.Failed() || len(res.StoreBlamed) == 0 {
		t.Errorf("replay: failed %t, store-blamed %v: %s", res.Failed(), res.StoreBlamed, res.Summary())
	}
	t.Logf("counterexample (%d ops), failing as %q, store-blamed %v:\n%s", len(pr.First.Ops), worst(res), res.StoreBlamed, text)
	sq := runDeviceIn(t, harness.Controlled, &Device{Reply: Async}, "reply", stores.MustLookup("sqlite"), 4)
	if sq.Counts.StoreBlamed != 0 || sq.Counts.StoreNA != 0 {
		t.Errorf("client-async/sqlite/reply: %d store-blamed, store not judged in %d schedules; want 0 and 0", sq.Counts.StoreBlamed, sq.Counts.StoreNA)
	}
}

// worst is the pair-blamed messages' worst outcome and failure class, as
// the shrinker keeps it.
func worst(res *harness.Result) string {
	byID := map[string]*harness.Message{}
	for _, m := range res.Messages {
		byID[m.ID] = m
	}
	rank := map[harness.Outcome]int{harness.Recovered: 1, harness.Duplicate: 2, harness.Lost: 3, harness.Wrong: 4}
	best, cls := harness.Outcome(""), ""
	for _, id := range res.Blamed {
		m := byID[id]
		if o := m.Outcome(); rank[o] > rank[best] {
			best = o
		}
	}
	for _, id := range res.Blamed {
		for _, a := range byID[id].Failures() {
			if !strings.Contains(cls, string(a.Class)) {
				cls += string(a.Class) + " "
			}
		}
	}
	return fmt.Sprintf("%s %s", best, strings.TrimSpace(cls))
}

// Check refuses, up front and in one line naming the device, what the
// real client cannot run.
func TestDeviceCheckRefuses(t *testing.T) {
	setup := func(name, store string) *harness.Schedule {
		sc, err := scenarios.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		return sc.Setup(1, harness.Whatsmeow, store)
	}
	inline, buffered := &Device{Reply: Inline}, &Device{Reply: Async, Buffer: true}
	withOp := setup("reply", "reference")
	withOp.Ops = []harness.Op{harness.SendOp{Peer: "alice.0", Msg: "m1"}, harness.CrashOp{}}
	withSnapshot := withOp.Clone()
	withSnapshot.Ops = append(withSnapshot.Ops, harness.SnapshotOp{})
	cases := []struct {
		dev  *Device
		s    *harness.Schedule
		mode harness.Mode
		want string
	}{
		{buffered, setup("reply", "sqlite"), harness.Controlled, "device client-async+buffer: mode controlled: the decrypted-event buffer runs free only"},
		{inline, setup("multi", "reference"), harness.Free, "contact alice:2: one device per contact"},
		{inline, setup("replica", "reference"), harness.Free, "instances 2"},
		{inline, setup("crash", "reference"), harness.Free, "mode free: scenario crash crashes the client, which is judged in controlled mode only"},
		{inline, setup("rollback", "sqlite"), harness.Free, "scenario rollback has op rollback"},
		{inline, withOp, harness.Free, "mode free: a crash is judged in controlled mode only"},
		{inline, withSnapshot, harness.Controlled, "device client-inline does not implement op snapshot (no snapshot or rollback of the database)"},
		{inline, setup("reply", "nosuch"), harness.Free, `unknown store "nosuch"`},
		{buffered, setup("reply", "reference"), harness.Free, "device client-async+buffer: store reference: the decrypted-event buffer needs sqlstore"},
	}
	for _, c := range cases {
		err := c.dev.Check(c.s, c.mode)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s on %s/%s (%s): err = %v, want one line containing %q", c.dev.Name(), c.s.Scenario, c.s.Store, c.mode, err, c.want)
		}
	}
	for _, ok := range []struct {
		dev   *Device
		name  string
		store string
	}{{inline, "reply", "reference"}, {inline, "restart", "sqlite"}, {inline, "reorder", "mutexed"}, {buffered, "burst", "sqlite"}, {inline, "group", "sqlite"}} {
		if err := ok.dev.Check(setup(ok.name, ok.store), harness.Free); err != nil {
			t.Errorf("%s on %s/%s: %v", ok.dev.Name(), ok.name, ok.store, err)
		}
	}
	if err := inline.Check(withOp, harness.Controlled); err != nil {
		t.Errorf("%s on send, crash (controlled): %v", inline.Name(), err)
	}
	if _, _, err := harness.RunOn(context.Background(), inline, setup("multi", "reference"), harness.Free, harness.Ops(nil)); err == nil {
		t.Errorf("RunOn ran a schedule with two devices per contact on the real client")
	}
}

func TestParseName(t *testing.T) {
	for _, n := range Names {
		d, ok := ParseName(n)
		if !ok || d.Name() != n {
			t.Errorf("ParseName(%q) = %v, %t", n, d, ok)
		}
	}
	for _, n := range []string{"client", "client-", "client-sync", "model", "client-inline+buf"} {
		if _, ok := ParseName(n); ok {
			t.Errorf("ParseName(%q) accepted", n)
		}
	}
}

// The restart scenario's stop and restart ops close the client and open a
// new one on the same database (and a new instance of the store): with
// inline replies nothing is lost across them, on whatsmeow's sqlstore and
// on an in-memory variant.
func TestDeviceRestartContinues(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real client over many schedules")
	}
	for _, store := range []string{"sqlite", "mutexed"} {
		v, err := stores.Lookup(store)
		if err != nil {
			t.Fatal(err)
		}
		pr := runDevice(t, &Device{Reply: Inline}, "restart", v, 6)
		if pr.Failed != 0 {
			t.Errorf("client-inline/%s/restart: %d of %d schedules failed: %s\n%s", store, pr.Failed, pr.Schedules,
				pr.FirstResult.Summary(), pr.First)
		}
	}
}

// The device on whatsmeow's sqlstore over PostgreSQL ($BADMAC_POSTGRES_DSN),
// plain and with the decrypted-event buffer: inline replies lose nothing;
// async replies' rate is logged.
func TestDevicePostgres(t *testing.T) {
	testenv.PostgresDSN(t)
	v, err := stores.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Device{{Reply: Inline}, {Reply: Inline, Buffer: true}, {Reply: Async}, {Reply: Async, Buffer: true}} {
		pr := runDevice(t, d, "reply", v, 4)
		if d.Reply == Async {
			continue // whatsmeow's send/receive race: a rate, logged
		}
		if pr.Failed != 0 {
			t.Errorf("%s/postgres/reply: %d of %d schedules failed: %s\n%s", d.Name(), pr.Failed, pr.Schedules,
				pr.FirstResult.Summary(), pr.First)
		}
	}
}

// Mode serial (one op in flight) is deterministic where it matters: the
// same seed gives the same schedule and the same outcome for every
// message, with async replies too (they cannot overlap a receive there),
// and a store that drops PutManySessions fails the same messages in the
// same way on every run.
func TestDeviceSerialIsDeterministic(t *testing.T) {
	sc, err := scenarios.Lookup("reply")
	if err != nil {
		t.Fatal(err)
	}
	outcomes := func(res *harness.Result) string {
		var b strings.Builder
		for _, m := range res.Messages {
			fmt.Fprintf(&b, "%s %s %s %s;", m.ID, m.Dir, m.Outcome(), worstOf(m))
		}
		return b.String()
	}
	for _, c := range []struct {
		dev    *Device
		store  string
		failed bool
	}{{&Device{Reply: Async}, "sqlite", false}, {&Device{Reply: Inline, Variant: &dropBatchVariant}, "drop-put-many", true}} {
		for i := range 3 {
			seed := scenarios.SeedFor(3, i)
			var first, firstOut string
			for run := range 2 {
				s, res, err := harness.RunOn(context.Background(), c.dev, sc.Setup(seed, harness.Whatsmeow, c.store), harness.Serial,
					scenarios.NewGenerator(sc, scenarios.Random, seed))
				if err != nil {
					t.Fatal(err)
				}
				if res.Failed() != c.failed {
					t.Errorf("%s/%s seed %d run %d: failed %t, want %t: %s", c.dev.Name(), c.store, seed, run, res.Failed(), c.failed, res.Summary())
				}
				if run == 0 {
					first, firstOut = s.String(), outcomes(res)
					continue
				}
				if s.String() != first || outcomes(res) != firstOut {
					t.Errorf("%s/%s seed %d: two serial runs differ:\n%s\n%s\nvs\n%s\n%s", c.dev.Name(), c.store, seed, first, firstOut, s, outcomes(res))
				}
			}
		}
	}
}

// worstOf lists a message's failure classes.
func worstOf(m *harness.Message) string {
	var cls []string
	for _, a := range m.Failures() {
		cls = append(cls, string(a.Class))
	}
	return strings.Join(cls, ",")
}
