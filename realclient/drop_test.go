package realclient

import (
	"context"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// dropScript drops the connection three times: between messages, while
// the handler is parked inside a receive (its ack never reaches the
// server: the stanza comes again after the login), and with a stanza
// queued, not yet pushed.
const dropScript = harness.Version + `
seed 1
scenario script
discipline whatsmeow
store sqlite
contacts alice:1 bob:1
ops
send alice.0 m1
deliver m1
reply alice.0 r1
read r1
drop
send bob.0 m2
deliver m2
drop
send alice.0 m3
drop
deliver m3
reply alice.0 r2
read r2
`

// The op drop on the real client: whatsmeow logs in again after each drop
// and the conversation goes on, nothing lost, in every mode; controlled,
// the same schedule gives the same history byte for byte. The model
// refuses the op by name.
func TestDropReconnects(t *testing.T) {
	s, err := harness.Parse(strings.NewReader(dropScript))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []harness.Mode{harness.Controlled, harness.Serial, harness.Free} {
		for _, reply := range []Reply{Inline, Async} {
			dev := &Device{Reply: reply}
			var res *harness.Result
			if mode == harness.Controlled {
				res = replayExactly(t, dev, s, 2)
			} else if _, res, err = harness.RunOn(context.Background(), dev, s, mode, harness.Ops(s.Ops)); err != nil {
				t.Fatalf("%s %s: %v", mode, dev.Name(), err)
			}
			if n := countLines(res.History, "login "); n != 4 {
				t.Errorf("%s %s: %d logins, want 4 (one and one a drop)", mode, dev.Name(), n)
			}
			for _, m := range res.Messages {
				if o := m.Outcome(); o != harness.Delivered {
					t.Errorf("%s %s: %s %s %+v", mode, dev.Name(), m.ID, o, m.Attempts)
				}
			}
			if len(res.Messages) != 5 {
				t.Errorf("%s %s: %d messages, want 5", mode, dev.Name(), len(res.Messages))
			}
		}
	}
	err = harness.Model{Variant: stores.MustLookup("reference")}.Check(s, harness.Controlled)
	if err == nil || !strings.HasPrefix(err.Error(), "device model does not implement op drop (") {
		t.Errorf("the model's Check: %v, want it to refuse drop", err)
	}
}

// The scenario's drop=P on the real client: generated drops between
// bursts, judged against the serial run of the same schedule. Controlled,
// client-inline on sqlite is blamed for nothing (each schedule replays
// byte for byte: TestDropReconnects). Free, a drop may cut the send of a
// reply (SendMessage fails, the bot does not send it again: class Other,
// the client's own loss, which badmac client -drop therefore does not
// gate by default); nothing else may fail.
func TestDropScenario(t *testing.T) {
	const name = "reply:messages=12:contacts=2:burst=3:reply=1:drop=0.5"
	pr := runDeviceIn(t, harness.Controlled, &Device{Reply: Inline}, name, stores.MustLookup("sqlite"), 3)
	if pr.Failed != 0 || pr.Counts.Blamed != 0 || pr.Counts.Messages != 3*24 {
		t.Errorf("controlled: %d schedules failed, %d of %d messages blamed", pr.Failed, pr.Counts.Blamed, pr.Counts.Messages)
	}
	pr = runDeviceIn(t, harness.Free, &Device{Reply: Inline}, name, stores.MustLookup("sqlite"), 3)
	for class := range pr.Counts.Failures {
		if class != "Other" {
			t.Errorf("free: failed attempts %v: a class other than a cut send (Other)", pr.Counts.Failures)
		}
	}
}
