package bench

import (
	"context"
	"testing"
	"time"
)

// BenchmarkPerMessage is the per-message cost of each backend through the
// harness, and its ratio to the in-memory reference measured in the same
// iterations (metric "x-reference").
func BenchmarkPerMessage(b *testing.B) {
	ctx := context.Background()
	targets := StoreTargets()
	total := make([]time.Duration, len(targets))
	msgs := make([]int, len(targets))
	for b.Loop() {
		for i, name := range targets {
			d, n, err := StorePerMessage(ctx, name, 2)
			if err != nil {
				b.Fatal(err)
			}
			total[i] += d
			msgs[i] += n
		}
	}
	ref := float64(total[0]) / float64(msgs[0])
	for i, name := range targets {
		per := float64(total[i]) / float64(msgs[i])
		b.ReportMetric(per/1e3, "µs/msg-"+name)
		if i > 0 {
			b.ReportMetric(per/ref, "x-reference-"+name)
		}
	}
}
