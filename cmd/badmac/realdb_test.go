package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores/sqlstores"
)

// needPostgres skips without a server, except in CI, which must run it.
func needPostgres(t *testing.T) {
	t.Helper()
	if os.Getenv(sqlstores.PostgresEnv) != "" {
		return
	}
	msg := sqlstores.PostgresEnv + " is unset; start a server with: eval \"$(scripts/postgres.sh)\""
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// The whole default suite on whatsmeow's sqlstore over real databases: every
// scenario has a row per (discipline, store), locked rows are never blamed.
func TestRealDatabasesSuite(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			if store == "postgres" {
				needPostgres(t)
			}
			code, out, errs := run(t, "run", "-stores", store, "-disciplines", "locked,concurrent",
				"-schedules", "2", "-shrink", "0", "-must-pass", "locked/"+store, "-out", t.TempDir())
			require.Equal(t, 0, code, out+errs)
			for _, sc := range scenarios.Default {
				for _, d := range []string{`locked \*`, "concurrent"} {
					re := regexp.MustCompile(`│\s+` + d + `\s+│\s+` + store + `\s+│\s+` + sc + `\s+│([^\n]*)`)
					m := re.FindStringSubmatch(out)
					require.NotNil(t, m, "no %s/%s/%s row in\n%s", d, store, sc, out)
					if d != "concurrent" {
						cells := strings.Split(m[1], "│")
						blamed := strings.TrimSpace(cells[len(cells)-3])
						require.Equal(t, "0", blamed, "locked/%s/%s blamed: %s", store, sc, m[0])
					}
				}
			}
			// concurrent over a real database still breaks sessions (DESIGN §4).
			require.Contains(t, out, "FAIL concurrent/"+store+"/")
		})
	}
}
