package storetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/stores"
)

// import storetest alone compiles none of the real client: not realclient,
// not the loopback server, not whatsmeow's Client package; importing
// storetest/client brings them (checked the same way, so the first half
// cannot pass by listing nothing).
func TestImportsNoRealClient(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	deps := func(pkg string) map[string]bool {
		out, err := exec.Command(goBin, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		m := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			m[p] = true
		}
		return m
	}
	client := []string{"github.com/badmac/badmac/realclient", "github.com/badmac/badmac/fakeserver/waweb", "go.mau.fi/whatsmeow"}
	alone, with := deps("github.com/badmac/badmac/storetest"), deps("github.com/badmac/badmac/storetest/client")
	for _, p := range client {
		if alone[p] {
			t.Errorf("import storetest compiles %s", p)
		}
		if !with[p] {
			t.Errorf("storetest/client does not bring %s", p)
		}
	}
}

// Options.Client in a test binary without storetest/client fails, saying
// which import to add; it never passes on a client that did not run. (This
// binary's external tests import storetest/client, so the opener is put
// aside for the test.)
func TestClientNotImportedFails(t *testing.T) {
	saved := clientOpener
	defer func() { clientOpener = saved }()
	clientOpener = nil
	reference := func() (stores.Set, error) {
		st, err := stores.MustLookup("reference").Open(t.Context())
		if err != nil {
			return stores.Set{}, err
		}
		return st.Instance(t.Context())
	}
	rec := &recordTB{}
	Check(rec, reference,
		Options{Client: true, Scenarios: []string{"reply"}, Schedules: 1, FreeSchedules: -1, SkipConformance: true})
	if !rec.failed || !strings.Contains(rec.errs, `import _ "github.com/badmac/badmac/storetest/client"`) {
		t.Fatalf("failed %v, errors:\n%s", rec.failed, rec.errs)
	}

	// So does replaying a schedule the real client recorded.
	path := filepath.Join(t.TempDir(), "client.txt")
	require.NoError(t, os.WriteFile(path, []byte("badmac schedule v1\ndevice client-inline\nseed 1\nscenario reply\ndiscipline whatsmeow\nstore "+StoreName+"\ncontacts alice:1\nops\n"), 0o644))
	t.Setenv(ReplayEnv, path)
	rec = &recordTB{}
	Check(rec, reference, Options{SkipConformance: true})
	want := path + ` was recorded on the real client; this test binary does not include it: add  import _ "github.com/badmac/badmac/storetest/client"`
	if !rec.failed || !strings.Contains(rec.errs, want) {
		t.Fatalf("failed %v, errors:\n%s", rec.failed, rec.errs)
	}
}

// recordTB keeps failures instead of failing (an internal test's TB).
type recordTB struct {
	failed bool
	errs   string
}

func (r *recordTB) Helper()                   {}
func (r *recordTB) Name() string              { return "TestClientNotImportedFails" }
func (r *recordTB) Logf(string, ...any)       {}
func (r *recordTB) Errorf(f string, a ...any) { r.failed = true; r.errs += fmt.Sprintf(f, a...) + "\n" }
func (r *recordTB) Fatalf(f string, a ...any) { r.Errorf(f, a...) }
