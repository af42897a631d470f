package baileys

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/badmac/badmac/devices/godevice"
	"github.com/badmac/badmac/devproto"
)

// TestMain lets the test binary be the Go device (the protocol's second
// implementation) when the conformance test starts it as a child.
func TestMain(m *testing.M) {
	if os.Getenv("BADMAC_GODEVICE") == "1" {
		if err := godevice.Serve(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString("godevice: " + err.Error() + "\n")
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// impl is one implementation of the device protocol.
type impl struct {
	name    string
	opt     Options
	version string
	serial  string // a variant that delivers everything when run one task at a time
}

// impls returns the Go device and, when installed, the Baileys adapter at
// both versions. Without node_modules the Baileys ones are skipped locally
// and fail under CI=true (.ci/run installs them).
func impls(t *testing.T) []impl {
	t.Setenv("BADMAC_GODEVICE", "1") // inherited by the Go device child only; the adapter ignores it
	out := []impl{{name: godevice.Name, opt: Options{Argv: []string{os.Args[0]}, BaselineVariant: "concurrent"}, serial: "concurrent"}}
	if _, err := AdapterDir(); err != nil {
		needAdapter(t, err)
		return out
	}
	for _, v := range Versions {
		out = append(out, impl{name: "baileys@" + v, version: v, serial: "locked"})
	}
	return out
}

func needAdapter(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and the Baileys adapter is not usable: %v", err)
	}
	if errors.Is(err, ErrNotInstalled) {
		t.Logf("skipping the Baileys side: %v", err)
		return
	}
	t.Fatal(err)
}

// One conformance test for every implementation of the protocol: the
// requests every device must answer the same way, then a whole generated
// schedule that must deliver everything on a variant that is correct one
// task at a time, and replay to the same history.
func TestConformance(t *testing.T) {
	ctx := context.Background()
	for _, im := range impls(t) {
		t.Run(im.name, func(t *testing.T) {
			rn, err := NewRunner(ctx, im.version, im.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer rn.Close()
			c := rn.conn
			call := func(req devproto.Request) devproto.Reply {
				t.Helper()
				rep, err := c.Call(ctx, req)
				if err != nil {
					t.Fatalf("%s: %v", req.Op, err)
				}
				return rep
			}
			if rep := call(devproto.Request{Op: devproto.OpReset, Dir: t.TempDir(), Variant: "no-such-variant", Seed: "1"}); rep.OK {
				t.Errorf("reset accepted an unknown variant")
			}
			if rep := call(devproto.Request{Op: devproto.OpState}); rep.OK {
				t.Errorf("state answered before provisioning")
			}
			call(devproto.Request{Op: devproto.OpReset, Dir: t.TempDir(), Variant: im.serial, Seed: "7"})
			prov := call(devproto.Request{Op: devproto.OpProvision, PreKeys: 5})
			if !prov.OK || len(prov.PreKeys) != 5 {
				t.Fatalf("provision: ok=%v err=%q, %d prekeys, want 5", prov.OK, prov.Err, len(prov.PreKeys))
			}
			if rep := call(devproto.Request{Op: devproto.OpStep, Gate: "g999"}); rep.OK || rep.Err == "" {
				t.Errorf("step of a gate that is not parked: ok=%v err=%q", rep.OK, rep.Err)
			}
			st := call(devproto.Request{Op: devproto.OpState})
			if !st.OK || string(st.Creds.Identity) != string(prov.Creds.Identity) || st.Creds.Reg != prov.Creds.Reg {
				t.Errorf("state: credentials differ from provisioning")
			}
			if rs := call(devproto.Request{Op: devproto.OpRestart}); !rs.OK || string(rs.Creds.Identity) != string(prov.Creds.Identity) {
				t.Errorf("restart: ok=%v err=%q, credentials changed", rs.OK, rs.Err)
			}
			pk := call(devproto.Request{Op: devproto.OpPreKey})
			for _, p := range prov.PreKeys {
				if !pk.OK || pk.PreKey.ID == p.ID {
					t.Errorf("prekey: ok=%v, id reused or missing", pk.OK)
				}
			}
			// One task at a time (every task stepped through its gates as
			// it starts): the protocol itself, no interleaving to blame.
			sc, _ := LookupScenario("reply")
			s := &Schedule{Device: im.name, Variant: im.serial, Scenario: sc.Name, Seed: 3, Contacts: sc.Contacts}
			res, applied, err := rn.Exec(ctx, s, true, NewGenerator(sc))
			if err != nil {
				t.Fatal(err)
			}
			cnt := res.Counts()
			if cnt.Messages != 10 || cnt.Delivered != cnt.Messages {
				t.Fatalf("%s: %d of %d messages delivered cleanly; history:\n%s", im.serial, cnt.Delivered, cnt.Messages,
					strings.Join(res.History, "\n"))
			}
			again, _, err := rn.Exec(ctx, applied, true, nil)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := strings.Join(res.History, "\n"), strings.Join(again.History, "\n"); a != b {
				t.Fatalf("replay differs:\n%s\n---\n%s", a, b)
			}
		})
	}
}

// The Go device under the concurrent discipline loses ratchet steps in the
// reply scenario (docs/design.md §3), as the in-process harness finds: the
// protocol path can fail, and its failures replay.
func TestGoDeviceConcurrentFails(t *testing.T) {
	ctx := context.Background()
	t.Setenv("BADMAC_GODEVICE", "1")
	rn, err := NewRunner(ctx, "", Options{Argv: []string{os.Args[0]}, BaselineVariant: "concurrent"})
	if err != nil {
		t.Fatal(err)
	}
	defer rn.Close()
	var failed *Outcome
	for seed := uint64(1); seed <= 8 && failed == nil; seed++ {
		o, err := rn.Run(ctx, &Schedule{Device: godevice.Name, Variant: "concurrent", Scenario: "reply", Seed: seed, Contacts: []string{"alice"}})
		if err != nil {
			t.Fatal(err)
		}
		if o.Result.Failed() {
			failed = o
		}
	}
	if failed == nil {
		t.Fatal("no failure in 8 schedules of concurrent/reply")
	}
	again, err := rn.Run(ctx, failed.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Result.Failed() || again.Result.Summary() != failed.Result.Summary() {
		t.Fatalf("replay: %q, want %q", again.Result.Summary(), failed.Result.Summary())
	}
	t.Logf("seed %d: %s", failed.Schedule.Seed, failed.Result.Summary())
}
