package procs_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/devproto/devprototest"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/stores/sqlstores"
)

// The whatsmeow child (`badmac device`) conforms to the device protocol:
// the suite beside devproto, on each database it runs on. Its state is
// the database, so a load after a SIGKILL must keep what was saved.
// With -gates its tasks stop at every store call and the suite steps them.
func TestConformanceSQLite(t *testing.T)      { testConformance(t, "sqlite", false) }
func TestConformancePostgres(t *testing.T)    { testConformance(t, "postgres", false) }
func TestConformanceGatesSQLite(t *testing.T) { testConformance(t, "sqlite", true) }

func testConformance(t *testing.T, name string, gates bool) {
	devprototest.TestDevice(t, nil, devprototest.Options{Start: childStarter(t, name, 0, gates), Durable: true})
}

// The other direction: the child in its non-durable setting (session
// writes wait in memory, -write-behind) loses the session saved before the
// kill, and the suite says so.
func TestConformanceCatchesWriteBehind(t *testing.T) {
	failures := devprototest.Failures(t, nil, devprototest.Options{Start: childStarter(t, "sqlite", 100, false), Durable: true})
	if !strings.Contains(strings.Join(failures, "\n"), "decrypt m3") {
		t.Fatalf("the write-behind child passed the load-after-a-kill check; failures: %q", failures)
	}
	t.Logf("reported: %s", failures[0])
}

// childStarter starts the child on a fresh database of store name (with
// gates when gates).
func childStarter(t *testing.T, name string, writeBehind int, gates bool) func(context.Context, string, int) (*devproto.Conn, error) {
	t.Helper()
	st, err := needStore(t, name).Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	loc, ok := sqlstores.Locate(st)
	if !ok {
		t.Fatalf("%s storage cannot be located", name)
	}
	c := procs.Child{Exe: os.Args[0], Env: append(os.Environ(), "BADMAC_PROCS_CHILD=1"), Loc: loc, Seed: 5, WriteBehind: writeBehind, Gates: gates}
	return func(ctx context.Context, _ string, inc int) (*devproto.Conn, error) {
		argv := c.Argv(inc, 0)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = c.Env
		return devproto.StartCmd(ctx, cmd, 0)
	}
}
