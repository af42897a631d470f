package procs_test

import (
	"context"
	"os"
	"testing"

	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/stores"
	"github.com/badmac/badmac/stores/sqlstores"
)

// The test binary doubles as the child: `badmac device` is procs.ChildMain.
func TestMain(m *testing.M) {
	if os.Getenv("BADMAC_PROCS_CHILD") == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "device" { // started as badmac's subcommand
			args = args[1:]
		}
		os.Exit(procs.ChildMain(context.Background(), args, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(testenv.Main(m, sqlstores.Shutdown))
}

func needStore(t *testing.T, name string) stores.Variant {
	t.Helper()
	if name == "postgres" {
		testenv.PostgresDSN(t) // $BADMAC_POSTGRES_DSN, or a cluster of this binary's
	}
	return stores.MustLookup(name)
}
