package harness

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Unsent names the ops on a message no op before them sent; Tidy drops
// them, and keeps steps of tasks that are not messages (the real client's
// goroutines, the Baileys socket's login), which other devices schedule.
func TestUnsentAndTidy(t *testing.T) {
	s, err := Parse(strings.NewReader(`badmac schedule v1
seed 1
scenario reply
discipline whatsmeow
store reference
contacts alice:1
ops
deliver m1
send alice.0 m1
step recv
deliver m1
step m1.2
run resend:r5
step login~creds1
dup r2
reply alice.0 r2
read r2
`))
	require.NoError(t, err)
	require.Equal(t, []string{"m1", "", "", "", "", "", "", "r2", "", ""}, s.Unsent())
	s.Tidy()
	var got []string
	for _, op := range s.Ops {
		got = append(got, op.String())
	}
	require.Equal(t, []string{"send alice.0 m1", "step recv", "deliver m1", "step m1.2", "run resend:r5",
		"step login~creds1", "reply alice.0 r2", "read r2"}, got)
}
