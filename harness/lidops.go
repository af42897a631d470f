package harness

import (
	"fmt"
	"slices"
)

// DeviceOnlyScenarios are the scenarios the model cannot run, with why
// (the LID scenarios register theirs).
var DeviceOnlyScenarios = map[string]string{}

// LID reports whether s is a LID schedule: a LID scenario (every
// device-only scenario is one, whose ops a generator may not have drawn
// yet) or any LID op. A device logs such a schedule in with the account's
// own LID, as WhatsApp does for an account that has one.
func (s *Schedule) LID() bool {
	if DeviceOnlyScenarios[s.Scenario] != "" {
		return true
	}
	return slices.ContainsFunc(s.Ops, LIDOp)
}

// modelOps are the op types the model implements: all but the LID
// addressing ops (ops.go), which are whatsmeow's own code.
var modelOps = Except(PhaseOp{}, ViaOp{}, MappingOp{}, ForgetOp{}, MigrateOp{})

// lidWhy is why a device without the LID ops lacks them.
const lidWhy = "LID addressing runs on the real client only (-device client-inline or client-async; docs/lid.md)"

// refuseDeviceOnly is the model's refusal of the LID ops and scenarios.
func refuseDeviceOnly(setup *Schedule) error {
	if why, ok := DeviceOnlyScenarios[setup.Scenario]; ok {
		return fmt.Errorf("model: scenario %s: %s", setup.Scenario, why)
	}
	why := map[string]string{}
	for _, op := range AllOps() {
		if LIDOp(op) {
			why[op.Verb()] = lidWhy
		}
	}
	return modelOps.Refuse("model", setup.Ops, why)
}
