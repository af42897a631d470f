package userstores

import (
	"testing"

	"github.com/badmac/badmac/storetest"
)

// Few schedules per scenario: this module runs inside badmac's own tests.
var opts = storetest.Options{Schedules: 2, FreeSchedules: 1, ShrinkBudget: 30}

func TestCorrect(t *testing.T)     { storetest.CheckOpener(t, OpenCorrect, opts) }
func TestUnlocked(t *testing.T)    { storetest.CheckOpener(t, OpenUnlocked, opts) }
func TestWriteBack(t *testing.T)   { storetest.CheckOpener(t, OpenWriteBack, opts) }
func TestDropBatches(t *testing.T) { storetest.CheckOpener(t, OpenDropBatches, opts) }
func TestKeyByUser(t *testing.T)   { storetest.CheckOpener(t, OpenKeyByUser, opts) }
