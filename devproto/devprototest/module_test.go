package devprototest_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/badmac/badmac/internal/testenv"
)

// TestUserModule is the suite as a device author meets it: a module of
// their own (testdata/devicemodule, badmac replaced by this checkout),
// tested by `go test` there. The correct device passes; the one whose
// hello names another protocol version fails, saying so.
func TestUserModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests a separate module")
	}
	mod, goBin, env := testenv.UserModule(t, filepath.Join("testdata", "devicemodule"), "example.com/mydevice")
	cmd := exec.Command(goBin, "test", "-count=1", "-v", ".")
	cmd.Dir, cmd.Env = mod, env
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the broken device must fail the module's tests:\n%s", out)
	}
	for _, want := range []string{"--- PASS: TestGood", "--- FAIL: TestWrongVersion", "hello line: want v 1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("module's go test: no %q in:\n%s", want, out)
		}
	}
}
