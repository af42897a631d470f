// Command badmac runs schedules of the Signal send and receive paths against
// key stores and prints failure rates per (discipline, store, scenario).
//
//	badmac                 run the default suite on the in-memory stores
//	badmac run [flags]     choose disciplines, stores, scenarios, seed, mode
//	badmac replay FILE     replay a saved schedule and print its history
//	badmac shrink FILE     minimise a failing schedule
//	badmac bench           throughput against raw libsignal, time to first failure
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

	"github.com/badmac/badmac/procs"
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
	case "replay":
		return replayCmd(ctx, args, stdout)
	case "device": // hidden: the device under test as a child process (package procs)
		return procs.ChildMain(ctx, args, os.Stdin, stdout, stderr), nil
	case "shrink":
		return shrinkCmd(ctx, args, stdout)
	case "bench":
		return benchCmd(ctx, args, stdout)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0, nil
	}
	return 2, badInput("unknown command %q (commands: run, replay, shrink, bench, procs, help)", cmd)
}

const usage = `badmac: chaos tests for WhatsApp Signal key stores

  badmac [run] [flags]   run schedules and print the failure table
  badmac run -device baileys@6.17.16[,baileys@7.0.0-rc14] [-variants …] [-scenarios …]
                         the real Baileys key stores in a Node process (docs/device-protocol.md)
  badmac replay FILE     replay a saved schedule, print its history and outcome
  badmac shrink FILE [-o OUT] [-budget N]
                         minimise a failing schedule (exit 1: it fails, 0: it passes)
  badmac bench [flags]   messages/s through the harness against raw libsignal,
                         schedules/s, time to the first failure per broken pair
  badmac procs [flags]   the device as real child processes on sqlite/postgres:
                         SIGKILL at write points and random moments, two replicas at once
  badmac help            this text

Run 'badmac run -h' for the run flags.
`

// newFlags returns a flag set whose errors come back as one-line errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return true, nil
		}
		return false, badInput("%v", err)
	}
	return false, nil
}
