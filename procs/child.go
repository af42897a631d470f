package procs

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"

	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/stores/sqlstores"
)

// ChildMain is `badmac device`: the device under test as a child process on
// an existing database, speaking the device protocol (package devproto,
// docs/device-protocol.md "The whatsmeow child"): its hello, then one reply
// to each request on stdin until stdin closes. With -die-after N it kills
// itself with SIGKILL right after its Nth store write (no deferred
// function, no flush, no rollback runs). A request's StopAt step makes it
// answer Stopped and wait for the parent's SIGKILL (a kill at a random
// moment). Crypto randomness is seeded from -seed (and -incarnation), so a
// run replays. It returns the exit code.
func ChildMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("device", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	driver := fs.String("driver", "", "sqlite or postgres")
	dsn := fs.String("dsn", "", "SQLite file, or PostgreSQL server DSN")
	database := fs.String("database", "", "PostgreSQL database")
	jid := fs.String("jid", "", "device row JID")
	dieAfter := fs.Int("die-after", 0, "SIGKILL self right after this many store writes (0: never)")
	seed := fs.Uint64("seed", 0, "seed for crypto/rand")
	inc := fs.Int("incarnation", 0, "restart count, mixed into the seed")
	txn := fs.Bool("txn", false, "decrypt inside the store's transaction with whatsmeow's decrypted-event buffer")
	gated := fs.Bool("gates", false, "every store call of a decrypt or encrypt task waits at a gate for the parent's step; tasks run concurrently (docs/device-protocol.md)")
	writeBehind := fs.Int("write-behind", 0, "a non-durable setting: session writes wait in memory and reach the database every N writes and at exit (0: off)")
	fail := func(err error) int {
		fmt.Fprintf(stderr, "badmac device: %v\n", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return fail(err)
	}
	j, err := types.ParseJID(*jid)
	if err != nil {
		return fail(fmt.Errorf("-jid: %w", err))
	}
	setRandom(*seed, byte(*inc)+0x40)
	st, err := sqlstores.Attach(ctx, sqlstores.Locator{Driver: *driver, DSN: *dsn, Database: *database, JID: j})
	if err != nil {
		return fail(err)
	}
	die := func() {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	d, err := NewHandler(ctx, st, *txn, *dieAfter, die)
	if err != nil {
		return fail(err)
	}
	if *gated {
		d.Gated()
	}
	flush := func(context.Context) error { return nil }
	if *writeBehind > 0 {
		flush = d.WriteBehind(*writeBehind)
	}
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(devproto.Hello{V: 1, Hello: devproto.Version, Device: ChildName, Variant: helloVariant(*driver, *txn, *writeBehind, *gated)}); err != nil {
		return fail(err)
	}
	// At a request's StopAt step: say so, then wait, mid-request, for the
	// parent's SIGKILL. The parent writes nothing more, so stdin only ends
	// if the parent is gone.
	var cur int // the request being answered
	d.OnStop(func(step, writes int) {
		_ = enc.Encode(devproto.Reply{V: 1, ID: cur, OK: true, Stopped: true, Step: step, Writes: writes, Events: []devproto.Event{}})
		_, _ = io.Copy(io.Discard, stdin)
		fmt.Fprintf(stderr, "badmac device: stopped at step %d and the parent went away\n", step)
		os.Exit(3)
	})
	for in.Scan() {
		req, err := devproto.ParseRequest(in.Bytes())
		var rep devproto.Reply
		if err != nil {
			if req.ID <= 0 {
				return fail(fmt.Errorf("request: %w", err)) // no id to answer
			}
			rep = devproto.Reply{V: 1, ID: req.ID, Err: "request: " + err.Error(), Events: []devproto.Event{}}
		} else {
			cur = req.ID
			rep = d.Serve(ctx, req)
		}
		if err := enc.Encode(rep); err != nil {
			return fail(err)
		}
	}
	if err := flush(ctx); err != nil {
		return fail(fmt.Errorf("write-behind flush at exit: %w", err))
	}
	return 0
}

// helloVariant is the child's variant in its hello: its database driver,
// "+txn" with the decrypted-event buffer, "+write-behind=N" in the
// non-durable setting, "+gates" with gates.
func helloVariant(driver string, txn bool, writeBehind int, gated bool) string {
	v := driver
	if txn {
		v += "+txn"
	}
	if writeBehind > 0 {
		v += fmt.Sprintf("+write-behind=%d", writeBehind)
	}
	if gated {
		v += "+gates"
	}
	return v
}
