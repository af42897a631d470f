package procs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
)

// message is m with the given failed attempts, then one that succeeds
// unless lost.
func message(id string, lost bool, fails ...endpoint.Class) *harness.Message {
	m := &harness.Message{ID: id}
	for _, c := range fails {
		m.Attempts = append(m.Attempts, harness.Attempt{Class: c})
	}
	if !lost {
		m.Attempts = append(m.Attempts, harness.Attempt{OK: true})
	}
	return m
}

// Judge blames by the verdict's comparison: a class the model never had
// is blamed like a worse outcome (the old ranking saw only outcomes), and
// the same outcome and class are not.
func TestJudgeBlamesClasses(t *testing.T) {
	res := func(ms ...*harness.Message) *Result { return &Result{Messages: ms} }
	base := res(message("m1", false), message("m2", false), message("m3", false))
	model := res(message("m1", false), message("m2", false, endpoint.NoSession), message("m3", false))
	real := res(message("m1", false), message("m2", false, endpoint.BadMAC), message("m3", true, endpoint.OldCounter))
	v := Judge(real, model, base)
	require.Equal(t, []string{"m2 recovered (BadMAC) (model: recovered (NoSession))", "m3 lost (OldCounter) (model: delivered)"}, v.StoreBlamed)
	require.Equal(t, []string{"m2 recovered (NoSession)"}, v.ClientBlamed)

	same := Judge(model, model, base)
	require.Empty(t, same.StoreBlamed)
}
