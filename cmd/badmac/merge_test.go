package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/badmac/badmac/reports"
)

// Merged shards keep how many schedules the store was judged in: judged
// in all of every shard reads as before; a shard judged in some, or one
// not judged at all beside a judged one, gives the partial count.
func TestMergeStoreJudged(t *testing.T) {
	n := func(v int) *int { return &v }
	full := func(blamed int) reports.Row { return reports.Row{Schedules: 5, StoreBlamed: n(blamed)} }
	m := mergeRow([]reports.Row{full(1), full(2)})
	require.Equal(t, 3, *m.StoreBlamed)
	require.Nil(t, m.StoreJudged)
	require.Equal(t, "3", m.StoreCell())

	m = mergeRow([]reports.Row{full(1), {Schedules: 5, StoreBlamed: n(0), StoreJudged: n(2)}})
	require.Equal(t, 7, *m.StoreJudged)
	require.Equal(t, "1 (7/10)", m.StoreCell())

	m = mergeRow([]reports.Row{full(0), {Schedules: 5}})
	require.Equal(t, "0 (5/10)", m.StoreCell())

	m = mergeRow([]reports.Row{{Schedules: 5}, {Schedules: 5}})
	require.Equal(t, "n/a", m.StoreCell())
}
