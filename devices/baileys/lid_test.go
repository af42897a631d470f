package baileys

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// The socket device runs the LID scenarios that need no group, no rekey
// and no account migration, on both versions, and refuses the others in
// one line with the reason.
func TestSocketLIDCheck(t *testing.T) {
	for _, v := range Versions {
		d := &SocketDevice{name: SocketPrefix + v, version: v}
		for _, name := range []string{"lid-migrate", "lid-both", "lid-reply", "lid-crash"} {
			sc, _ := scenarios.Lookup(name)
			if err := d.Check(sc.Setup(1, harness.Locked, MultiFile), harness.Controlled); err != nil {
				t.Errorf("%s: scenario %s refused: %v", d.name, name, err)
			}
		}
		ops := &harness.Schedule{Scenario: "script", Store: MultiFile, Ops: []harness.Op{harness.PhaseOp{User: "alice", Phase: "mixed"},
			harness.ViaOp{Peer: "alice.0", Form: "lid"}, harness.MappingOp{User: "alice"}, harness.ForgetOp{Peer: "alice.0"}}}
		if err := d.Check(ops, harness.Serial); err != nil {
			t.Errorf("%s: the LID ops refused: %v", d.name, err)
		}
		for name, want := range map[string]string{"lid-switch": "op migrate", "lid-switch-group": "group messages",
			"lid-group": "group messages", "lid-repair": "op rekey"} {
			sc, _ := scenarios.Lookup(name)
			err := d.Check(sc.Setup(1, harness.Locked, MultiFile), harness.Controlled)
			if err == nil || !strings.HasPrefix(err.Error(), "device "+d.name+" cannot run ") || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: Check(%s) = %v; want one line naming %q", d.name, name, err, want)
			}
		}
		mig := &harness.Schedule{Scenario: "script", Store: MultiFile, Ops: []harness.Op{harness.MigrateOp{}}}
		if err := d.Check(mig, harness.Serial); err == nil || !strings.Contains(err.Error(), "op migrate") {
			t.Errorf("%s: op migrate: %v, want refused", d.name, err)
		}
	}
}

// loadLIDSchedule is loadSchedule for testdata/lid.
func loadLIDSchedule(t *testing.T, name, store string) *harness.Schedule {
	t.Helper()
	return loadFrom(t, filepath.Join("testdata", "lid", name), store)
}

// withoutLIDOps is s with its LID ops removed: the same conversation with
// the contact known by its phone number only.
func withoutLIDOps(s *harness.Schedule) *harness.Schedule {
	c := s.Clone()
	c.Ops = nil
	for _, op := range s.Ops {
		if !harness.LIDOp(op) {
			c.Ops = append(c.Ops, op)
		}
	}
	return c
}

// The Baileys LID reports as schedules (docs/lid.md §6.6), replayed on
// Baileys' own socket and Baileys' own useMultiFileAuthState: each
// failure reproduces, fails the same in the protocol baseline (so it is
// the library's, never blamed), is named with its report; the same
// conversation without the LID ops loses nothing; two replays print the
// same history.
func TestSocketLIDReports(t *testing.T) {
	testenv.NeedLong(t, "the Baileys LID report schedules, each replayed four times")
	cases := []struct {
		file, version, want string
		notes               map[string]string
	}{
		{"baileys-2331.txt", "7.0.0-rc14",
			"m1 delivered []; m2 recovered [InvalidPreKey InvalidPreKey]; r1 delivered []; m3 recovered [Other Other]",
			map[string]string{"m2": "Baileys #2331 / PR #2763: the pair stored, migrateSession moved nothing", "m3": "Baileys #2331 (stale overwrite)"}},
		{"baileys6-2763.txt", "6.17.16",
			"m1 delivered []; m2 recovered [InvalidPreKey InvalidPreKey]; m3 recovered [InvalidPreKey InvalidPreKey]",
			map[string]string{"m3": "Baileys PR #2763 on 6.x"}},
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file, ".txt"), func(t *testing.T) {
			ctx := context.Background()
			d := openSocket(t, c.version)
			s := loadLIDSchedule(t, c.file, "")
			_, res, err := harness.RunOn(ctx, d, s, harness.Controlled, harness.Ops(s.Ops))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Verdicts(); got != c.want {
				t.Errorf("outcomes %q, want %q\n%s", got, c.want, strings.Join(res.History, "\n"))
			}
			base, err := d.Baseline(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Blamed) > 0 || len(res.StoreBlamed) > 0 || base.Verdicts() != c.want {
				t.Errorf("pair blamed %v, store blamed %v, protocol baseline %q; want the library's: none blamed, the baseline the same", res.Blamed, res.StoreBlamed, base.Verdicts())
			}
			if again, err := d.Baseline(ctx, s); err != nil || again.HistoryText() != base.HistoryText() {
				t.Errorf("a second baseline printed another history (%v)\n%s", err, testenv.FirstDiff(base.History, again.History))
			}
			for id, want := range c.notes {
				note := ""
				for _, m := range res.Messages {
					if m.ID == id {
						note = m.Note
					}
				}
				if !strings.Contains(note, want) {
					t.Errorf("%s noted %q, want %q", id, note, want)
				}
			}
			// In a new Node process, as badmac replay runs it: on 6.17.16
			// a schedule run after another in the same process draws
			// other message ids (docs/lid.md §6.6).
			_, again, err := harness.RunOn(ctx, openSocket(t, c.version), s, harness.Controlled, harness.Ops(s.Ops))
			if err != nil {
				t.Fatal(err)
			}
			if again.HistoryText() != res.HistoryText() {
				t.Errorf("a second replay printed another history\n%s", testenv.FirstDiff(res.History, again.History))
			}
			plain := withoutLIDOps(s)
			_, pn, err := harness.RunOn(ctx, d, plain, harness.Controlled, harness.Ops(plain.Ops))
			if err != nil {
				t.Fatal(err)
			}
			if pn.Failed() || pn.BaselineSummary != "" {
				t.Errorf("without the LID ops: %s (baseline %q); want every message delivered", pn.Verdicts(), pn.BaselineSummary)
			}
		})
	}
}

// An auth state that drops Baileys 7's lid-mapping keys is caught: the
// store is blamed for the PN stanza the restart cut from its LID session
// (Baileys PR #2372's second cause, baileys-2372-mapping.txt), while
// Baileys' own useMultiFileAuthState and the correct example store pass
// the same schedule.
func TestSocketDroppedLIDMappingCaught(t *testing.T) {
	ctx := context.Background()
	d := openSocket(t, "7.0.0-rc14")
	stores := []string{"", MultiFile, example("useCorrectAuthState"), example("useNoLIDMappingAuthState") + CacheSuffix}
	if !testenv.Long() {
		stores = stores[:2] // BADMAC_LONG=1: the correct example store and the buggy one cached too
	}
	for _, store := range stores {
		s := loadLIDSchedule(t, "baileys-2372-mapping.txt", store)
		_, res, err := harness.RunOn(ctx, d, s, harness.Controlled, harness.Ops(s.Ops))
		if err != nil {
			t.Fatal(err)
		}
		if !res.StoreJudged {
			// No store call is half written while another runs here (a
			// restart between the write and the read): the reference run
			// is exact, and the store is judged (judgesStore).
			t.Errorf("%s: store not judged", s.Store)
		}
		buggy := strings.Contains(s.Store, "useNoLIDMappingAuthState")
		if buggy && (!slices.Contains(res.StoreBlamed, "m3") || !strings.Contains(noteOf(res, "m3"), "PR #2372 cause 2")) {
			t.Errorf("%s: m3 not store blamed (store blamed %v, note %q): %s\n%s", s.Store, res.StoreBlamed, noteOf(res, "m3"), res.Verdicts(), strings.Join(res.History, "\n"))
		}
		if !buggy && (res.Failed() || len(res.StoreBlamed) > 0) {
			t.Errorf("%s: %s (store blamed %v); want every message delivered", s.Store, res.Verdicts(), res.StoreBlamed)
		}
	}
}

func noteOf(res *harness.Result, id string) string {
	for _, m := range res.Messages {
		if m.ID == id {
			return m.Note
		}
	}
	return ""
}

// The false store blame of docs/lid.md §6.6, traced: lid-reply, seed
// 1000005 (schedule 2 of `badmac run -seed 1`), 7.0.0-rc14, the correct
// example store. The store makes one key of a contact's PN/LID pair
// readable at its rename, before set() returns; the reference run's call
// takes effect whole at its end. Followed exactly, the reference run
// store-blames the correct store (the run diverges where a receive reads
// the half-written pair); the rule (judgesStore) sees the half-written
// call and does not judge the store on this run: n/a, nothing blamed.
func TestSocketHalfWrittenCallNotJudged(t *testing.T) {
	testenv.NeedLong(t, "one lid-reply schedule on Baileys 7, its baseline and its reference run")
	ctx := context.Background()
	d := openSocket(t, "7.0.0-rc14")
	sc, err := scenarios.Lookup("lid-reply")
	if err != nil {
		t.Fatal(err)
	}
	const seed = 1000005
	setup := sc.Setup(seed, harness.Locked, filepath.Join(repoRoot(t), example("useCorrectAuthState")))
	setup.Device = d.Name()
	sched, res, err := d.Exec(ctx, setup, harness.Controlled, scenarios.NewGenerator(sc, scenarios.Random, seed))
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	f := d.follow[res]
	d.mu.Unlock()
	if !strings.Contains(f.inexact, "half written") {
		t.Fatalf("the candidate's run is not marked inexact (%q)", f.inexact)
	}
	t.Logf("inexact: %s", f.inexact)

	// Without the rule: the reference run followed exactly blames the store.
	base, err := d.Baseline(ctx, sched)
	if err != nil {
		t.Fatal(err)
	}
	ref := sched.Clone()
	ref.Store = MultiFile
	d.mu.Lock()
	_, exact, err := d.execWith(ctx, ref, false, f.logins, nil)
	d.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	harness.Judge(res, harness.Baselines{Protocol: base, Reference: exact})
	if len(res.StoreBlamed) == 0 {
		t.Fatalf("the reference run followed exactly blames nothing (%s): the trace of docs/lid.md §6.6 no longer holds", res.Verdicts())
	}
	t.Logf("followed exactly, store blamed: %v", res.StoreBlamed)

	// With it: the same explicit schedule, judged, is not store judged.
	_, res2, err := harness.RunOn(ctx, d, sched, harness.Controlled, harness.Ops(sched.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if res2.StoreJudged || len(res2.StoreBlamed) > 0 {
		t.Errorf("store judged %v, store blamed %v; want n/a", res2.StoreJudged, res2.StoreBlamed)
	}
	if res2.Verdicts() != res.Verdicts() {
		t.Errorf("the replay ended otherwise:\n%s\nvs\n%s", res2.Verdicts(), res.Verdicts())
	}
}

// The command of docs/lid.md §6.6: the correct example store, cached and
// not, is never store blamed on the LID scenarios the socket device runs,
// on both versions; on 7.0.0-rc14 the rule (judgesStore) leaves some of
// its runs judged (the store is still compared where the reference run is
// exact), on 6.17.16 none. Each row's judged runs are logged for §6.6's
// table, the store that drops lid-mapping's too (not asserted: the
// generated schedules have no restart between the pair's write and a bare
// PN stanza; baileys-2372-mapping.txt is the evidence it is caught).
func TestSocketCorrectStoreNeverBlamedLID(t *testing.T) {
	testenv.NeedLong(t, "three auth states over 5 schedules of 4 LID scenarios on two Baileys versions")
	ctx := context.Background()
	for _, v := range []string{"7.0.0-rc14", "6.17.16"} {
		d := openSocket(t, v)
		var pairs []scenarios.Pair
		for _, name := range []string{"lid-migrate", "lid-both", "lid-reply", "lid-crash"} {
			sc, _ := scenarios.Lookup(name)
			for _, st := range []string{example("useCorrectAuthState"), example("useCorrectAuthState") + CacheSuffix, example("useNoLIDMappingAuthState")} {
				pairs = append(pairs, scenarios.Pair{Scenario: sc, Discipline: harness.Locked, Variant: stores.Variant{Name: filepath.Join(repoRoot(t), st)}, Device: d})
			}
		}
		const n = 5
		prs, err := scenarios.RunPairs(ctx, pairs, scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: n, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		judged := 0
		for _, pr := range prs {
			c := pr.Counts
			t.Logf("%s %s %s: store judged in %d of %d runs, store blamed %d", v, filepath.Base(pr.Store), pr.Scenario, n-c.StoreNA, n, c.StoreBlamed)
			if strings.Contains(pr.Store, "useNoLIDMappingAuthState") {
				continue
			}
			judged += n - c.StoreNA
			if c.StoreBlamed > 0 || c.RegeneratedCreds > 0 || c.LostPreKeys > 0 {
				t.Errorf("%s %s/%s: store blamed %d, regenerated %d, lost prekeys %d", v, pr.Store, pr.Scenario, c.StoreBlamed, c.RegeneratedCreds, c.LostPreKeys)
			}
		}
		if six := strings.HasPrefix(v, "6."); six != (judged == 0) {
			t.Errorf("%s: the correct stores judged in %d runs; want none on 6.x, some on 7.x", v, judged)
		}
	}
}

// Two store calls share a key when they name one (a get of a key another
// call sets, two sets of one key); credentials saves name none another
// call reads; a call whose keys are not known (clear) shares every key.
func TestShareKey(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"set lid-mapping 900001_reverse, lid-mapping alice", "get lid-mapping 900001_reverse", true},
		{"set lid-mapping 900001_reverse, lid-mapping alice", "get lid-mapping bob", false},
		{"set lid-mapping 900001_reverse, lid-mapping alice", "get session alice", false},
		{"set pre-key 1 (delete), session 900001_1.0", "set session 900001_1.0", true},
		{"set pre-key 1 (delete), session 900001_1.0", "get pre-key 2,1", true},
		{"set pre-key 1 (delete), session 900001_1.0", "get pre-key 2,3", false},
		{"save creds", "save creds", false},
		{"save creds", "get session alice.0", false},
		{"clear", "get session alice.0", true},
		{"set session alice.0", "", true},
	} {
		if got := shareKey(c.a, c.b); got != c.want || shareKey(c.b, c.a) != c.want {
			t.Errorf("shareKey(%q, %q) = %v, want %v both ways", c.a, c.b, got, c.want)
		}
	}
}
