package baileys

import (
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
)

// The socket device runs the LID scenarios that need no group, no rekey
// and no account migration, on both versions, and refuses the others in
// one line with the reason.
func TestSocketLIDCheck(t *testing.T) {
	for _, v := range Versions {
		d := &SocketDevice{name: SocketPrefix + v, version: v}
		for _, name := range []string{"lid-migrate", "lid-both", "lid-reply", "lid-crash"} {
			sc, _ := scenarios.Lookup(name)
			if err := d.Check(sc.Setup(1, harness.Locked, MultiFile), harness.Controlled); err != nil {
				t.Errorf("%s: scenario %s refused: %v", d.name, name, err)
			}
		}
		ops := &harness.Schedule{Scenario: "script", Store: MultiFile, Ops: []harness.Op{{Verb: "phase", Args: []string{"alice", "mixed"}},
			{Verb: "via", Args: []string{"alice.0", "lid"}}, {Verb: "mapping", Args: []string{"alice"}}, {Verb: "forget", Args: []string{"alice.0"}}}}
		if err := d.Check(ops, harness.Serial); err != nil {
			t.Errorf("%s: the LID ops refused: %v", d.name, err)
		}
		for name, want := range map[string]string{"lid-switch": "op migrate", "lid-switch-group": "group messages",
			"lid-group": "group messages", "lid-repair": "op rekey"} {
			sc, _ := scenarios.Lookup(name)
			err := d.Check(sc.Setup(1, harness.Locked, MultiFile), harness.Controlled)
			if err == nil || !strings.HasPrefix(err.Error(), "device "+d.name+" cannot run ") || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: Check(%s) = %v; want one line naming %q", d.name, name, err, want)
			}
		}
		mig := &harness.Schedule{Scenario: "script", Store: MultiFile, Ops: []harness.Op{{Verb: "migrate"}}}
		if err := d.Check(mig, harness.Serial); err == nil || !strings.Contains(err.Error(), "op migrate") {
			t.Errorf("%s: op migrate: %v, want refused", d.name, err)
		}
	}
}
