package scenarios

import (
	"math/rand/v2"
	"slices"

	"github.com/badmac/badmac/harness"
)

// LID addressing scenarios (issue 20, docs/lid.md §5.3): one contact with
// a phone-number address (PN) and a linked identity (LID). They run on the
// real whatsmeow client only (the model refuses them: harness.Model.Check),
// whose own code decides which session each stanza is decrypted under
// (message.go decryptMessages), migrates PN sessions to the LID
// (MigratePNToLID on the store) and answers retry receipts (retry.go).

// LIDPlan says how a LID scenario's generator moves its contacts between
// the address forms.
type LIDPlan struct {
	// SwitchAt is how the switch to phase mixed comes: 0 at the first op,
	// else at a random op in the first SwitchAt ops per message (so PN
	// stanzas are still queued when it comes).
	SwitchAt int
	// Toggle is the chance, at each op after the switch, of a via op that
	// flips one contact device's envelope form.
	Toggle float64
	// StartLID: every contact device's stanzas come from its LID from the
	// switch on (via P lid).
	StartLID bool
	// Mapping: the server tells the device the contacts' LIDs (a devices
	// notification) at a random op before the switch.
	Mapping bool
	// Migrate: the account's LID migration (op migrate: whatsmeow's sends
	// to a PN go to the LID from then on) comes at a random op in the
	// Migrate ops per message after the switch, and at the latest when
	// two thirds of the messages are sent; every contact then goes to
	// phase lid (its queued PN stanzas keep their envelope).
	Migrate int
	// OneFirst: only the first contact goes mixed at the switch; the
	// others stay PN-only until the migration (a contact whose session the
	// device never migrated).
	OneFirst bool
}

var lidScenarios = []Scenario{
	{Name: "lid-migrate", Doc: "LID: a PN conversation moves to mixed addressing mid-way, PN stanzas still queued and redelivered, replies throughout (whatsmeow PR #1063, the stale-overwrite class)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}, {User: "bob", Devices: 1}}, Messages: 10, Reply: 0.6, Reorder: true,
		LID: &LIDPlan{SwitchAt: 4, Toggle: 0.08, Mapping: true}},
	{Name: "lid-both", Doc: "LID: both forms of one contact interleaved, the envelope flipping between messages (Baileys PR #2372 cause 1, PR #2763)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 10, Reply: 0.5, Burst: true,
		LID: &LIDPlan{Toggle: 0.3}},
	{Name: "lid-reply", Doc: "LID: replies sent to the PN while the contact's LID stanzas are being decrypted (the send's migration against the receive's)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 10, Reply: 0.9,
		LID: &LIDPlan{StartLID: true, Toggle: 0.05}},
	{Name: "lid-group", Doc: "LID: a group under mixed addressing, senders flipping between participant PN and LID (addressing_mode lid)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}, {User: "bob", Devices: 1}, {User: "carol", Devices: 1}}, Group: true, Messages: 9, Burst: true,
		LID: &LIDPlan{Toggle: 0.2}},
	{Name: "lid-crash", Doc: "LID: a crash and restart at a random store-write point around the mapping and the migration, then both forms",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 10, Reply: 0.7, Crash: CrashRandom,
		LID: &LIDPlan{SwitchAt: 3, Toggle: 0.15, Mapping: true}},
	{Name: "lid-switch", Doc: "LID: the account's LID migration lands mid-conversation, replies in flight and PN stanzas queued; one contact known under both forms before it, one under its PN only",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}, {User: "bob", Devices: 1}}, Messages: 10, Reply: 0.7, Reorder: true,
		LID: &LIDPlan{SwitchAt: 2, Toggle: 0.08, Migrate: 2, OneFirst: true}},
	{Name: "lid-switch-group", Doc: "LID: a group that started under PN addressing moves to mixed and the account migrates mid-way: the senders' sender keys made under the PN must move to the LID",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}, {User: "bob", Devices: 1}, {User: "carol", Devices: 1}}, Group: true, Messages: 9, Reorder: true,
		LID: &LIDPlan{SwitchAt: 2, Toggle: 0.15, Migrate: 1}},
	{Name: "lid-repair", Doc: "LID: a contact starts new sessions (re-pairing) under mixed addressing, so a stale PN session sits next to a LID one (whatsapp-rust PR #475)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 10, Reply: 0.7, Crash: CrashRekey, Crashes: 2,
		LID: &LIDPlan{Toggle: 0.15}},
}

func init() {
	all = append(all, lidScenarios...)
	for _, s := range lidScenarios {
		harness.DeviceOnlyScenarios[s.Name] = "LID addressing runs on the real client only (-device client-inline or client-async; docs/lid.md)"
	}
}

// LIDNames are the LID scenarios, in report order.
func LIDNames() []string {
	var out []string
	for _, s := range lidScenarios {
		out = append(out, s.Name)
	}
	return out
}

// lidOps are the LID op verbs a LID scenario's generator emits.
var lidOps = []string{"phase", "via", "mapping"}

// lidGen is a LID scenario's part of its generator.
type lidGen struct {
	plan      *LIDPlan
	switchAt  int
	mapAt     int
	migrateAt int
	switched  bool
	migrated  bool
	users     []string
	peers     []string
	lid       map[string]bool // contact device → its stanzas come from its LID
	pendingOp []harness.Op
}

func newLIDGen(sc Scenario, rng *rand.Rand) *lidGen {
	if sc.LID == nil {
		return nil
	}
	l := &lidGen{plan: sc.LID, peers: sc.peerNames(), lid: map[string]bool{}}
	for _, c := range sc.Contacts {
		l.users = append(l.users, c.User)
	}
	if sc.LID.SwitchAt > 0 {
		l.switchAt = 1 + rng.IntN(sc.LID.SwitchAt*sc.Messages)
	} else {
		l.switchAt = 1
	}
	if sc.LID.Mapping && l.switchAt > 1 {
		l.mapAt = 1 + rng.IntN(l.switchAt)
	}
	if sc.LID.Migrate > 0 {
		l.migrateAt = l.switchAt + 1 + rng.IntN(sc.LID.Migrate*sc.Messages)
	}
	return l
}

// lidOp is the LID op the generator emits at this op, if any.
func (g *Generator) lidOp() (harness.Op, bool) {
	l := g.lid
	if l == nil {
		return nil, false
	}
	if len(l.pendingOp) > 0 {
		op := l.pendingOp[0]
		l.pendingOp = l.pendingOp[1:]
		return op, true
	}
	if g.ops == l.mapAt {
		return harness.MappingOp{User: l.users[g.rng.IntN(len(l.users))]}, true
	}
	if !l.switched && g.ops >= l.switchAt {
		l.switched = true
		for i, u := range l.users {
			if l.plan.OneFirst && i > 0 {
				break
			}
			l.pendingOp = append(l.pendingOp, harness.PhaseOp{User: u, Phase: "mixed"})
		}
		if l.plan.StartLID {
			for _, p := range l.peers {
				l.lid[p] = true
				l.pendingOp = append(l.pendingOp, harness.ViaOp{Peer: p, Form: "lid"})
			}
		}
		return g.lidOp()
	}
	if l.switched && l.plan.Migrate > 0 && !l.migrated && (g.ops >= l.migrateAt || 3*g.sent >= 2*g.sc.Messages) {
		l.migrated = true
		for _, u := range l.users {
			l.pendingOp = append(l.pendingOp, harness.PhaseOp{User: u, Phase: "lid"})
		}
		return harness.MigrateOp{}, true
	}
	if l.switched && l.plan.Toggle > 0 && g.sent < g.sc.Messages && g.rng.Float64() < l.plan.Toggle {
		p := l.peers[g.rng.IntN(len(l.peers))]
		l.lid[p] = !l.lid[p]
		form := "pn"
		if l.lid[p] {
			form = "lid"
		}
		return harness.ViaOp{Peer: p, Form: form}, true
	}
	return nil, false
}

// lidScenarioOps adds the LID ops to a LID scenario's op list.
func (s Scenario) lidScenarioOps(ops []string) []string {
	if s.LID == nil {
		return ops
	}
	ops = append(slices.Clip(ops), lidOps...)
	if s.LID.Migrate > 0 {
		ops = append(ops, "migrate")
	}
	return ops
}
