package main

import (
	"context"
	"fmt"
	"io"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores/sqlstores"
)

func replayCmd(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlags("replay")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() != 1 {
		return 2, badInput("replay takes one schedule file")
	}
	path := fs.Arg(0)
	s, err := readSchedule(path)
	if err != nil {
		return 2, err
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
	fmt.Fprint(stdout, s.String())
	fmt.Fprintln(stdout, "history")
	fmt.Fprint(stdout, res.HistoryText())
	for _, m := range res.Messages {
		fmt.Fprintf(stdout, "outcome %s %s %s\n", m.ID, m.Dir, m.Outcome())
	}
	if res.Failed() {
		fmt.Fprintf(stdout, "FAIL: %s\n", res.Summary())
		return 1, nil
	}
	fmt.Fprintln(stdout, "PASS: no blamed failures")
	return 0, nil
}
