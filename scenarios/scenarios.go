// Package scenarios names the workloads badmac runs and generates their
// schedules: seeded random or PCT interleavings for the CLI, and rapid
// state-machine actions for property tests, so that shrinking yields
// minimal counterexamples.
package scenarios

import (
	"fmt"
	"strings"

	"github.com/badmac/badmac/harness"
)

// Scenario is a named workload: who talks, how much, and what the bot and
// the server do around it.
type Scenario struct {
	Name string
	Doc  string
	// Contacts who send; Group makes them send to one group (sender keys).
	Contacts []harness.Contact
	Group    bool
	// Messages is how many messages the peers send in one schedule.
	Messages int
	// Reply is the chance the bot replies after each message it receives.
	Reply float64
	// Burst sends everything before anything is delivered.
	Burst bool
	// BurstMax, when > 0, sends the messages in bursts of 1..BurstMax
	// (seeded), each only once the previous one is delivered and its
	// replies read (the parameter burst=K, params.go).
	BurstMax int
	// Drop is the chance the server drops the connection during a burst
	// (a send without BurstMax), at a random point once it is sent: op
	// drop (the parameter drop=P, generate.go maybeDrop; the real client
	// only).
	Drop float64
	// Reorder delivers queued messages in random order and redelivers
	// copies of delivered ones, as an offline queue does.
	Reorder bool
	// Instances > 1 runs that many device processes on one store, taking
	// turns: each delivery is handled to its end by one of them.
	Instances int
	// Overlap makes the instances run at once instead of taking turns:
	// deliveries and replies go to either, interleaved like any tasks.
	Overlap bool
	// Crashes, if > 0, is how many Crash events a schedule has instead of
	// the kind's default (a long-lived scenario reinstalls contacts often).
	Crashes int
	// Crash is what goes wrong with the device's process or storage.
	Crash CrashKind
	// Mix, when set, draws each crash event's kind from these instead of
	// Crash: restarts, crashes, a backup restore and contacts starting new
	// sessions in one conversation, as a real bot meets them.
	Mix []CrashKind
	// First makes the bot write first, before it has heard from anyone: a
	// reply to every contact device it has no session with.
	First bool
	// LID, when set, moves the contacts between their PN and LID
	// addresses (lid.go; real client only).
	LID *LIDPlan
}

// CrashKind says which crash ops a scenario's generator adds.
type CrashKind string

const (
	// CrashRandom: one crash at a random point, then a restart.
	CrashRandom CrashKind = "crash"
	// CrashTorn: one crash at a random point that keeps, drops or tears
	// each pending write at random, then a restart.
	CrashTorn CrashKind = "torn"
	// CrashRestart: clean restarts between bursts (running tasks finish,
	// the store is stopped: its buffers written out, its instances closed;
	// then restart): only what a store never persists is lost.
	CrashRestart CrashKind = "restart"
	// CrashRollback: a backup of the device's storage is taken, later
	// restored (a backup restore, a lost volume).
	CrashRollback CrashKind = "rollback"
	// CrashReinstall: a contact reinstalls WhatsApp (new identity and
	// registration id) mid-conversation.
	CrashReinstall CrashKind = "reinstall"
	// CrashRekey: a contact starts a new session with the device from a
	// fresh bundle, keeping its identity (as a client does after a failure
	// of its own): the device archives the old state, so records grow.
	CrashRekey CrashKind = "rekey"
	// CrashIdle: no crash, but the bot idles longer than a cache's time
	// to live (wait ops) a few times mid-conversation: a device with a
	// virtual clock (Baileys' makeCacheableSignalKeyStore keeps keys five
	// minutes) reads its store again afterwards.
	CrashIdle CrashKind = "idle"
)

var all = []Scenario{
	{Name: "burst", Doc: "N concurrent deliveries from one contact",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 8, Burst: true},
	{Name: "reply", Doc: "the bot replies while receiving: the case that produces Bad MAC",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 8, Reply: 0.7},
	{Name: "multi", Doc: "several contacts and devices at once, with replies",
		Contacts: []harness.Contact{{User: "alice", Devices: 2}, {User: "bob", Devices: 1}}, Messages: 9, Reply: 0.5, Burst: true},
	{Name: "group", Doc: "sender keys: several senders in one group",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}, {User: "bob", Devices: 1}, {User: "carol", Devices: 1}}, Group: true, Messages: 9, Burst: true},
	{Name: "reorder", Doc: "out-of-order delivery and redelivered duplicates",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 8, Reply: 0.3, Reorder: true},
	{Name: "replica", Doc: "two device processes on one store taking turns (an overlapping deploy)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 8, Reply: 0.8, Instances: 2},
	{Name: "overlap", Doc: "two device processes on one store at once, both handling the account's messages (an overlapping deploy)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 8, Reply: 0.8, Instances: 2, Overlap: true},
	{Name: "crash", Doc: "a conversation with replies and a device crash at a random store-write point (CrashPoints enumerates them all)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 10, Reply: 0.7, Crash: CrashRandom},
	{Name: "torn", Doc: "a crash at a random point that keeps, drops or tears each unsynced write (file stores)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 10, Reply: 0.7, Crash: CrashTorn},
	{Name: "restart", Doc: "clean restarts between bursts of a conversation with replies (tasks finish, the store is stopped and closed, then reopened)",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}, {User: "bob", Devices: 1}}, Messages: 10, Reply: 0.6, Crash: CrashRestart},
	{Name: "rollback", Doc: "the device's storage is restored from an older backup mid-conversation",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 10, Reply: 0.7, Crash: CrashRollback},
	{Name: "idle", Doc: "a conversation with replies and idle gaps longer than a key cache's time to live (6 minutes: Baileys' makeCacheableSignalKeyStore keeps keys 5); the model has no clock",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 10, Reply: 0.7, Crash: CrashIdle},
	{Name: "reinstall", Doc: "a contact reinstalls WhatsApp: new identity and registration id, new session",
		Contacts: []harness.Contact{{User: "alice", Devices: 1}}, Messages: 10, Reply: 0.7, Crash: CrashReinstall},
}

// All returns the scenarios in report order.
func All() []Scenario { return append([]Scenario(nil), all...) }

// Default is what plain `badmac run` uses.
var Default = []string{"burst", "reply", "multi", "group", "reorder"}

// Lookup returns a scenario by name, reshaped by the parameters after
// its name (reply:messages=30:burst=4, params.go).
func Lookup(name string) (Scenario, error) {
	base, ps, hasPs := strings.Cut(name, ":")
	for _, s := range all {
		if s.Name == base {
			if !hasPs {
				return s, nil
			}
			return withParams(s, strings.Split(ps, ":"))
		}
	}
	name = base
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(names, ", "))
}

// Setup is the schedule header for this scenario.
func (s Scenario) Setup(seed uint64, d harness.Discipline, store string) *harness.Schedule {
	sch := &harness.Schedule{Seed: seed, Scenario: s.Name, Discipline: d, Store: store,
		Contacts: s.Contacts, Instances: max(1, s.Instances)}
	if s.Group {
		sch.Group = "group"
	}
	return sch
}

// peerNames lists "user.device" for every contact device.
func (s Scenario) peerNames() []string {
	var out []string
	for _, c := range s.Contacts {
		for d := range c.Devices {
			out = append(out, fmt.Sprintf("%s.%d", c.User, d))
		}
	}
	return out
}
