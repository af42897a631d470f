package realclient

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/scenarios"
)

func noteOf(res *harness.Result, id string) string {
	for _, m := range res.Messages {
		if m.ID == id {
			return m.Note
		}
	}
	return ""
}

// withoutLID is s with its LID ops removed: the same conversation with
// every contact known by its phone number only.
func withoutLID(s *harness.Schedule) *harness.Schedule {
	c := s.Clone()
	c.Ops = nil
	for _, op := range s.Ops {
		switch op.(type) {
		case harness.PhaseOp, harness.ViaOp, harness.MappingOp, harness.MigrateOp:
			continue
		}
		c.Ops = append(c.Ops, op)
	}
	return c
}

// The public reports as schedules (docs/lid.md §3), run on the pinned
// whatsmeow Client in serial mode (one goroutine at a time: the protocol
// baseline) on whatsmeow's sqlstore and on the reference store. Each
// reproduces with the same verdict on both stores, so the loss is the
// library's; each report's failure is named; the same conversation
// without the LID ops loses nothing, so the failure is the LID's; and a
// second run prints the same history byte for byte.
func TestLIDReportSchedules(t *testing.T) {
	cases := []struct {
		file, want string
		notes      map[string]string // message → the report its note names
		log        string            // a line the client logs
		control    string            // the verdict without the LID ops, when given
	}{
		{file: "whatsmeow-1063.txt",
			want:  "m1 delivered []; r1 delivered []; m2 recovered [NoSession NoSession]; m3 recovered [InvalidPreKey InvalidPreKey]",
			notes: map[string]string{"m2": "whatsmeow PR #1063", "m3": "whatsapp-rust PR #475"}},
		{file: "whatsmeow-1062.txt",
			want:  "m1 delivered []; r0 delivered []; r1 lost [NoSession]",
			notes: map[string]string{"r1": "whatsmeow #1062"},
			log:   "couldn't find message r1"},
		{file: "whatsapp-rust-475.txt",
			want:  "m1 delivered []; r1 delivered []; m2 delivered []; m3 recovered [InvalidPreKey InvalidPreKey]",
			notes: map[string]string{"m3": "whatsapp-rust PR #475"}},
		{file: "switch-group-1063.txt",
			want:  "g1 delivered []; g2 recovered [NoSenderKey]",
			notes: map[string]string{"g2": "whatsmeow PR #1063 (group)"}},
		{file: "switch-1062-reverse.txt",
			want:  "m1 delivered []; r1 delivered []; m2 recovered [InvalidPreKey InvalidPreKey]; r2 lost [BadMAC]",
			notes: map[string]string{"m2": "whatsmeow PR #1063", "r2": "whatsmeow #1062 the other way round"},
			log:   "couldn't find message r2"},
		// whatsmeow #1027: alice has two devices; after the restart the
		// DM to her PN reaches alice.1 only, and the next one reaches
		// alice.0 on the session built from alice.1's bundle (docs/lid.md
		// §3.1). Without the mapping every copy is delivered.
		{file: "whatsmeow-1027.txt",
			want:    "r1/alice.0 lost []; r1/alice.1 delivered []; r2/alice.0 recovered [BadMAC]; r2/alice.1 delivered []",
			notes:   map[string]string{"r1/alice.0": "whatsmeow #1027", "r2/alice.0": "whatsmeow #1027, the next DM"},
			log:     "no signal session established with 900001_1:0",
			control: "r1/alice.0 delivered []; r1/alice.1 delivered []; r2/alice.0 delivered []; r2/alice.1 delivered []"},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			s := readSchedule(t, "testdata/lid/"+c.file)
			if err := scenarios.Validate(s); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var logs []string
			dev := &Device{Reply: Inline, Log: func(l string) { mu.Lock(); logs = append(logs, l); mu.Unlock() }}
			var first string
			var lidRun *harness.Result
			for _, store := range []string{"sqlite", "reference", "sqlite"} {
				s := s.Clone()
				s.Store = store
				_, res, err := harness.RunOn(ctx, dev, s, harness.Serial, harness.Ops(s.Ops))
				if err != nil {
					t.Fatal(err)
				}
				lidRun = res
				if got := res.Verdicts(); got != c.want {
					t.Fatalf("store %s: got %s\nwant %s", store, got, c.want)
				}
				for id, report := range c.notes {
					if !strings.Contains(noteOf(res, id), report) {
						t.Errorf("store %s: %s is noted %q, want the report %s", store, id, noteOf(res, id), report)
					}
				}
				if len(res.Blamed) > 0 {
					t.Errorf("store %s: blamed %v: the serial run is its own baseline", store, res.Blamed)
				}
				if store == "sqlite" {
					if first == "" {
						first = res.HistoryText()
					} else if res.HistoryText() != first {
						t.Errorf("a second run's history differs from the first's")
					}
				}
			}
			mu.Lock()
			logged := strings.Join(logs, "\n")
			mu.Unlock()
			if c.log != "" && !strings.Contains(logged, c.log) {
				t.Errorf("the client never logged %q", c.log)
			}
			_, ctl, err := harness.RunOn(ctx, &Device{Reply: Inline}, withoutLID(s), harness.Serial, harness.Ops(withoutLID(s).Ops))
			if err != nil {
				t.Fatal(err)
			}
			if c.control != "" && ctl.Verdicts() != c.control {
				t.Errorf("without the LID ops: got %s\nwant %s", ctl.Verdicts(), c.control)
			}
			for _, m := range lidRun.Messages {
				if m.Outcome() == harness.Delivered {
					continue
				}
				var c *harness.Message
				for _, x := range ctl.Messages {
					if x.ID == m.ID {
						c = x
					}
				}
				if c == nil || !harness.Worse(m, c) {
					t.Errorf("without the LID ops %s ends no better (%s): the schedule's failure is not the LID's", m.ID, ctl.Verdicts())
				}
			}
		})
	}
}

// The LID scenarios judge the store in both directions on the real
// client: whatsmeow's sqlstore is never store-blamed, and a
// MigratePNToLID that does nothing or copies without deleting is (in
// lid-migrate), and one that leaves the sender keys under the PN is (in
// lid-switch-group: sender keys made under the PN before the group's
// migration), each in a schedule that replays byte for byte.
func TestLIDScenarioStoreBlame(t *testing.T) {
	seeds := 2
	if testenv.Long() {
		seeds = 20
	}
	ctx := context.Background()
	run := func(sc scenarios.Scenario, dev *Device, seed uint64) (*harness.Schedule, *harness.Result) {
		setup := sc.Setup(seed, harness.Locked, "sqlite")
		sched, res, err := harness.RunOn(ctx, dev, setup, harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, seed))
		if err != nil {
			t.Fatal(err)
		}
		return sched, res
	}
	for _, c := range []struct {
		scenario string
		broken   []string
	}{
		{"lid-migrate", []string{"noop", "nodelete"}},
		{"lid-switch", nil},
		{"lid-switch-group", []string{"nosenderkeys"}},
	} {
		sc, err := scenarios.Lookup(c.scenario)
		if err != nil {
			t.Fatal(err)
		}
		for i := range seeds {
			seed := uint64(1000001 + i)
			_, res := run(sc, &Device{Reply: Inline}, seed)
			if !res.StoreJudged {
				t.Fatalf("%s seed %d: sqlite was not judged against the reference store", c.scenario, seed)
			}
			if len(res.StoreBlamed) > 0 {
				t.Errorf("%s seed %d: whatsmeow's sqlstore store-blamed for %v: %s", c.scenario, seed, res.StoreBlamed, res.Summary())
			}
		}
		for _, mode := range c.broken {
			dev := (&Device{Reply: Inline}).on(brokenMigrate(mode))
			var caught *harness.Schedule
			for i := range seeds {
				sched, res := run(sc, dev, uint64(1000001+i))
				if len(res.StoreBlamed) > 0 {
					caught = sched
					t.Logf("%s, MigratePNToLID %s, seed %d: store-blamed %v: %s", c.scenario, mode, sched.Seed, res.StoreBlamed, res.Summary())
					break
				}
			}
			if caught == nil {
				t.Errorf("%s: MigratePNToLID %s never store-blamed in %d schedules", c.scenario, mode, seeds)
				continue
			}
			res := replayExactly(t, dev, caught, 2)
			if len(res.StoreBlamed) == 0 {
				t.Errorf("%s: MigratePNToLID %s: the saved schedule replays without store blame", c.scenario, mode)
			}
		}
	}
}
