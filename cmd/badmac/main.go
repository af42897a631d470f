// Command badmac runs schedules of the Signal send and receive paths against
// key stores and prints failure rates per (discipline, store, scenario).
//
//	badmac                 run the default suite on the in-memory stores
//	badmac run [flags]     choose disciplines, stores, scenarios, seed, mode
//	badmac replay FILE     replay a saved schedule and print its history
//	badmac shrink FILE     minimise a failing schedule
//	badmac merge FILES     combine the reports of sharded runs
//	badmac bench           throughput against raw libsignal, time to first failure
//	badmac procs           a preset of run on real child processes with gates (procs+gates)
//	badmac list            every store, scenario, discipline and device, one line each
//	badmac help            the commands (also: badmac -h; CMD -h for a command's flags)
//
// Exit codes: 0 every must-pass pair passed, 1 a must-pass pair was blamed
// for a failure, 2 bad input or environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/badmac/badmac/devices"
	"github.com/badmac/badmac/devices/baileys"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
	_ "github.com/badmac/badmac/stores/sqlstores"
)

func main() {
	os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is bad input: exit 2 with one line.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }

func badInput(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// Main runs the CLI and returns its exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	code, err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, errHelp) {
		return 0 // help was asked for and printed
	}
	if err != nil {
		fmt.Fprintf(stderr, "badmac: %v\n", err)
		var u usageError
		if errors.As(err, &u) || code == 0 {
			return 2
		}
	}
	return code
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	cmd := "run"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return 0, nil
	}
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if ok, code, err := deviceDispatch(ctx, cmd, args, stdout, stderr); ok { // devices in other processes (device.go)
		return code, err
	}
	switch cmd {
	case "run":
		return runCmd(ctx, args, stdout, stderr)
	case "procs":
		return procsCmd(ctx, args, stdout, stderr)
	case "client":
		return clientCmd(ctx, args, stdout, stderr)
	case "replay":
		return replayCmd(ctx, args, stdout)
	case "device": // hidden: the device under test as a child process (package procs)
		return procs.ChildMain(ctx, args, os.Stdin, stdout, stderr), nil
	case "shrink":
		return shrinkCmd(ctx, args, stdout, stderr)
	case "bench":
		return benchCmd(ctx, args, stdout)
	case "list":
		if len(args) > 0 {
			if isHelp(args[0]) {
				fmt.Fprintln(stdout, synopsis["list"])
				return 0, nil
			}
			return 2, badInput("list takes no arguments")
		}
		printLists(stdout)
		return 0, nil
	case "merge":
		return mergeCmd(ctx, args, stdout)
	case "help":
		if len(args) == 1 && synopsis[args[0]] != "" {
			// badmac help CMD is CMD -h.
			return dispatch(ctx, []string{args[0], "-h"}, stdout, stderr)
		}
		if len(args) == 0 || (len(args) == 1 && args[0] == "help") {
			fmt.Fprint(stdout, usage)
			return 0, nil
		}
		// An unknown topic is bad input: printing the general help and
		// exiting 0 hid a typo from a script.
		return 2, badInput("unknown help topic %q (topics: %s)", strings.Join(args, " "), commandNames)
	}
	return 2, badInput("unknown command %q (commands: %s; badmac -h explains them)", cmd, commandNames)
}

// commandNames are the commands, for errors naming them.
const commandNames = "run, replay, shrink, merge, bench, procs, client, list, help"

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// errHelp is returned by a command whose -h printed its help: exit 0.
var errHelp = errors.New("help printed")

// synopsis is each command's first help line.
var synopsis = map[string]string{
	"run":    "usage: badmac [run] [flags]\n\nRun schedules of every (discipline, store, scenario) and print the failure table.\nExit 0: every must-pass pair passed; 1: a must-pass pair was blamed; 2: bad input.",
	"replay": "usage: badmac replay FILE\n\nReplay a saved schedule (from badmac run -out, or from storetest), print its history\nand each message's outcome. Exit 1 when it fails, 0 when it passes.\nA schedule storetest recorded against your own store (store yours) replays here on\nthe reference store; to replay it on yours, run the go test command in the file.",
	"shrink": "usage: badmac shrink FILE [-o OUT] [-budget N]\n\nDelete ops from a failing schedule while it still fails the same way.\nExit 1: it fails (shrunk schedule printed or written), 0: it passes.",
	"bench":  "usage: badmac bench [flags]\n\nMessages per second through the harness against raw libsignal, schedules per second,\nand the time to the first failure of each broken pair.",
	"procs":  "usage: badmac procs [flags]\n\nA preset of badmac run -device procs+gates: the device as real child processes on sqlite/postgres,\nevery store call of a request at a gate: a SIGKILL inside a request (scenario crash), two processes\non one database with requests in flight at once (scenario overlap); run's table, gate and exit codes,\nand the run command on stderr.",
	"client": "usage: badmac client [flags]\n\nA preset of badmac run -device client-inline,client-async,client-inline+buffer,client-async+buffer\n-stores sqlite -scenarios reply -mode free -schedules 3: the real whatsmeow Client on a loopback\nfake WhatsApp server; run's table, gate and exit codes. The workload flags (-messages, -contacts,\n-burst, -reply-rate, -drop) are the scenario's parameters: -messages 30 -burst 4 runs -scenarios reply:messages=30:burst=4.",
	"merge":  "usage: badmac merge SHARD.json…\n\nCombine the JSON reports of badmac run -shard K/N (all N shards of one run) into one\nreport, table and verdict, the same as the unsharded run with the same seed.",
	"list":   "usage: badmac list\n\nEvery store, scenario and discipline, one line each, and every device with its stores.",
}

// printLists writes every store, scenario and discipline with one line
// each, then every device with the stores it runs on.
func printLists(w io.Writer) {
	printSections(w, true, true, true)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "devices (run -device) and their default stores:")
	for _, d := range deviceStores() {
		fmt.Fprintf(tw, "  %s\t%s\n", d[0], d[1])
	}
	tw.Flush()
	fmt.Fprintln(w, "  (badmac run -h describes each device; a socket device also takes MODULE#FUNCTION[+cache], a bot's auth state)")
}

// deviceStores is every device name with its default stores (what
// devices.Open's Opened.Stores holds), the Baileys ones without starting
// Node: the adapter's key-store variants, the socket's auth states.
func deviceStores() [][2]string {
	var out [][2]string
	for _, n := range []string{"model", "client-inline", "client-async", "client-inline+buffer", "client-async+buffer", "procs", "procs-writebehind", "procs+gates", "procs-writebehind+gates"} {
		od, err := devices.Open(context.Background(), n, devices.Options{Exe: "badmac"})
		if err != nil {
			out = append(out, [2]string{n, err.Error()})
			continue
		}
		od.Close()
		out = append(out, [2]string{n, strings.Join(od.Stores, ", ")})
	}
	for _, v := range baileys.Versions {
		out = append(out, [2]string{baileys.SocketPrefix + v, strings.Join(baileys.SocketStores, ", ")})
	}
	for _, v := range baileys.Versions {
		out = append(out, [2]string{"baileys@" + v, strings.Join(baileys.Variants, ", ") + " (the adapter's key-store variants)"})
	}
	return out
}

// printSections writes the stores, scenarios and disciplines sections asked for.
func printSections(w io.Writer, withStores, withScenarios, withDisciplines bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	if withStores {
		fmt.Fprintln(tw, "stores (-stores):")
		for _, v := range stores.Variants() {
			fmt.Fprintf(tw, "  %s\t%s\n", v.Name, v.Doc)
		}
	}
	if withScenarios {
		printScenarios(tw)
	}
	if withDisciplines {
		fmt.Fprintln(tw, "disciplines (-disciplines):")
		for _, d := range harness.Disciplines {
			fmt.Fprintf(tw, "  %s\t%s\n", d, disciplineDoc[d])
		}
	}
}

func printScenarios(tw io.Writer) {
	fmt.Fprintln(tw, "scenarios (-scenarios):")
	def := map[string]bool{}
	for _, n := range scenarios.Default {
		def[n] = true
	}
	for _, sc := range scenarios.All() {
		mark := ""
		if def[sc.Name] {
			mark = " (default)"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", sc.Name, sc.Doc, mark)
	}
}

// disciplineDoc says in one line what each client discipline does
// (docs/design.md §4).
var disciplineDoc = map[harness.Discipline]string{
	harness.Concurrent: "deliveries and replies run at once, nothing held across load→decrypt→store",
	harness.Whatsmeow:  "whatsmeow today: receives one at a time, sends and retry handling alongside them",
	harness.Locked:     "one lock per Signal address across load→decrypt/encrypt→store (the correct client)",
	harness.Txn:        "whatsmeow's decrypted-event buffer: each decrypt in a store transaction (stores with DoDecryptionTxn)",
}

const usage = `badmac: chaos tests for WhatsApp Signal key stores

  badmac [run] [flags]   run schedules and print the failure table
  badmac run -device NAME[,NAME…] [-stores …] [-scenarios …]
                         the same scenarios on other devices, in the same table: model,
                         baileys@6.17.16 / baileys@7.0.0-rc14 (the real Baileys key stores in a
                         Node process, docs/device-protocol.md), … (badmac run -h lists them)
  badmac replay FILE     replay a saved schedule, print its history and outcome
  badmac shrink FILE [-o OUT] [-budget N] [-time D] [-workers N]
                         minimise a failing schedule (exit 1: it fails, 0: it passes)
  badmac merge A.json B.json …
                         combine the -json reports of badmac run -shard K/N
                         into the unsharded run's report, table and exit code
  badmac bench [flags]   messages/s through the harness against raw libsignal,
                         schedules/s, time to the first failure per broken pair
  badmac procs [flags]   a preset of badmac run on real child processes (procs+gates):
                         SIGKILL inside a request, two replicas at once
  badmac client [flags]  a preset of badmac run on the real whatsmeow Client devices
                         (client-inline, client-async, +buffer) in free mode
  badmac list            every store, scenario, discipline and device, one line each
  badmac help [CMD]      this text, or CMD's flags (same as badmac CMD -h)

Exit codes: 0 pass, 1 a failure that must not happen, 2 bad input.
Run 'badmac CMD -h' for a command's flags.
`

// newFlags returns a flag set whose errors come back as one-line errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses a command's flags. On -h it prints the command's help
// and returns errHelp (exit 0); counts given as negative numbers are
// refused (every number flag of badmac counts something).
// parseFlagsAndFiles parses flags that may come before, between and after
// file arguments (badmac shrink FILE -o OUT, badmac merge a.json b.json
// -json) and returns the files in order.
func parseFlagsAndFiles(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var files []string
	for {
		if _, err := parseFlags(fs, args, stdout); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return files, nil
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs, stdout)
			return true, errHelp
		}
		return false, badInput("%s: %v", fs.Name(), err)
	}
	var bad error
	fs.Visit(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok || bad != nil {
			return
		}
		switch v := g.Get().(type) {
		case int:
			if v < 0 {
				bad = badInput("-%s must not be negative, got %d", f.Name, v)
			}
		case int64:
			if v < 0 {
				bad = badInput("-%s must not be negative, got %d", f.Name, v)
			}
		}
	})
	return false, bad
}

// printHelp is a command's help: its synopsis, its flags, and for flags
// naming stores, scenarios or disciplines, every name with one line.
func printHelp(fs *flag.FlagSet, w io.Writer) {
	if syn := synopsis[fs.Name()]; syn != "" {
		fmt.Fprintf(w, "%s\n", syn)
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	// The lists of names, only for the flags this command has: client -h
	// once listed "scenarios (-scenarios):", a flag client refuses.
	has := func(name string) bool { return fs.Lookup(name) != nil }
	if has("stores") || has("scenarios") || has("disciplines") {
		fmt.Fprintln(w)
		printSections(w, has("stores"), has("scenarios"), has("disciplines"))
	}
}
