package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores/sqlstores"
)

func replayCmd(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlags("replay")
	modeFlag := fs.String("mode", "", "for a schedule of a device that does not run controlled (the real client): serial or free, as its run printed (default: the first the device runs of controlled, serial, free)")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() != 1 {
		return 2, badInput("replay takes one schedule file")
	}
	var mode harness.Mode
	switch m := harness.Mode(*modeFlag); m {
	case "", harness.Controlled, harness.Serial, harness.Free:
		mode = m
	default:
		return 2, badInput("-mode: unknown mode %q (known: controlled, serial, free)", *modeFlag)
	}
	path := fs.Arg(0)
	s, err := readSchedule(path)
	if err != nil {
		return 2, err
	}
	if s.Device != "" && s.Device != "model" {
		return replayDevice(ctx, path, s, mode, stdout) // a `device NAME` header: replayed on that device
	}
	if mode != "" && mode != harness.Controlled {
		return 2, badInput("-mode %s: a model schedule replays in controlled mode only", mode)
	}
	defer sqlstores.Shutdown()
	if s.Store == yours {
		// The user's store lives in the user's module: replay on the
		// reference store, what a correct store does with the schedule.
		fmt.Fprintf(stdout, "# %s was recorded by storetest against your own store; replaying it on the reference store\n# (to replay it on yours: %s)\n", path, storetestCommand(path))
		s = s.Clone()
		s.Store = "reference"
	}
	res, err := harness.Replay(ctx, s, harness.Controlled)
	if err != nil {
		return 2, fmt.Errorf("%s: %w", path, err)
	}
	return printReplay(stdout, s, res, "the reference store is not judged against itself"), nil
}

// printReplay prints a replayed schedule, its history, each message's
// outcome and the judgement, and returns the exit code: 1 when the
// schedule failed (harness.Result.Failed, the verdict of one schedule).
// notJudged says why the store column is n/a when it is.
func printReplay(w io.Writer, s *harness.Schedule, res *harness.Result, notJudged string) int {
	fmt.Fprint(w, s.String())
	fmt.Fprintln(w, "history")
	fmt.Fprint(w, res.HistoryText())
	for _, m := range res.Messages {
		fmt.Fprintf(w, "outcome %s %s %s\n", m.ID, m.Dir, m.Outcome())
	}
	writeJudgement(w, res, notJudged)
	if res.Failed() {
		fmt.Fprintf(w, "FAIL: %s\n", res.Summary())
		return 1
	}
	fmt.Fprintln(w, "PASS: no blamed failures")
	return 0
}

// writeJudgement prints the three attributions of a replayed schedule and
// what the protocol baseline failed itself, one line each.
func writeJudgement(w io.Writer, res *harness.Result, notJudged string) {
	list := func(ids []string) string {
		if len(ids) == 0 {
			return "none"
		}
		return strings.Join(ids, " ")
	}
	fmt.Fprintf(w, "pair-blamed (worse than the protocol baseline): %s\n", list(res.Blamed))
	if res.StoreJudged {
		fmt.Fprintf(w, "store-blamed (worse than the reference store, same client and schedule): %s\n", list(res.StoreBlamed))
	} else {
		if res.StoreNotJudged != "" {
			notJudged = res.StoreNotJudged
		}
		fmt.Fprintf(w, "store-blamed: n/a (%s)\n", notJudged)
	}
	if len(res.LostToCrash) > 0 {
		fmt.Fprintf(w, "lost to the crash (killed between decrypt and ack, or lost as badly serially with the same backup restored): %s\n", list(res.LostToCrash))
	}
	if len(res.LibraryFailures) > 0 {
		fmt.Fprintf(w, "BASELINE: %s (the protocol's or libsignal's, never blamed)\n", res.LibrarySummary())
	}
}
