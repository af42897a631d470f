package harness

import (
	"fmt"
	"strings"
)

// The LID addressing ops (docs/lid.md §5.2, issue 20): one contact with a
// phone-number address (PN) and a linked identity (LID).
//
//	phase U pn|mixed|lid  the server's phase for contact user U from now on:
//	                      PN only; both forms (PN stanzas with sender_lid,
//	                      LID stanzas with sender_pn); LID only
//	via P pn|lid          the envelope form of contact device P's next
//	                      stanzas and retry receipts (a queued stanza keeps
//	                      its form, so dup redelivers it as it was)
//	mapping U             the server tells the device U's LID without a
//	                      message (a devices notification)
//	forget P              contact device P drops its session with the
//	                      device: its next decrypt of the device's message
//	                      fails and it sends a retry receipt
//	migrate               the account's LID migration: the bot's own phone
//	                      sends the LID migration sync message, whatsmeow
//	                      sets its LIDMigrationTimestamp and its later
//	                      sends to a PN go to the contact's LID (a
//	                      schedule with migrate logs in with the account's
//	                      own LID, <success lid>; docs/lid.md §6.1)
//
// They run on the real whatsmeow client only (realclient): LID handling is
// whatsmeow's own code, which the in-process model does not model; the
// model refuses them (Model.Check).
var lidOps = map[string]int{"phase": 2, "via": 2, "mapping": 1, "forget": 1, "migrate": 0}

// LIDOp reports whether verb is one of the LID addressing ops.
func LIDOp(verb string) bool {
	_, ok := lidOps[verb]
	return ok
}

// lidForms are the values the second argument of phase and via takes.
var lidForms = map[string][]string{"phase": {"pn", "mixed", "lid"}, "via": {"pn", "lid"}}

func init() {
	for v, n := range lidOps {
		opArity[v] = n
	}
}

// checkLIDOp checks the argument of phase and via, for Parse.
func checkLIDOp(verb string, args []string) error {
	forms, ok := lidForms[verb]
	if !ok || len(args) < 2 {
		return nil
	}
	for _, f := range forms {
		if args[1] == f {
			return nil
		}
	}
	return fmt.Errorf("%s %s: want one of %s", verb, args[1], strings.Join(forms, ", "))
}

// DeviceOnlyScenarios are the scenarios the model cannot run, with why
// (the LID scenarios register theirs).
var DeviceOnlyScenarios = map[string]string{}

// refuseDeviceOnly is the model's refusal of the LID ops and scenarios.
func refuseDeviceOnly(setup *Schedule) error {
	if why, ok := DeviceOnlyScenarios[setup.Scenario]; ok {
		return fmt.Errorf("model: scenario %s: %s", setup.Scenario, why)
	}
	for _, op := range setup.Ops {
		if _, ok := lidOps[op.Verb]; ok {
			return fmt.Errorf("model: op %s: LID addressing runs on the real client only (-device client-inline or client-async; docs/lid.md)", op)
		}
	}
	return nil
}
