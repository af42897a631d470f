package storetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// clientSchedules is Options.ClientSchedules' default.
const clientSchedules = 4

// A ClientOpener is the real whatsmeow Client as a harness device, by
// device name ("client-inline", "client-async"), over the store variant v;
// false for a name it does not know.
type ClientOpener func(device string, v *stores.Variant) (harness.Device, bool)

// clientOpener is the one RegisterClient set; nil until then.
var clientOpener ClientOpener

// RegisterClient sets the real client storetest runs for Options.Client and
// for the replay of a schedule recorded there. Importing
// github.com/badmac/badmac/storetest/client registers badmac's
// (realclient.Open), so that importing storetest alone does not compile
// the real client, its fake server and whatsmeow's Client.
func RegisterClient(open ClientOpener) { clientOpener = open }

// clientDevices are the real client's devices storetest runs: inline
// replies, which fail the store; async, whose rate is logged.
var clientDevices = []string{"client-inline", "client-async"}

// errNoClient is what a test that asks for the real client without
// importing it is told.
const (
	errNoClient   = "storetest: Options.Client runs the real whatsmeow Client; " + clientMissing
	clientMissing = `this test binary does not include it: add  import _ "github.com/badmac/badmac/storetest/client"  to your test file`
)

// runClient runs the scenarios on the real whatsmeow Client over the
// user's store (realclient.Device, Options.Client): with inline replies,
// where the client cannot race itself (its handler queue runs one stanza
// at a time and the reply is sent from it), so a message that fares worse
// than the serial protocol is the store's and fails the test; and with
// async replies, whose rate is logged only, since there whatsmeow's own
// send/receive race loses replies whatever the store (docs/design.md §3).
// Scenarios the client cannot run (groups, contacts with several devices,
// crashes, two instances) are named and left out.
func runClient(ctx context.Context, t TB, s *subject, scs []scenarios.Scenario, o Options, who testRef) {
	t.Helper()
	if clientOpener == nil {
		t.Errorf("%s", errNoClient)
		return
	}
	n := o.ClientSchedules
	if n == 0 {
		n = clientSchedules
	}
	var skipped []string
	ran := 0
	for _, sc := range scs {
		for _, reply := range clientDevices {
			probe, ok := clientOpener(reply, &stores.Variant{Name: StoreName})
			if !ok {
				t.Fatalf("storetest: the registered real client has no device %s", reply)
				return
			}
			if err := probe.Check(sc.Setup(o.Seed, harness.Whatsmeow, StoreName), harness.Controlled); err != nil {
				if reply == clientDevices[0] {
					skipped = append(skipped, fmt.Sprintf("%s (%s)", sc.Name, strings.TrimPrefix(err.Error(), "device "+probe.Name()+": ")))
				}
				continue
			}
			ran++
			if !clientScenario(ctx, t, s, sc, reply, n, o, who) {
				break // one failure per scenario is enough to read
			}
		}
	}
	switch {
	case ran == 0:
		// Asked for and never run is not a pass.
		t.Errorf("storetest: Options.Client: none of the scenarios runs on the real client: %s", strings.Join(skipped, "; "))
	case len(skipped) > 0:
		t.Logf("storetest: not run on the real client: %s", strings.Join(skipped, "; "))
	}
}

// clientScenario runs n schedules of sc on the real client, one at a time
// (each starts a client, a server and a database of its own). It returns
// false when one failed the test.
func clientScenario(ctx context.Context, t TB, s *subject, sc scenarios.Scenario, device string, n int, o Options, who testRef) bool {
	t.Helper()
	label := "real whatsmeow Client, " + strings.TrimPrefix(device, "client-") + " replies"
	failed, messages, blamed := 0, 0, 0
	var first *harness.Schedule
	var firstRes *harness.Result
	var firstFinds []string
	for i := range n {
		seed := scenarios.SeedFor(o.Seed, i)
		log := newRunLog()
		v := s.variant(log, 1, scenarioNeeds(sc) != "")
		dev, _ := clientOpener(device, &v)
		sched, res, err := harness.RunOn(ctx, dev, sc.Setup(seed, harness.Whatsmeow, StoreName), harness.Controlled,
			scenarios.NewGenerator(sc, scenarios.Random, seed))
		if err != nil {
			t.Fatalf("storetest: scenario %s (%s) seed %d: %v", sc.Name, label, seed, err)
			return false
		}
		s.tally.merge(log.tally)
		messages += len(res.Messages)
		blamed += len(res.Blamed)
		if res.Failed() {
			failed++
		}
		// The store fails when it fares worse than the reference store
		// under the same client and the same schedule (controlled: the
		// real client replays it there), or breaks a restart invariant;
		// what the reference store loses too is whatsmeow's own.
		if clientStoreFailed(res) && first == nil {
			first, firstRes, firstFinds = sched, res, diagnoseAll(log.traces())
		}
	}
	lo, hi := harness.Wilson(blamed, messages)
	if first == nil && failed == 0 {
		t.Logf("storetest: %s (%s): %d schedules, %d messages, no failures", sc.Name, label, n, messages)
		return true
	}
	if first == nil {
		t.Logf("storetest: %s (%s): %d of %d schedules, %d of %d messages worse than the serial protocol [%.1f%%, %.1f%%], "+
			"none worse than on badmac's reference store under the same client and schedule (not failed: whatsmeow's own races, "+
			"such as its send taking no lock against its receive, whatever the store)",
			sc.Name, label, failed, n, blamed, messages, 100*lo, 100*hi)
		return true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "storetest: scenario %s (%s): %d of %d schedules failed\n", sc.Name, label, failed, n)
	writeFailure(&b, firstFinds, firstRes, firstRes.Blamed)
	path := filepath.Join(os.TempDir(), fmt.Sprintf("badmac-%s-%s-%s-seed%d-pid%d.txt", sanitize(t.Name()), sc.Name,
		first.Device, first.Seed, os.Getpid()))
	cmd := who.command([]string{ReplayEnv + "=" + path})
	text := annotate(first.String(), "# recorded by storetest in "+who.test+" ("+who.pkg+") on the real whatsmeow Client against your store\n# replay: "+cmd+"\n")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		cmd = fmt.Sprintf("(could not save the schedule: %v)", err)
	}
	fmt.Fprintf(&b, "schedule (%d ops; controlled: every store call of the client parked and stepped, so it replays byte for byte):\n%s", len(first.Ops), first)
	fmt.Fprintf(&b, "replay:\n  %s\n", cmd)
	t.Errorf("%s", b.String())
	return false
}

// clientStoreFailed reports whether a real-client run fails the store:
// messages worse than on the reference store under the same client and
// schedule, or a restart invariant broken.
func clientStoreFailed(res *harness.Result) bool {
	return len(res.StoreBlamed) > 0 || res.RegeneratedCreds || res.StartRefused || res.LostPreKeys > 0
}

// replayClient is replay for a schedule recorded on the real client.
func replayClient(ctx context.Context, t TB, s *subject, sched *harness.Schedule, path string) {
	t.Helper()
	if clientOpener == nil {
		t.Fatalf("storetest: %s was recorded on the real client; %s", path, clientMissing)
		return
	}
	log := newRunLog()
	v := s.variant(log, sched.Instances, reopens(sched))
	dev, ok := clientOpener(sched.Device, &v)
	if !ok {
		t.Fatalf("storetest: %s: unknown device %q", path, sched.Device)
		return
	}
	_, res, err := harness.RunOn(ctx, dev, sched, harness.Controlled, harness.Ops(sched.Ops))
	if err != nil {
		t.Fatalf("storetest: replay %s: %v", path, err)
		return
	}
	t.Logf("storetest: replay of %s on the real client, history:\n%s", path, res.HistoryText())
	if !clientStoreFailed(res) {
		t.Logf("storetest: replay of %s: no failure of the store", path)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "storetest: replay of %s on the real client fails (%d ops):\n", path, len(sched.Ops))
	writeFailure(&b, diagnoseAll(log.traces()), res, res.Blamed)
	t.Errorf("%s", b.String())
}
