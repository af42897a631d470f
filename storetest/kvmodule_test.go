package storetest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/internal/testenv"
)

// TestKVModule runs the full default suite, as a store author's
// storetest.RunOpener does, on correct stores over Badger and bbolt
// (testdata/kvmodule, a module of its own with its own go.mod): no
// failures, every crash a SIGKILL of the store's process (an abandoned
// in-process instance kept its file lock and failed "reopen after a crash"
// before). Both refuse a second process on one directory, so replica and
// overlap are refused in one line each, never run and blamed.
func TestKVModule(t *testing.T) {
	testenv.NeedLong(t, "the full default suite on Badger and bbolt stores, about a minute each")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "test", "-count=1", "-v", ".")
	cmd.Dir = filepath.Join("testdata", "kvmodule")
	cmd.Env = os.Environ()
	for _, k := range []string{"BADMAC_REPLAY", "BADMAC_HTML", "BADMAC_SHRINK_BUDGET"} {
		cmd.Env = append(cmd.Env, k+"=")
	}
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(string(out), "dial tcp") {
		testenv.Missing(t, "the Badger and bbolt modules cannot be downloaded: run go mod download in storetest/testdata/kvmodule")
	}
	require.NoError(t, err, "%s", out)
	tests := splitTests(string(out))
	for _, name := range []string{"TestBadger", "TestBolt"} {
		body := tests[name]
		require.Contains(t, body, "--- PASS: "+name, "%s", body)
		require.Contains(t, body, "conformance: every method answered as whatsmeow expects")
		require.Contains(t, body, "storetest: scenario replica not run: your store did not open a second instance")
		for _, sc := range []string{"crash", "restart", "rollback", "combined"} {
			require.Regexp(t, `storetest: `+sc+` \(controlled interleavings, locked client\): \d+ schedules, \d+ messages, no failures`, body)
		}
	}
}
