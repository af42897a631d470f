package userstores

import (
	"testing"

	"github.com/badmac/badmac/storetest"
)

// Few schedules per scenario: this module runs inside badmac's own tests.
var opts = storetest.Options{Schedules: 2, FreeSchedules: 1, ShrinkBudget: 30}

// withClient also runs the scenarios on the real whatsmeow Client.
var withClient = storetest.Options{Schedules: 2, FreeSchedules: 1, ShrinkBudget: 30, Client: true, ClientSchedules: 2}

func TestCorrect(t *testing.T)     { storetest.CheckOpener(t, OpenCorrect, withClient) }
func TestUnlocked(t *testing.T)    { storetest.CheckOpener(t, OpenUnlocked, opts) }
func TestWriteBack(t *testing.T)   { storetest.CheckOpener(t, OpenWriteBack, opts) }
func TestDropBatches(t *testing.T) { storetest.CheckOpener(t, OpenDropBatches, withClient) }
func TestKeyByUser(t *testing.T)   { storetest.CheckOpener(t, OpenKeyByUser, opts) }
