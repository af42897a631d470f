// Package testenv holds the conventions every badmac test shares: which
// tests are long sweeps, and what a test does when something it needs is not
// on the machine.
//
// Long sweeps (hundreds of schedules, soaks) run only when BADMAC_LONG=1;
// .ci/run sets it. The default `go test ./...` stays fast.
//
// A test whose prerequisite is missing (a PostgreSQL server, Node, the
// Baileys packages) skips with one line saying what to install, except
// under CI=true, where a skip would hide a test CI must run, so it fails.
//
// What can be set up is set up instead of skipped: Postgres starts a
// throwaway PostgreSQL cluster per test binary when $BADMAC_POSTGRES_DSN is
// unset and the server binaries are installed, and Baileys installs the
// Baileys adapter's pinned npm packages into a cache on first use. A
// TestMain of a package using Postgres ends in os.Exit(testenv.Main(m)).
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// LongEnv is the environment variable that turns on the long sweeps.
const LongEnv = "BADMAC_LONG"

// Long reports whether long sweeps are on (BADMAC_LONG=1).
func Long() bool { return os.Getenv(LongEnv) == "1" }

// CI reports whether the tests run under CI (CI=true), where a missing
// prerequisite is a failure, not a skip.
func CI() bool { return os.Getenv("CI") == "true" }

// NeedLong skips t unless long sweeps are on; why says what the test sweeps.
func NeedLong(t testing.TB, why string) {
	t.Helper()
	if !Long() {
		t.Skipf("long sweep (%s): set %s=1 to run it", why, LongEnv)
	}
}

// Missing is how a test reports a prerequisite that is not there: skipped
// with the one line msg (say what to install or start), failed under CI.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true and %s", msg)
	}
	t.Skip(msg)
}

// FirstDiff is where two runs' lines first part: "line N: A | B" (a line
// one side lacks is empty), or "none".
func FirstDiff(a, b []string) string {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: %q | %q", i+1, x, y)
		}
	}
	return "none"
}
