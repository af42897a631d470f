package userstores

import (
	"fmt"
	"os"
	"testing"

	"github.com/badmac/badmac/storetest"
	_ "github.com/badmac/badmac/storetest/client" // for Client: true
)

// Few schedules per scenario: this module runs inside badmac's own tests.
// Each test calls CheckOpener once: storetest runs the test again in the
// processes that hold the store.

// withClient also runs the scenarios on the real whatsmeow Client.
var withClient = storetest.Options{Schedules: 2, FreeSchedules: 1, ShrinkBudget: 30, Client: true, ClientSchedules: 2}

// focus runs the scenarios and direct checks that meet a store's bug, and
// no others: the broken stores below are each caught by what is named.
func focus(scenarios []string, checks ...string) storetest.Options {
	return storetest.Options{Schedules: 2, FreeSchedules: 1, ShrinkBudget: 10, Scenarios: scenarios, Conformance: checks}
}

func TestCorrect(t *testing.T) { storetest.CheckOpener(t, OpenCorrect, withClient) }

func TestUnlocked(t *testing.T) {
	t.Parallel()
	storetest.CheckOpener(t, OpenUnlocked, focus([]string{"burst"}, "16 goroutines at once"))
}

func TestWriteBack(t *testing.T) {
	t.Parallel()
	storetest.CheckOpener(t, OpenWriteBack, focus([]string{"crash"}, "reopen after a crash", "two instances at once"))
}

func TestTimerWriteBack(t *testing.T) {
	t.Parallel()
	storetest.CheckOpener(t, OpenTimerWriteBack, focus([]string{"crash"}, "reopen after a crash"))
}

func TestDropBatches(t *testing.T) {
	t.Parallel()
	o := focus([]string{"reply"}, "keys and batches")
	o.Client, o.ClientSchedules = true, 2
	storetest.CheckOpener(t, OpenDropBatches, o)
}

func TestKeyByUser(t *testing.T) {
	t.Parallel()
	storetest.CheckOpener(t, OpenKeyByUser, focus([]string{"multi"}, "keys and batches"))
}

func TestOmitMissing(t *testing.T) {
	t.Parallel()
	storetest.CheckOpener(t, OpenOmitMissing, focus([]string{"firstcontact"}, "keys and batches"))
}

func TestPreKeyCounter(t *testing.T) {
	t.Parallel()
	storetest.CheckOpener(t, OpenPreKeyCounter, focus([]string{"burst"}, "reopen after a crash"))
}

func TestMigrateNoop(t *testing.T) {
	t.Parallel()
	storetest.CheckOpener(t, OpenMigrateNoop, focus([]string{"burst"}, "MigratePNToLID"))
}

func TestMigrateCopy(t *testing.T) {
	t.Parallel()
	storetest.CheckOpener(t, OpenMigrateCopy, focus([]string{"burst"}, "MigratePNToLID"))
}

func TestMigrateSplit(t *testing.T) {
	t.Parallel()
	storetest.CheckOpener(t, OpenMigrateSplit, focus([]string{"burst"}, "MigratePNToLID", "a crash inside a store call"))
}

// whatsmeow's own sqlstore passes: every direct check (MigratePNToLID's
// rules are read from it) and the scenarios, crashes and rollbacks
// included (one schedule each; two when badmac's long tests run:
// BADMAC_LONG=1).
func TestSQLite(t *testing.T) {
	t.Parallel()
	schedules := 1
	if os.Getenv("BADMAC_LONG") == "1" {
		schedules = 2
	}
	storetest.CheckOpener(t, OpenSQLite, storetest.Options{Schedules: schedules, FreeSchedules: 1, ShrinkBudget: 10})
}

// On PostgreSQL the store's data is not in dir: rollback is refused with
// one line, every other scenario runs (one schedule each here: a database
// per schedule is slow to create; the full run passes too, docs/public-stores.md).
func TestPostgres(t *testing.T) {
	if os.Getenv(PostgresEnv) == "" {
		t.Skip(PostgresEnv + " is not set")
	}
	if os.Getenv(PostgresTagEnv) == "" { // set here, inherited by the store's processes
		t.Setenv(PostgresTagEnv, fmt.Sprintf("p%d", os.Getpid()))
		tag := os.Getenv(PostgresTagEnv)
		t.Cleanup(func() {
			if err := DropPostgres(tag); err != nil {
				t.Errorf("dropping the test's databases: %v", err)
			}
		})
	}
	storetest.CheckOpener(t, OpenPostgres, storetest.Options{Schedules: 1, FreeSchedules: -1, ShrinkBudget: 10,
		Conformance: []string{"keys and batches", "MigratePNToLID", "reopen after a crash"}})
}
