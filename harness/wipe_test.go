package harness

import (
	"context"
	"strings"
	"testing"

	"github.com/badmac/badmac/stores"
)

// wiped is a file store whose data directory is gone after a crash (a
// volume not mounted, a container without its volume: the seed's fourth
// cause).
type wiped struct {
	stores.Storage
}

func (w wiped) Crash(string)       { w.Storage.(stores.Snapshotter).Restore(map[string][]byte{}) }
func (w wiped) PendingWrites() int { return w.Storage.(stores.Crasher).PendingWrites() }
func (w wiped) LoadCreds(ctx context.Context) ([]byte, error) {
	return w.Storage.(stores.CredsStore).LoadCreds(ctx)
}
func (w wiped) SaveCreds(ctx context.Context, b []byte) error {
	return w.Storage.(stores.CredsStore).SaveCreds(ctx, b)
}

// TestMissingDataDirectory: Baileys' behaviour (files) comes back with
// fresh credentials, silently; the correct one (files-atomic) refuses to
// start. Both are reported.
func TestMissingDataDirectory(t *testing.T) {
	for _, name := range []string{"files", "files-atomic"} {
		base := stores.MustLookup(name)
		v := stores.Variant{Name: name + "-wiped", Open: func(ctx context.Context) (stores.Storage, error) {
			st, err := base.Open(ctx)
			return wiped{st}, err
		}}
		s, err := Parse(strings.NewReader(strings.Replace(crashSchedule, "STORE", v.Name, 1)))
		if err != nil {
			t.Fatal(err)
		}
		_, res, err := Execute(context.Background(), s, v, Controlled, Ops(s.Ops))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s  sig %s", v.Name, res.Summary(), res.Signature())
		switch name {
		case "files":
			if !res.RegeneratedCreds || res.StartRefused || res.Signature() != "RegeneratedCreds" {
				t.Errorf("files: want silently regenerated credentials")
			}
		case "files-atomic":
			if !res.StartRefused || res.RegeneratedCreds || res.Signature() != "StartRefused" {
				t.Errorf("files-atomic: want a refused start")
			}
		}
	}
}
