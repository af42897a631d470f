package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/badmac/badmac/devices"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// readSchedule opens and parses a schedule file; errors are one line that
// names the file and, for malformed content, the line.
func readSchedule(path string) (*harness.Schedule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, badInput("%v", err)
	}
	defer f.Close()
	s, err := harness.Parse(f)
	if err == nil {
		err = scenarios.Validate(s)
	}
	if err != nil {
		return nil, badInput("%s: %v", path, err)
	}
	if s.Device != "" && s.Device != "model" {
		if !devices.Known(s.Device) {
			return nil, badInput("%s: schedule line %d: unknown device %q (badmac run -h lists them)", path, s.Line("device"), s.Device)
		}
		return s, nil // the device checks its own store names
	}
	if s.Store == yours {
		return s, nil // the caller decides: replay on the reference store, or explain
	}
	if _, err := stores.Lookup(s.Store); err != nil {
		return nil, badInput("%s: schedule line %d: %v", path, s.Line("store"), err)
	}
	return s, nil
}

// yours is the store name in schedules storetest records against a user's
// own store, which this binary cannot open.
const yours = "yours"

// storetestCommand is the go test command storetest wrote into a schedule
// file ("# replay: …"), or a generic one.
func storetestCommand(path string) string {
	b, err := os.ReadFile(path)
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if c, ok := strings.CutPrefix(line, "# replay: "); ok {
				return c
			}
		}
	}
	return "BADMAC_REPLAY=" + path + " go test -run '^YourTest$' your/package"
}

// shrinkCmd minimises a failing schedule from elsewhere (a CI artifact, a
// hand-written script) and writes the shrunk schedule.
func shrinkCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlags("shrink")
	out := fs.String("o", "", "write the shrunk schedule to `OUT` (default: stdout)")
	budget := fs.Int("budget", 1000, "runs to spend shrinking")
	limit := fs.Duration("time", time.Minute, "stop shrinking after this long (0: no limit; with a limit the result can depend on the machine's speed)")
	workers := fs.Int("workers", 0, "candidates run at once (0: GOMAXPROCS); the result is the same for any count")
	// Flags may come after the file: badmac shrink FILE -o OUT.
	files, err := parseFlagsAndFiles(fs, args, stdout)
	if err != nil {
		return 2, err
	}
	if len(files) != 1 {
		return 2, badInput("shrink takes one schedule file")
	}
	if *budget < 1 {
		return 2, badInput("-budget must be at least 1, got %d", *budget)
	}
	if *limit < 0 || *workers < 0 {
		return 2, badInput("-time and -workers must not be negative")
	}
	if *out != "" {
		if err := checkWritable(*out); err != nil {
			return 2, badInput("%v", err)
		}
	}
	path := files[0]
	s, err := readSchedule(path)
	if err != nil {
		return 2, err
	}
	if s.Store == yours {
		// Shrinking needs the failing store; the reference store passes.
		return 2, badInput("%s was recorded by storetest against your own store, which only your test can open; "+
			"shrink it there: BADMAC_SHRINK_BUDGET=%d %s", path, *budget, storetestCommand(path))
	}
	defer sqlstores.Shutdown()
	// A device's schedule names the device's own store (Baileys'
	// multifile, a bot's MODULE:FUNCTION): the device's Check judges it.
	v := stores.Variant{Name: s.Store}
	o := harness.ShrinkOptions{Budget: *budget, Time: *limit, Pool: harness.NewPool(*workers)}
	if s.Device != "" && s.Device != "model" {
		// A device's schedule shrinks on that device, in controlled mode.
		od, err := openDevice(ctx, s.Device, deviceTimeout, "")
		if err != nil {
			return 2, badInput("%s: %v", path, err)
		}
		defer od.Close()
		if err := od.Device.Check(s, harness.Controlled); err != nil {
			return 2, badInput("%s: %v", path, err)
		}
		o.Device = od.Device
	} else {
		v = stores.MustLookup(s.Store) // readSchedule checked the model's store
	}
	if stderrIsTerminal(stderr) {
		bar := newShrinkProgress(stderr, *budget)
		defer bar.Finish()
		o.Progress = func(p harness.ShrinkProgress) {
			bar.Describe(fmt.Sprintf("shrink %d→%d ops, %d contact devices (%s)", p.StartOps, p.Ops, p.Contacts, p.Pass))
			bar.Set(p.Runs)
		}
	}
	small, res, err := harness.ShrinkWith(ctx, s, v, harness.Controlled, o)
	if err != nil {
		return 2, fmt.Errorf("%s: %w", path, err)
	}
	if !res.Failed() {
		fmt.Fprintf(stdout, "PASS: %s has no blamed failures; nothing to shrink\n", path)
		return 0, nil
	}
	text := small.String()
	if *out != "" {
		if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
			return 2, fmt.Errorf("writing %s: %w", *out, err)
		}
		fmt.Fprintf(stdout, "shrunk %s from %d to %d ops: %s\nreplay: %s replay %s\n", path, len(s.Ops), len(small.Ops), res.Summary(), self(), *out)
		return 1, nil
	}
	fmt.Fprint(stdout, text)
	fmt.Fprintf(stdout, "# shrunk from %d to %d ops: %s\n", len(s.Ops), len(small.Ops), res.Summary())
	return 1, nil
}
