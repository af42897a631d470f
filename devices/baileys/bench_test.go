package baileys

import (
	"context"
	"testing"
	"time"

	"github.com/badmac/badmac/bench"
	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
	"github.com/badmac/badmac/stores"
)

// rawMessages is how many messages the raw libsignal loop times for the
// ratio each schedule benchmark reports (bench.Raw: docs/bench.md).
const rawMessages = 2000

// benchSchedules times judged schedules of scenario reply on one pair: each
// is the schedule, its protocol baseline and (on a device) its reference
// run, as badmac run makes them, one worker. The figure is per judged
// schedule; docs/baileys.md "Speed" compares the socket device with the
// model in the same run. Each also reports its messages per second and
// their ratio to the raw libsignal loop timed right after it in the same
// process (raw-ratio: docs/bench.md's ratio, harness / raw).
func benchSchedules(b *testing.B, p scenarios.Pair) {
	b.Helper()
	ctx := context.Background()
	sc, _ := scenarios.Lookup("reply")
	p.Scenario = sc
	b.ResetTimer()
	start := time.Now()
	prs, err := scenarios.RunPairs(ctx, []scenarios.Pair{p}, scenarios.Config{Mode: harness.Controlled, Seed: 1, Schedules: b.N, Workers: 1})
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	b.StopTimer()
	raw, err := bench.Raw(ctx, rawMessages)
	if err != nil {
		b.Fatal(err)
	}
	msgs := float64(prs[0].Counts.Messages)
	b.ReportMetric(msgs/float64(b.N), "msgs/schedule")
	b.ReportMetric(msgs/took.Seconds(), "msg/s")
	b.ReportMetric((msgs/took.Seconds())/(rawMessages/raw.Seconds()), "raw-ratio")
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
