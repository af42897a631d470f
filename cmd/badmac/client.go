package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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
// printed on stderr after the run). The table, the gate and the replay
// lines are run's.
//
// The workload flags -messages, -contacts, -burst, -reply-rate and -drop
// are the scenario's parameters (scenarios/params.go): -messages 30
// -burst 4 -drop 0.2 runs the scenario reply:messages=30:burst=4:drop=0.2,
// which the schedules and their replay files name.
func clientCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlags("client")
	runs := fs.Int("runs", 3, "conversations per row (run's -schedules)")
	seed := fs.Uint64("seed", 1, "first seed (run's -seed)")
	replies := fs.String("replies", "inline,async", "how the bot replies: inline, async (the devices client-inline, client-async)")
	buffers := fs.String("buffer", "off,on", "EnableDecryptedEventBuffer: off, on (on: the devices …+buffer, stores sqlite and postgres; comma-separated)")
	storeList := fs.String("stores", "sqlite", "candidate stores (sqlite, postgres: whatsmeow's sqlstore for the whole device; any other variant: the device's four Signal stores, the rest in SQLite)")
	mustPass := fs.String("must-pass", "", "run's -must-pass: DEVICE/STORE rows that must pass, or none (default: run's, client-inline on reference and sqlite, when in the run; else none)")
	wide := fs.Bool("wide", false, "print every column (the default table fits 120 columns)")
	out := fs.String("out", "badmac-failures", "directory for failing schedules (replay files; run's -out)")
	// The workload: the scenario reply's parameters (scenarios/params.go).
	var params []string
	param := func(key string) func(string) error {
		return func(v string) error {
			params = append(params, key+"="+v)
			return nil
		}
	}
	fs.Func("messages", "workload: messages the contacts send per conversation (the scenario's parameter messages=N; default: the scenario reply's, 8)", param("messages"))
	fs.Func("contacts", "workload: contacts, 1..4 (the parameter contacts=N; default 1)", param("contacts"))
	fs.Func("burst", "workload: the contacts send in bursts of at most this many, the next once the last is delivered and answered (the parameter burst=K; 1: one message at a time)", param("burst"))
	fs.Func("reply-rate", "workload: the chance the bot replies to a message (the parameter reply=P; default: the scenario reply's, 0.7)", param("reply"))
	fs.Func("drop", "workload: the chance the server drops the connection after a burst (the parameter drop=P; whatsmeow reconnects, the server redelivers what was not acknowledged)", param("drop"))
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *runs < 1 || *runs > 1000 {
		return 2, badInput("-runs must be 1..1000")
	}
	// The parameters, in the flags' order; Lookup checks them and names
	// the scenario canonically.
	scName := strings.Join(append([]string{"reply"}, params...), ":")
	sc, err := scenarios.Lookup(scName)
	if err != nil {
		return 2, badInput("%v", err)
	}
	var names []string
	for _, r := range split(*replies) {
		switch realclient.Reply(r) {
		case realclient.Inline, realclient.Async:
		case realclient.NoReply:
			return 2, badInput("-replies none: every device replies (inline or async); a bot that replies less: -reply-rate, or run -device client-inline -scenarios burst -mode free")
		default:
			return 2, badInput("unknown reply mode %q (inline, async)", r)
		}
		for _, b := range split(*buffers) {
			switch b {
			case "off":
				names = append(names, "client-"+r)
			case "on":
				names = append(names, "client-"+r+"+buffer")
			default:
				return 2, badInput("-buffer takes off, on; not %q", b)
			}
		}
	}
	if len(names) == 0 {
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
	must := *mustPass
	if !given["must-pass"] && (given["drop"] || !clientDefaultGated(names, storeNames)) {
		// A drop while the bot's reply is being sent fails SendMessage
		// (the reply is lost; the bot does not send it again): the
		// client's own loss, free mode's only (the serial baseline drops
		// between handlers, realclient/drop.go), which the judge would
		// blame on the pair. With -drop the preset gates only the rows
		// -must-pass names.
		must = reports.NoGate
	}
	ra := clientRunArgs(names, storeNames, sc.Name, *runs, *seed, must, *wide, *out)
	code, err := runCmd(ctx, ra, stdout, stderr)
	if code != 2 {
		// After the run: bad input stays a one-line error.
		fmt.Fprintf(stderr, "badmac client: a preset of %s run %s\n", self(), strings.Join(ra, " "))
	}
	return code, err
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
