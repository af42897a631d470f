package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/badmac/badmac/devices/baileys"
	"github.com/badmac/badmac/devices/godevice"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/scenarios"
)

// deviceDispatch takes the device-process forms of run and replay:
// `badmac run -device baileys@VERSION …` and `badmac replay FILE` on a device
// schedule. handled is false for anything else.
func deviceDispatch(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) (handled bool, code int, err error) {
	switch cmd {
	case "run":
		for _, a := range args {
			if a == "-device" || a == "--device" || strings.HasPrefix(a, "-device=") || strings.HasPrefix(a, "--device=") {
				code, err := deviceRunCmd(ctx, args, stdout)
				return true, code, err
			}
		}
	case "device-v1": // hidden: the Go device speaking the device protocol on stdin/stdout
		if err := godevice.Serve(ctx, os.Stdin, stdout); err != nil {
			return true, 2, err
		}
		return true, 0, nil
	case "replay":
		if len(args) == 1 {
			if b, err := os.ReadFile(args[0]); err == nil && strings.HasPrefix(string(b), baileys.ScheduleVersion) {
				code, err := deviceReplayCmd(ctx, args[0], string(b), stdout)
				return true, code, err
			}
		}
	}
	return false, 0, nil
}

// deviceTimeout bounds each request to a device process; a variable so
// tests of a silent device need not wait a minute.
var deviceTimeout = 60 * time.Second

func deviceRunCmd(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlags("run")
	devs := fs.String("device", "", "device processes, comma-separated: baileys@6.17.16, baileys@7.0.0-rc14")
	variants := fs.String("variants", strings.Join(baileys.Variants, ","), "device variants, comma-separated: stock, seedfix (the seed's fix), locked")
	scens := fs.String("scenarios", strings.Join(baileys.DefaultScenarios, ","), "device scenarios, comma-separated: burst, reply, reorder, multi, torn")
	n := fs.Int("schedules", 4, "schedules per (device, variant, scenario)")
	seed := fs.Uint64("seed", 1, "base seed; the same seed gives the same output")
	mustPass := fs.String("must-pass", "locked", "variants (or variant/scenario) that must pass, or none; a bare variant covers every scenario but torn, whose defect is in the multi-file state every variant shares")
	out := fs.String("out", "badmac-failures", "directory for failing schedules (replay files)")
	shrink := fs.Int("shrink", 20, "runs to spend shrinking each failing row's first counterexample (0: none)")
	asJSON := fs.Bool("json", false, "print the report as JSON (reports/schema.json) on stdout instead of the table")
	wide := fs.Bool("wide", false, "print every column")
	timeout := fs.Duration("timeout", deviceTimeout, "per-request timeout: a device silent this long is an error")
	mdFile := fs.String("markdown", "", "also write the report as Markdown to `FILE`")
	junitFile := fs.String("junit", "", "also write JUnit XML to `FILE`")
	htmlFile := fs.String("html", "", "also write a self-contained HTML report to `FILE`")
	adapter := fs.String("adapter", "", "device command overriding the Baileys adapter, space-separated (tests use fake devices)")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	if *shrink < 0 {
		return 2, badInput("-shrink must be 0 or more, got %d", *shrink)
	}
	if *n < 1 || *n > 100000 {
		return 2, badInput("-schedules must be between 1 and 100000, got %d", *n)
	}
	if *timeout <= 0 {
		return 2, badInput("-timeout must be positive, got %s", *timeout)
	}
	var versions []string
	for _, d := range split(*devs) {
		v, err := baileys.ParseDevice(d)
		if err != nil {
			return 2, badInput("-device: %v", err)
		}
		versions = append(versions, v)
	}
	vars := split(*variants)
	for _, v := range vars {
		if !contains(baileys.Variants, v) {
			return 2, badInput("-variants: unknown variant %q (known: %s)", v, strings.Join(baileys.Variants, ", "))
		}
	}
	var scs []baileys.Scenario
	for _, s := range split(*scens) {
		sc, err := baileys.LookupScenario(s)
		if err != nil {
			return 2, badInput("-scenarios: %v", err)
		}
		scs = append(scs, sc)
	}
	if len(versions) == 0 || len(vars) == 0 || len(scs) == 0 {
		return 2, badInput("nothing to run: give -device, and at least one variant and scenario")
	}
	// must holds "variant/scenario" pairs.
	must := map[string]bool{}
	if strings.TrimSpace(*mustPass) != "none" {
		for _, p := range split(*mustPass) {
			v, scen, pair := strings.Cut(p, "/")
			if !contains(vars, v) {
				return 2, badInput("-must-pass %s is not in the run (give it in -variants), or -must-pass none", p)
			}
			for _, sc := range scs {
				if (pair && sc.Name == scen) || (!pair && sc.Name != "torn") {
					must[v+"/"+sc.Name] = true
				}
			}
			if pair && !must[p] {
				return 2, badInput("-must-pass %s: scenario %q is not in the run", p, scen)
			}
		}
	}
	for _, p := range []string{*mdFile, *junitFile, *htmlFile} {
		if p != "" {
			if err := checkWritable(p); err != nil {
				return 2, badInput("%v", err)
			}
		}
	}
	opt := baileys.Options{Timeout: *timeout}
	if *adapter != "" {
		opt.Argv = strings.Fields(*adapter)
	}
	rep := &reports.Report{Seed: *seed, Mode: string(harness.Controlled), Schedules: *n}
	for _, version := range versions {
		rn, err := baileys.NewRunner(ctx, version, opt)
		if err != nil {
			return 2, err
		}
		device := "baileys@" + version
		for _, sc := range scs {
			for _, v := range vars {
				row, err := deviceRow(ctx, rn, device, v, sc, *n, *seed, *out, *shrink, must[v+"/"+sc.Name])
				if err != nil {
					rn.Close()
					return 2, fmt.Errorf("%s/%s/%s: %w", device, v, sc.Name, err)
				}
				rep.Rows = append(rep.Rows, row)
			}
		}
		rn.Close()
	}
	if err := writeOutputs(rep, *mdFile, *junitFile, *htmlFile); err != nil {
		return 2, err
	}
	var err error
	if *asJSON {
		err = reports.WriteJSON(stdout, rep)
	} else {
		err = reports.WriteTable(stdout, rep, reports.TableOptions{Wide: *wide})
		fmt.Fprintln(stdout, "device rows: the protocol baseline is the same schedule one task at a time on the same Baileys version's locked variant")
	}
	if err != nil {
		return 2, err
	}
	return exitCode(rep), nil
}

// deviceRow runs n schedules of one (device, variant, scenario) and saves
// the first failing one.
func deviceRow(ctx context.Context, rn *baileys.Runner, device, variant string, sc baileys.Scenario, n int, seed uint64, out string, shrink int, must bool) (reports.Row, error) {
	pr := &scenarios.PairResult{Scenario: sc.Name, Discipline: harness.Discipline(device), Store: variant}
	var first *baileys.Outcome
	for i := range n {
		s := &baileys.Schedule{Device: device, Variant: variant, Scenario: sc.Name, Seed: scenarios.SeedFor(seed, i), Contacts: sc.Contacts}
		o, err := rn.Run(ctx, s)
		if err != nil {
			return reports.Row{}, err
		}
		pr.Schedules++
		pr.Counts.Add(o.Result.Counts())
		// Every device schedule is compared with its baseline: a store
		// judged against nothing else.
		pr.Counts.StoreNA++
		if o.Result.Failed() {
			pr.Failed++
			if first == nil {
				first = o
				pr.FirstResult = o.Result
			}
		}
	}
	if first != nil && shrink > 0 {
		s, err := rn.Shrink(ctx, first, shrink)
		if err != nil {
			return reports.Row{}, fmt.Errorf("shrinking: %w", err)
		}
		first, pr.FirstResult = s, s.Result
	}
	row := toRow(pr, must)
	row.StoreBlamed = nil
	if first != nil {
		path, err := saveDeviceSchedule(out, first.Schedule)
		if err != nil {
			return row, err
		}
		row.Replay = "badmac replay " + path
		row.Counterexample = first.Schedule.String()
		row.History = first.Result.History
	}
	return row, nil
}

func saveDeviceSchedule(dir string, s *baileys.Schedule) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("failure directory %s: %w", dir, err)
	}
	name := strings.NewReplacer("@", "-").Replace(fmt.Sprintf("%s-%s-%s-seed%d.txt", s.Device, s.Variant, s.Scenario, s.Seed))
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(s.String()), 0o644); err != nil {
		return "", fmt.Errorf("saving schedule: %w", err)
	}
	return path, nil
}

// deviceReplayCmd replays a device schedule: its history, each message's
// outcome, and the verdict (exit 1 when it fails).
func deviceReplayCmd(ctx context.Context, path, text string, stdout io.Writer) (int, error) {
	s, err := baileys.Parse(text)
	if err != nil {
		return 2, badInput("%s: %v", path, err)
	}
	version, _ := baileys.ParseDevice(s.Device)
	rn, err := baileys.NewRunner(ctx, version, baileys.Options{Timeout: deviceTimeout})
	if err != nil {
		return 2, err
	}
	defer rn.Close()
	if len(s.Ops) == 0 {
		return 2, badInput("%s: schedule has no ops", path)
	}
	o, err := rn.Run(ctx, s)
	if err != nil {
		return 2, err
	}
	fmt.Fprint(stdout, o.Schedule.String())
	fmt.Fprintln(stdout, "--- history")
	for _, l := range o.Result.History {
		fmt.Fprintln(stdout, l)
	}
	fmt.Fprintln(stdout, "--- outcomes")
	for _, m := range o.Result.Messages {
		fmt.Fprintf(stdout, "%s %s %s\n", m.ID, m.Dir, m.Outcome())
	}
	if o.Result.Failed() {
		fmt.Fprintf(stdout, "FAIL: %s\n", o.Result.Summary())
		return 1, nil
	}
	fmt.Fprintln(stdout, "PASS")
	return 0, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
