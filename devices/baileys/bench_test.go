package baileys

import (
	"context"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// benchSchedules times judged schedules of scenario reply on one pair: each
// is the schedule, its protocol baseline and (on a device) its reference
// run, as badmac run makes them, one worker. The figure is per judged
// schedule; docs/baileys.md "Speed" compares the socket device with the
// model in the same run.
func benchSchedules(b *testing.B, p scenarios.Pair) {
	b.Helper()
	ctx := context.Background()
	sc, _ := scenarios.Lookup("reply")
	p.Scenario = sc
	b.ResetTimer()
	prs, err := scenarios.RunPairs(ctx, []scenarios.Pair{p}, scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: b.N, Workers: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(prs[0].Counts.Messages)/float64(b.N), "msgs/schedule")
}

// BenchmarkScheduleModel: the in-process model (locked, reference store).
func BenchmarkScheduleModel(b *testing.B) {
	v, err := stores.Lookup("reference")
	if err != nil {
		b.Fatal(err)
	}
	benchSchedules(b, scenarios.Pair{Discipline: harness.Locked, Variant: v})
}

// BenchmarkScheduleSocket: Baileys' own makeWASocket on
// useMultiFileAuthState, a Node process reused across schedules (reset
// between them).
func BenchmarkScheduleSocket(b *testing.B) {
	for _, v := range Versions {
		b.Run(v, func(b *testing.B) {
			if _, err := installedAdapter(); err != nil {
				b.Skip("Baileys adapter not installed: npm ci --ignore-scripts --prefix adapters/baileys")
			}
			d, err := OpenSocket(context.Background(), v, SocketOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			benchSchedules(b, scenarios.Pair{Discipline: harness.Locked, Variant: stores.Variant{Name: MultiFile}, Device: d})
		})
	}
}
