package harness

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/stores"
)

// noisy is the minimal Bad MAC with a second contact and two messages that
// have nothing to do with it, stepped one yield at a time.
func noisy(t *testing.T) *Schedule {
	s, err := Parse(strings.NewReader(MinimalBadMAC))
	require.NoError(t, err)
	s.Contacts = append(s.Contacts, Contact{User: "bob", Devices: 2})
	extra := []Op{
		SendOp{Peer: "bob.1", Msg: "x1"}, DeliverOp{ID: "x1"},
		StepOp{Task: "x1"}, StepOp{Task: "x1"}, StepOp{Task: "x1"},
		SendOp{Peer: "alice.0", Msg: "x2"}, DeliverOp{ID: "x2"},
		StepOp{Task: "x2"}, StepOp{Task: "x2"}, RunOp{Task: "x2"},
	}
	s.Ops = append(append([]Op(nil), s.Ops...), extra...)
	return s
}

// The reducer drops the contact, the devices and the messages that do not
// matter, keeps the worst failure class, returns a schedule that replays to
// the same history, and gives the same result for any pool size.
func TestShrinkReadable(t *testing.T) {
	ctx := context.Background()
	s := noisy(t)
	v := stores.MustLookup(s.Store)
	_, orig, err := Execute(ctx, s, v, Controlled, Ops(s.Ops))
	require.NoError(t, err)
	require.Equal(t, "BadMAC", orig.Signature())
	var texts []string
	for _, workers := range []int{1, 3} {
		small, res, err := ShrinkWith(ctx, s, v, Controlled, ShrinkOptions{Budget: 300, Pool: NewPool(workers)})
		require.NoError(t, err)
		require.Equal(t, "BadMAC", res.Signature())
		text := small.String()
		require.NotContains(t, text, "bob", "contact bob is not needed")
		require.NotContains(t, text, "x1")
		require.NotContains(t, text, "x2")
		require.Less(t, len(small.Ops), len(s.Ops)-10)
		again, err := Replay(ctx, small, Controlled)
		require.NoError(t, err)
		require.Equal(t, res.HistoryText(), again.HistoryText(), "the shrunk schedule must replay byte for byte")
		texts = append(texts, text)
	}
	require.Equal(t, texts[0], texts[1], "pool size changed the result")
}

// The budget counts runs as one worker would: a budget of n gives the same
// result with one worker or three, for every n.
func TestShrinkBudgetIsSerialEquivalent(t *testing.T) {
	ctx := context.Background()
	s := noisy(t)
	v := stores.MustLookup(s.Store)
	for _, budget := range []int{1, 3, 7, 15} {
		a, _, err := ShrinkWith(ctx, s, v, Controlled, ShrinkOptions{Budget: budget, Pool: NewPool(1)})
		require.NoError(t, err)
		b, _, err := ShrinkWith(ctx, s, v, Controlled, ShrinkOptions{Budget: budget, Pool: NewPool(3)})
		require.NoError(t, err)
		require.Equal(t, a.String(), b.String(), "budget %d", budget)
	}
}
