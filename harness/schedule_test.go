package harness

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// What `badmac replay` prints (the schedule, "history", what the replay
// did) parses back to the same schedule, and a "history" line only ends
// the ops section: before it, it is an unknown header.
func TestParseStopsAtHistory(t *testing.T) {
	text, err := os.ReadFile("testdata/badmac-minimal.txt")
	require.NoError(t, err)
	s, err := Parse(strings.NewReader(string(text)))
	require.NoError(t, err)
	res, err := Replay(context.Background(), s, Controlled)
	require.NoError(t, err)
	printed := s.String() + "history\n" + res.HistoryText()
	back, err := Parse(strings.NewReader(printed))
	require.NoError(t, err)
	require.Equal(t, s.String(), back.String())
	require.Len(t, back.Ops, len(s.Ops))

	_, err = Parse(strings.NewReader("badmac schedule v1\nhistory\nops\nsend alice.0 m1\n"))
	require.ErrorContains(t, err, `schedule line 2: unknown header "history"`)
	// Without the stop, the history's lines are not ops.
	_, err = Parse(strings.NewReader(strings.Replace(printed, "history\n", "", 1)))
	require.Error(t, err)
}
