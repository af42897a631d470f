package storetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/stores"
)

// worseThanReference lists what the store is to blame for in a controlled
// run: the messages that fared worse than on badmac's reference store
// under the same client discipline and the same explicit schedule
// (whatever the discipline's own races cost hits the reference store too),
// the harness's own store attribution (harness.Judge, Result.StoreBlamed),
// the verdict the CLI prints; and "(restart)" when a restart lost what a
// correct store keeps (restartFailures). A free-mode run is never compared
// with a controlled one: its interleaving is not the replay's (runFree).
func worseThanReference(ctx context.Context, s *harness.Schedule, res *harness.Result) ([]string, error) {
	if !res.StoreJudged {
		return nil, fmt.Errorf("schedule %d was not judged against the reference store", s.Seed)
	}
	out := append([]string(nil), res.StoreBlamed...)
	if res.LostPreKeys > 0 && !res.RegeneratedCreds && !res.StartRefused {
		// A backup restored loses the prekeys uploaded after it on any
		// store: only more than the reference store loses on the same
		// schedule is the store's.
		_, ref, err := harness.Execute(ctx, s.Clone(), stores.MustLookup("reference"), harness.Controlled, harness.Ops(s.Ops))
		if err != nil {
			return nil, fmt.Errorf("reference store: %w", err)
		}
		if res.LostPreKeys <= ref.LostPreKeys {
			return out, nil
		}
	}
	return append(out, restartFailures(res)...), nil
}

// restartFailures is "(restart)" when a restart regenerated credentials,
// refused to start or lost uploaded prekeys: the reference store never
// does, in any mode.
func restartFailures(res *harness.Result) []string {
	if res.LostPreKeys > 0 || res.RegeneratedCreds || res.StartRefused {
		return []string{"(restart)"}
	}
	return nil
}

// classWords say each failure class as a production log does.
var classWords = map[endpoint.Class]string{
	endpoint.BadMAC:            "Bad MAC (\"no valid sessions\")",
	endpoint.OldCounter:        "old counter (whatsmeow drops the message silently)",
	endpoint.NoSession:         "no session",
	endpoint.InvalidPreKey:     "invalid prekey id",
	endpoint.UntrustedIdentity: "untrusted identity",
	endpoint.NoSenderKey:       "no sender key",
	endpoint.StoreError:        "store error",
	endpoint.Other:             "other decrypt error",
}

// symptoms is what the store's failures look like in production: failed
// decrypts per class, at the bot (the contacts' messages) and at the
// contacts (the bot's replies), then what became of the blamed messages.
func symptoms(res *harness.Result, blamed []string) string {
	bl := map[string]bool{}
	for _, id := range blamed {
		bl[id] = true
	}
	at := map[string]map[endpoint.Class]int{}
	outcomes := map[harness.Outcome][]string{}
	for _, m := range res.Messages {
		if !bl[m.ID] {
			continue
		}
		where := "at the bot (decrypting the contacts' messages)"
		if m.Dir == harness.Out {
			where = "at the contact (decrypting the bot's replies)"
		}
		for _, a := range m.Failures() {
			if at[where] == nil {
				at[where] = map[endpoint.Class]int{}
			}
			at[where][a.Class]++
		}
		outcomes[m.Outcome()] = append(outcomes[m.Outcome()], m.ID)
	}
	var b strings.Builder
	wheres := make([]string, 0, len(at))
	for w := range at {
		wheres = append(wheres, w)
	}
	sort.Strings(wheres)
	for _, w := range wheres {
		var parts []string
		for _, c := range endpoint.Classes {
			if n := at[w][c]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d× %s", n, classWords[c]))
			}
		}
		fmt.Fprintf(&b, "  %s: %s\n", w, strings.Join(parts, ", "))
	}
	words := []struct {
		o harness.Outcome
		s string
	}{
		{harness.Recovered, "decrypted only after retry receipts (in production: errors in the log, a delay, a new session)"},
		{harness.Lost, "never decrypted: lost"},
		{harness.Duplicate, "delivered twice"},
		{harness.Wrong, "decrypted to the wrong plaintext"},
	}
	for _, w := range words {
		if ids := outcomes[w.o]; len(ids) > 0 {
			fmt.Fprintf(&b, "  %d of %d messages %s: %s\n", len(ids), len(res.Messages), w.s, strings.Join(ids, " "))
		}
	}
	if res.RegeneratedCreds || res.StartRefused || res.LostPreKeys > 0 {
		fmt.Fprintf(&b, "  after restarts: %s\n", res.Summary())
	}
	if b.Len() == 0 {
		b.WriteString("  nothing yet: every message got through in this schedule, but a store that answers like this breaks sessions once a reply goes out on the record it lost\n")
	}
	return b.String()
}

// replay runs the schedule file named by $BADMAC_REPLAY on the store under
// test: its history, diagnosis and outcome; with $BADMAC_HTML an HTML
// timeline; with $BADMAC_SHRINK_BUDGET it shrinks the file first.
func replay(t TB, s *subject, path string, o Options, who testRef) {
	t.Helper()
	ctx := context.Background()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("storetest: %s: %v", ReplayEnv, err)
		return
	}
	sched, err := harness.Parse(f)
	f.Close()
	if err != nil {
		t.Fatalf("storetest: %s: %v", path, err)
		return
	}
	if sched.Store != StoreName {
		t.Fatalf("storetest: %s was recorded against badmac's store %q, not yours: replay it with badmac replay %s", path, sched.Store, path)
		return
	}
	if sched.Instances > 1 && s.open == nil {
		t.Fatalf("storetest: %s runs %d instances at once: it needs an Opener (storetest.RunOpener)", path, sched.Instances)
		return
	}
	if sched.Device != "" && sched.Device != "model" {
		replayClient(ctx, t, s, sched, path)
		return
	}
	var j *shrunk
	if os.Getenv(ShrinkEnv) != "" {
		if j, err = shrink(ctx, s, sched, o.ShrinkBudget, harness.NewPool(o.Workers)); err != nil {
			t.Fatalf("storetest: shrinking %s: %v", path, err)
			return
		}
		switch {
		case j == nil:
			t.Logf("storetest: %s does not fail on your store any more: nothing to shrink", path)
		default:
			// Saved even when nothing shorter fails the same way, so that the
			// .shrunk.txt the user looks for is there and says so.
			out := strings.TrimSuffix(path, ".txt") + ".shrunk.txt"
			note := "# shrunk from " + path + "\n"
			if len(j.sched.Ops) == len(sched.Ops) {
				note = fmt.Sprintf("# shrinking %s (%d runs) found nothing shorter that fails the same way\n", path, o.ShrinkBudget)
			}
			if err := os.WriteFile(out, []byte(annotate(j.sched.String(), note)), 0o644); err != nil {
				t.Fatalf("storetest: %v", err)
				return
			}
			if len(j.sched.Ops) < len(sched.Ops) {
				t.Logf("storetest: shrunk %s from %d to %d ops, saved to %s", path, len(sched.Ops), len(j.sched.Ops), out)
			} else {
				t.Logf("storetest: shrinking %s found nothing shorter than its %d ops in %d runs; saved as it is to %s (raise %s to try more)",
					path, len(sched.Ops), o.ShrinkBudget, out, ShrinkEnv)
			}
		}
	}
	if j == nil {
		if j, err = judge(ctx, s, sched); err != nil {
			t.Fatalf("storetest: replay %s: %v", path, err)
			return
		}
	}
	sched, res, finds, blamed := j.sched, j.res, j.finds, j.blamed
	t.Logf("storetest: replay of %s, history:\n%s", path, res.HistoryText())
	if html := os.Getenv(HTMLEnv); html != "" {
		// go test runs the test in its package's directory, whatever the
		// shell's: a relative path lands there, so say where.
		abs, err := filepath.Abs(html)
		if err != nil {
			abs = html
		}
		if err := writeHTML(abs, sched, res, path, who, len(blamed) > 0 || len(finds) > 0); err != nil {
			t.Fatalf("storetest: %s: %v", HTMLEnv, err)
			return
		}
		if filepath.IsAbs(html) {
			t.Logf("storetest: HTML timeline written to %s", abs)
		} else {
			t.Logf("storetest: HTML timeline written to %s (a relative %s is relative to the test's package directory, where go test runs it; write %s=$PWD/%s for the directory you ran it from)",
				abs, HTMLEnv, HTMLEnv, html)
		}
	}
	if len(blamed) == 0 && len(finds) == 0 {
		t.Logf("storetest: replay of %s: no failures", path)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "storetest: replay of %s fails (%d ops):\n", path, len(sched.Ops))
	writeFailure(&b, finds, res, blamed)
	if sched.Instances > 1 {
		b.WriteString(twoProcessHint)
	}
	t.Errorf("%s", b.String())
}

// writeHTML writes the replay's timeline with badmac's HTML report: one row.
// Its banner is storetest's verdict (failed: the store is blamed for a
// message or did something a correct store cannot), never the CLI gate's
// pair verdict: under the same schedule the client's own losses fail the
// pair and not the store, and a finding with every message delivered fails
// the store and not the pair. A failing replay is a failed must-pass row;
// a passing one is measured, not gated, its summary saying why.
func writeHTML(path string, s *harness.Schedule, res *harness.Result, from string, who testRef, failed bool) error {
	rep := replayReport(s, res, who.command([]string{ReplayEnv + "=" + from}), failed)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := reports.WriteHTML(f, rep); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// replayReport is the report writeHTML renders (see there).
func replayReport(s *harness.Schedule, res *harness.Result, cmd string, failed bool) *reports.Report {
	row := reports.CountsRow(res.Counts(), 1, 0)
	row.Discipline, row.Store, row.Scenario = string(s.Discipline), s.Store, s.Scenario
	row.Replay, row.Counterexample = cmd, s.String()
	row.Summary, row.History = res.Summary(), res.History
	rep := &reports.Report{Format: "badmac storetest replay", Seed: s.Seed, Mode: string(harness.Controlled), Schedules: 1}
	if failed {
		row.MustPass, row.FailedSchedules = true, 1
		row.Summary = "storetest: the store fails this schedule; " + row.Summary
	} else {
		rep.MustPass = reports.NoGate
		row.Summary = "storetest: no failure of the store in this schedule (what failed here fails on the reference store too); " + row.Summary
	}
	rep.Rows = []reports.Row{row}
	return rep
}
