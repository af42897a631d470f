package harness

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/endpoint"
)

// docs/design.md §3's minimal case: under the concurrent discipline the
// second reply, sent from a ratchet step that was then overwritten, is a Bad
// MAC at the peer. The peer's first retry receipt carries no keys, so the
// device re-encrypts r3 on the same broken session (a second Bad MAC); the
// second receipt's bundle rebuilds it (whatsmeow retry.go). With a lock per
// address the same ops are clean.
func TestMinimalBadMAC(t *testing.T) {
	fh, err := os.Open("testdata/badmac-minimal.txt")
	require.NoError(t, err)
	defer fh.Close()
	s, err := Parse(fh)
	require.NoError(t, err)
	s.Store = "reference"
	res, err := Replay(context.Background(), s, Controlled)
	require.NoError(t, err)
	require.True(t, res.Failed())
	require.Equal(t, 2, res.Counts().Failures[endpoint.BadMAC], res.HistoryText())
	var r3 *Message
	for _, m := range res.Messages {
		if m.ID == "r3" {
			r3 = m
		}
	}
	require.NotNil(t, r3)
	require.Equal(t, Recovered, r3.Outcome(), res.HistoryText())
	s.Discipline = Locked
	res, err = Replay(context.Background(), s, Controlled)
	require.NoError(t, err)
	require.False(t, res.Failed(), res.Summary())
}
