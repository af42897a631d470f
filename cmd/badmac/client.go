package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/realclient"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// clientCmd is `badmac client`, a preset of `badmac run -device`: the
// unmodified whatsmeow Client on the loopback fake server, replying from
// its event handler (client-inline) or from a goroutine (client-async),
// with EnableDecryptedEventBuffer off and on (+buffer), on the scenario
// reply, free-running (clientRunArgs says which run command it is; it is
// printed on stderr). The table, the gate and the replay lines are run's.
//
// The workload flags -messages, -contacts, -burst and -reply-rate are the
// scenario's parameters (scenarios/params.go): -messages 30 -burst 4 runs
// the scenario reply:messages=30:burst=4, which the schedules and their
// replay files name. -drop (and -v) still run the older driver,
// realclient.Converse, judged by harness.Judge against an empty baseline
// (every message not delivered cleanly is blamed) and printed in run's
// table; gated only on the rows -must-pass names: a dropped connection is
// not a schedule op yet (issue 21).
func clientCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlags("client")
	runs := fs.Int("runs", 3, "conversations per row (run's -schedules)")
	seed := fs.Uint64("seed", 1, "first seed (run's -seed)")
	replies := fs.String("replies", "inline,async", "how the bot replies: inline, async (the devices client-inline, client-async); none: -drop's driver only")
	buffers := fs.String("buffer", "off,on", "EnableDecryptedEventBuffer: off, on (on: the devices …+buffer, stores sqlite and postgres; comma-separated)")
	storeList := fs.String("stores", "sqlite", "candidate stores (sqlite, postgres: whatsmeow's sqlstore for the whole device; any other variant: the device's four Signal stores, the rest in SQLite)")
	mustPass := fs.String("must-pass", "", "run's -must-pass: DEVICE/STORE rows that must pass, or none (default: run's, client-inline on reference and sqlite, when in the run; else none)")
	wide := fs.Bool("wide", false, "print every column (the default table fits 120 columns)")
	out := fs.String("out", "badmac-failures", "directory for failing schedules (replay files; run's -out)")
	// The workload: the scenario reply's parameters (scenarios/params.go).
	msgs := fs.Int("messages", 0, "workload: messages the contacts send per conversation (the parameter messages=N; default: the scenario reply's, 8; with -drop 30)")
	contacts := fs.Int("contacts", 0, "workload: contacts, 1..4 (the parameter contacts=N; default 1)")
	burst := fs.Int("burst", 0, "workload: the contacts send in bursts of at most this many, the next once the device is done with the last (the parameter burst=K; 1: one message at a time; default: the scenario reply's interleaving; with -drop 4)")
	rate := fs.Float64("reply-rate", 0, "workload: the chance the bot replies to a message (the parameter reply=P; default: the scenario reply's, 0.7; with -drop 1)")
	drop := fs.Float64("drop", 0, "workload: chance the server drops the connection after a burst (whatsmeow reconnects); runs the older driver, realclient.Converse")
	verbose := fs.Bool("v", false, "with -drop: print the client's warnings on stderr")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	legacy := given["drop"] || given["v"]
	if *runs < 1 || *runs > 1000 || *msgs < 0 || *msgs > 1000 || *contacts < 0 || *contacts > 4 || *burst < 0 || *burst > 100 ||
		(given["messages"] && *msgs == 0) || (given["contacts"] && *contacts == 0) || (given["burst"] && *burst == 0) {
		return 2, badInput("-runs must be 1..1000, -messages 1..1000, -contacts 1..4, -burst 1..100")
	}
	if !(*drop >= 0 && *drop <= 1) {
		return 2, badInput("-drop must be in [0, 1], not %v", *drop)
	}
	if given["reply-rate"] && !(*rate > 0 && *rate <= 1) {
		return 2, badInput("-reply-rate must be in (0, 1], not %v", *rate)
	}
	var modes []realclient.Reply
	for _, r := range split(*replies) {
		switch realclient.Reply(r) {
		case realclient.Inline, realclient.Async:
		case realclient.NoReply:
			if !legacy {
				return 2, badInput("-replies none: every device replies (inline or async); a bot that never replies: -reply-rate is the chance it does, or run -device client-inline -scenarios burst -mode free")
			}
		default:
			return 2, badInput("unknown reply mode %q (inline, async, none)", r)
		}
		modes = append(modes, realclient.Reply(r))
	}
	var bufs []bool
	for _, b := range split(*buffers) {
		switch b {
		case "off", "on":
			bufs = append(bufs, b == "on")
		default:
			return 2, badInput("-buffer takes off, on; not %q", b)
		}
	}
	if len(modes) == 0 || len(bufs) == 0 {
		return 2, badInput("nothing to run: give -replies and -buffer")
	}
	var storeNames []string
	for _, s := range split(*storeList) {
		if _, err := stores.Lookup(s); err != nil {
			return 2, badInput("%v", err)
		}
		storeNames = append(storeNames, s)
	}
	if len(storeNames) == 0 {
		return 2, badInput("nothing to run: give -stores")
	}
	var names []string
	for _, m := range modes {
		for _, b := range bufs {
			n := "client-" + string(m)
			if b {
				n += "+buffer"
			}
			names = append(names, n)
		}
	}
	must := *mustPass
	if !given["must-pass"] && (legacy || !clientDefaultGated(names, storeNames)) {
		// -drop's driver has no protocol baseline (every message not
		// delivered cleanly is blamed, whatsmeow's own losses to a dropped
		// connection included): it gates only the rows -must-pass names.
		must = reports.NoGate
	}
	if !legacy {
		sc := clientScenario(*msgs, *contacts, *burst, *rate, given)
		if _, err := scenarios.Lookup(sc); err != nil {
			return 2, badInput("%v", err)
		}
		ra := clientRunArgs(names, storeNames, sc, *runs, *seed, must, *wide, *out)
		code, err := runCmd(ctx, ra, stdout, stderr)
		if code != 2 {
			// After the run: bad input stays a one-line error.
			fmt.Fprintf(stderr, "badmac client: a preset of %s run %s\n", self(), strings.Join(ra, " "))
		}
		return code, err
	}
	var log func(string)
	if *verbose {
		log = func(s string) { fmt.Fprintln(stderr, s) }
	}
	cfg := realclient.Config{Messages: 30, Contacts: 1, Burst: 4, ReplyRate: 1, Drop: *drop, Log: log}
	if given["messages"] {
		cfg.Messages = *msgs
	}
	if given["contacts"] {
		cfg.Contacts = *contacts
	}
	if given["burst"] {
		cfg.Burst = *burst
	}
	if given["reply-rate"] {
		cfg.ReplyRate = *rate
	}
	w := workloadRun{names: names, stores: storeNames, runs: *runs, seed: *seed, mustPass: must, cfg: cfg}
	return w.run(ctx, stdout, stderr, *wide)
}

// clientScenario is the scenario reply with the workload flags given as
// its parameters (scenarios/params.go).
func clientScenario(msgs, contacts, burst int, rate float64, given map[string]bool) string {
	sc := "reply"
	if given["messages"] {
		sc += fmt.Sprintf(":messages=%d", msgs)
	}
	if given["contacts"] {
		sc += fmt.Sprintf(":contacts=%d", contacts)
	}
	if given["burst"] {
		sc += fmt.Sprintf(":burst=%d", burst)
	}
	if given["reply-rate"] {
		sc += fmt.Sprintf(":reply=%v", rate)
	}
	return sc
}

// clientRunArgs is the run command `badmac client` equals without -drop:
// the devices on the stores, the scenario sc (reply, with the workload's
// parameters) in free mode (the +buffer devices run free only, and the
// client's goroutines ran freely here before it was a preset).
func clientRunArgs(names, storeNames []string, sc string, runs int, seed uint64, mustPass string, wide bool, out string) []string {
	args := []string{"-device", strings.Join(names, ","), "-stores", strings.Join(storeNames, ","), "-scenarios", sc,
		"-mode", string(harness.Free), "-schedules", fmt.Sprint(runs), "-seed", fmt.Sprint(seed), "-out", out}
	if mustPass != "" {
		args = append(args, "-must-pass", mustPass)
	}
	if wide {
		args = append(args, "-wide")
	}
	return args
}

// clientDefaultGated reports whether run's default gate holds a row of
// these devices and stores (defaultDeviceGate in the scenario reply): if
// not, the preset measures without a gate, as `badmac client` always did,
// rather than earning no verdict.
func clientDefaultGated(names, storeNames []string) bool {
	for _, n := range names {
		for _, s := range storeNames {
			if defaultDeviceGate(n, s, "reply") {
				return true
			}
		}
	}
	return false
}

// workloadRun is `badmac client -drop`: rows of realclient.Converse
// conversations, one per device and store.
type workloadRun struct {
	names, stores []string
	runs          int
	seed          uint64
	mustPass      string
	cfg           realclient.Config // the shape; Seed, Reply, Buffer, Store, Dir set per conversation
}

func (w workloadRun) run(ctx context.Context, stdout, stderr io.Writer, wide bool) (int, error) {
	dir, err := os.MkdirTemp("", "badmac-client-")
	if err != nil {
		return 2, fmt.Errorf("client: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	// The rows as run plans them, so that -must-pass is read by run's
	// gateRows.
	var rows []row
	var skipped strings.Builder
	for _, name := range w.names {
		for _, st := range w.stores {
			d, ok := realclient.ParseName(name)
			if !ok { // client-none: no device of that name replies never
				d = &realclient.Device{Reply: realclient.NoReply}
			}
			if d.Buffer && st != "sqlite" && st != "postgres" {
				fmt.Fprintf(&skipped, "skipped: %s/%s: the decrypted-event buffer needs sqlstore's transaction (stores sqlite, postgres)\n", name, st)
				continue
			}
			rows = append(rows, row{pair: scenarios.Pair{Scenario: scenarios.Scenario{Name: "workload"}, Variant: stores.Variant{Name: st}, Device: d},
				column: name, baseline: "none: every message not delivered cleanly is blamed (the workload has no protocol baseline)"})
		}
	}
	if len(rows) == 0 {
		return 2, badInput("nothing to run: the +buffer rows need -stores sqlite or postgres")
	}
	fmt.Fprint(stderr, skipped.String())
	if err := gateRows(rows, nil, deviceRun{mustPass: w.mustPass, mustGiven: w.mustPass != ""}); err != nil {
		return 2, err
	}
	rep := &reports.Report{Seed: w.seed, Mode: string(harness.Free), Schedules: w.runs, MustPass: w.mustPass}
	var extra []string
	for _, r := range rows {
		d := r.pair.Device.(*realclient.Device)
		var c harness.Counts
		var st realclient.ConvStats
		failed, first := 0, ""
		for i := 0; i < w.runs; i++ {
			cfg := w.cfg
			cfg.Seed, cfg.Reply, cfg.Buffer, cfg.Store, cfg.Dir = w.seed+uint64(i), d.Reply, d.Buffer, r.pair.Variant.Name, dir
			res, s, err := realclient.Converse(ctx, cfg)
			if err != nil {
				if cfg.Log != nil && res != nil {
					for _, l := range res.History {
						cfg.Log("server: " + l)
					}
				}
				return 2, fmt.Errorf("%s seed %d: %w", r.column, cfg.Seed, err)
			}
			c.Add(res.Counts())
			if res.Failed() {
				failed++
				if first == "" {
					first = fmt.Sprintf("seed %d: %s", cfg.Seed, res.Summary())
				}
			}
			st.RetriesIn, st.RetriesOut, st.Drops, st.Overlaps = st.RetriesIn+s.RetriesIn, st.RetriesOut+s.RetriesOut, st.Drops+s.Drops, st.Overlaps+s.Overlaps
		}
		rr := reports.CountsRow(c, w.runs, failed)
		rr.Discipline, rr.Store, rr.Scenario, rr.MustPass, rr.Baseline, rr.Summary = r.column, r.pair.Variant.Name, "workload", r.must, r.baseline, first
		rep.Rows = append(rep.Rows, rr)
		extra = append(extra, fmt.Sprintf("  %s/%s: retry receipts %d from the device, %d from the peers; %d connections dropped; %d handlers overlapped another",
			r.column, r.pair.Variant.Name, st.RetriesIn, st.RetriesOut, st.Drops, st.Overlaps))
	}
	code, err := writeReport(rep, stdout, false, wide, "", "", "")
	if err != nil {
		return code, err
	}
	cfg := w.cfg
	fmt.Fprintf(stdout, "workload (realclient.Converse): %d messages from %d contact(s) a conversation, bursts of at most %d, replies to %v of texts, connection drop chance %v; seeds %d..%d\n",
		cfg.Messages, cfg.Contacts, cfg.Burst, cfg.ReplyRate, cfg.Drop, w.seed, w.seed+uint64(w.runs)-1)
	for _, l := range extra {
		fmt.Fprintln(stdout, l)
	}
	if cfg.Burst == 1 && cfg.Drop == 0 {
		fmt.Fprintln(stdout, "-burst 1: one stanza in flight, the next only after the device settled: deterministic outcomes")
	} else {
		fmt.Fprintf(stdout, "the client's goroutines run freely: rerun, not replayed: %s client -runs %d -messages %d -contacts %d -burst %d -reply-rate %v -drop %v -seed %d -replies %s -buffer %s -stores %s\n",
			self(), w.runs, cfg.Messages, cfg.Contacts, cfg.Burst, cfg.ReplyRate, cfg.Drop, w.seed, replyList(w.names), bufferList(w.names), strings.Join(w.stores, ","))
	}
	return code, nil
}

// replyList and bufferList are -replies and -buffer as the device names
// say them, for the rerun line.
func replyList(names []string) string {
	var out []string
	for _, n := range names {
		r := strings.TrimSuffix(strings.TrimPrefix(n, "client-"), "+buffer")
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return strings.Join(out, ",")
}

func bufferList(names []string) string {
	var out []string
	for _, n := range names {
		b := "off"
		if strings.HasSuffix(n, "+buffer") {
			b = "on"
		}
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return strings.Join(out, ",")
}
