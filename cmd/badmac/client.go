package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/realclient"
	"github.com/badmac/badmac/reports"
	"github.com/badmac/badmac/stores"
)

// clientCmd is `badmac client`: the reply workload through an unmodified
// whatsmeow Client on SQLite, connected to the loopback fake WhatsApp
// server, replying from its event handler (client-inline) or from a
// goroutine (client-async), with EnableDecryptedEventBuffer off and on.
// The server fixes what is sent and when; the client's goroutines run
// freely, so a seed is rerun, not replayed (except at -burst 1: one stanza
// in flight, which is deterministic).
func clientCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlags("client")
	runs := fs.Int("runs", 3, "conversations per row")
	msgs := fs.Int("messages", 30, "messages the contacts send per conversation")
	contacts := fs.Int("contacts", 1, "contacts (1..4)")
	burst := fs.Int("burst", 4, "most stanzas sent back to back before waiting for the device (1: one in flight, deterministic)")
	seed := fs.Uint64("seed", 1, "first seed")
	drop := fs.Float64("drop", 0, "chance the server drops the connection after a burst (whatsmeow reconnects)")
	rate := fs.Float64("reply-rate", 1, "share of texts the bot answers (the harness's reply scenario: 0.7)")
	replies := fs.String("replies", "inline,async", "how the bot replies: inline, async, none (comma-separated)")
	buffers := fs.String("buffer", "off,on", "EnableDecryptedEventBuffer: off, on (comma-separated)")
	storeList := fs.String("stores", "sqlite", "candidate stores (sqlite, postgres: whatsmeow's sqlstore for the whole device; any other variant: the device's four Signal stores, the rest in SQLite)")
	verbose := fs.Bool("v", false, "print the client's warnings on stderr")
	wide := fs.Bool("wide", false, "print every column (the default table fits 120 columns)")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, badInput("unexpected argument %q", fs.Arg(0))
	}
	if *runs < 1 || *runs > 1000 || *msgs < 1 || *msgs > 10000 || *contacts < 1 || *contacts > 4 || *burst < 1 || *burst > 100 {
		return 2, badInput("-runs must be 1..1000, -messages 1..10000, -contacts 1..4, -burst 1..100")
	}
	if !(*drop >= 0 && *drop <= 1) {
		return 2, badInput("-drop must be in [0, 1], not %v", *drop)
	}
	if !(*rate > 0 && *rate <= 1) {
		return 2, badInput("-reply-rate must be in (0, 1], not %v", *rate)
	}
	var modes []realclient.Reply
	for _, r := range split(*replies) {
		switch realclient.Reply(r) {
		case realclient.Inline, realclient.Async, realclient.NoReply:
			modes = append(modes, realclient.Reply(r))
		default:
			return 2, badInput("unknown reply mode %q (inline, async, none)", r)
		}
	}
	var bufs []bool
	for _, b := range split(*buffers) {
		switch b {
		case "off":
			bufs = append(bufs, false)
		case "on":
			bufs = append(bufs, true)
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
	dir, err := os.MkdirTemp("", "badmac-client-")
	if err != nil {
		return 2, fmt.Errorf("client: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	var log func(string)
	if *verbose {
		log = func(s string) { fmt.Fprintln(stderr, s) }
	}
	// The default table: the key columns in 120 (dup, wrong and the
	// failure classes in one cell); -wide: every column, boxed.
	compact := [][]string{{"", "", "", "", "", "", "", "retries", "failed"},
		{"client", "store", "msgs", "delivered", "recovered", "lost", "main failures", "in/out", "(95% CI)"}}
	t := tablewriter.NewTable(stdout, tablewriter.WithHeaderAutoFormat(tw.Off), tablewriter.WithRowAlignment(tw.AlignRight))
	t.Header("discipline", "store", "scenario", "runs", "msgs", "delivered", "recovered", "lost", "dup", "wrong",
		"BadMAC", "OldCounter", "NoSession", "StoreError", "other", "retry rcpts in/out", "drops", "handler overlaps", "failed (95% CI)")
	for _, mode := range modes {
		for _, buf := range bufs {
			for _, storeName := range storeNames {
				if buf && storeName != "sqlite" && storeName != "postgres" {
					continue // the buffer is sqlstore's transaction
				}
				name := "client-" + string(mode)
				if buf {
					name += "+buffer"
				}
				var c harness.Counts
				rin, rout, drops, overlaps := 0, 0, 0, 0
				for i := 0; i < *runs; i++ {
					cfg := realclient.Config{Seed: *seed + uint64(i), Messages: *msgs, Contacts: *contacts, Burst: *burst,
						Reply: mode, ReplyRate: *rate, Drop: *drop, Buffer: buf, Dir: dir, Log: log, Store: storeName}
					res, err := realclient.Converse(ctx, cfg)
					if err != nil && *verbose && res != nil {
						for _, l := range res.ServerLog {
							fmt.Fprintln(stderr, "server:", l)
						}
					}
					if err != nil {
						return 2, fmt.Errorf("%s seed %d: %w", name, cfg.Seed, err)
					}
					c.Add(res.Counts())
					rin += res.RetriesIn
					rout += res.RetriesOut
					drops += res.Drops
					overlaps += res.Overlaps
				}
				other := 0
				for k, n := range c.Failures {
					if k != endpoint.BadMAC && k != endpoint.OldCounter && k != endpoint.NoSession && k != endpoint.StoreError {
						other += n
					}
				}
				lo, hi := harness.Wilson(c.Blamed, c.Messages)
				rate := 0.0
				if c.Messages > 0 {
					rate = float64(c.Blamed) / float64(c.Messages)
				}
				if !*wide {
					main := reports.Row{BadMAC: c.Failures[endpoint.BadMAC], OldCounter: c.Failures[endpoint.OldCounter],
						NoSession: c.Failures[endpoint.NoSession], StoreError: c.Failures[endpoint.StoreError], OtherError: other}.MainFailures(20)
					for _, o := range []struct {
						name string
						n    int
					}{{"dup", c.Duplicates}, {"wrong", c.Wrong}} {
						if o.n > 0 {
							main = strings.TrimSuffix(fmt.Sprintf("%s %d %s", o.name, o.n, main), " -")
						}
					}
					compact = append(compact, []string{name, storeName, fmt.Sprint(c.Messages), fmt.Sprint(c.Delivered), fmt.Sprint(c.Recovered),
						fmt.Sprint(c.Lost), main, fmt.Sprintf("%d/%d", rin, rout), fmt.Sprintf("%.1f%% [%.1f, %.1f]", 100*rate, 100*lo, 100*hi)})
					continue
				}
				if err := t.Append(name, storeName, fmt.Sprintf("reply burst<=%d", *burst), fmt.Sprint(*runs), fmt.Sprint(c.Messages),
					fmt.Sprint(c.Delivered), fmt.Sprint(c.Recovered), fmt.Sprint(c.Lost), fmt.Sprint(c.Duplicates), fmt.Sprint(c.Wrong),
					fmt.Sprint(c.Failures[endpoint.BadMAC]), fmt.Sprint(c.Failures[endpoint.OldCounter]), fmt.Sprint(c.Failures[endpoint.NoSession]),
					fmt.Sprint(c.Failures[endpoint.StoreError]), fmt.Sprint(other), fmt.Sprintf("%d/%d", rin, rout), fmt.Sprint(drops), fmt.Sprint(overlaps),
					fmt.Sprintf("%.1f%% [%.1f, %.1f]", 100*rate, 100*lo, 100*hi)); err != nil {
					return 2, err
				}
			}
		}
	}
	if *wide {
		if err := t.Render(); err != nil {
			return 2, err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, r := range compact {
			fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
		}
		if err := tw.Flush(); err != nil {
			return 2, err
		}
	}
	fmt.Fprintf(stdout, "real whatsmeow client (unmodified), loopback fake server; scenario reply, burst<=%d; seeds %d..%d, %d messages from %d contact(s) each\n",
		*burst, *seed, *seed+uint64(*runs)-1, *msgs, *contacts)
	fmt.Fprintln(stdout, "msgs counts both directions (the contacts' messages and the bot's replies); failed = not delivered cleanly (no protocol baseline here)")
	fmt.Fprintln(stdout, "a measurement, not a gate: exit 0 whatever the rates (exit 2 on bad input or a run that could not finish)")
	if *burst == 1 {
		fmt.Fprintln(stdout, "-burst 1: one stanza in flight, the next only after the device settled: deterministic outcomes")
	} else {
		fmt.Fprintf(stdout, "the client's goroutines run freely: rerun, not replayed: %s client -runs %d -messages %d -contacts %d -burst %d -reply-rate %v -drop %v -seed %d -replies %s -buffer %s -stores %s\n",
			self(), *runs, *msgs, *contacts, *burst, *rate, *drop, *seed, *replies, *buffers, *storeList)
	}
	return 0, nil
}
