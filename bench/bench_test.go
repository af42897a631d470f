package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/realclient"
	"github.com/badmac/badmac/stores"
)

func TestMedian(t *testing.T) {
	if got := Median([]int{5, 1, 3}); got != 3 {
		t.Errorf("median of 5 1 3 = %d", got)
	}
	if got := Median([]time.Duration{4, 1, 3, 2}); got != 2 {
		t.Errorf("median of 4 1 3 2 = %d", got)
	}
	if Median[int](nil) != 0 {
		t.Error("median of nothing")
	}
}

// The harness delivers the whole conversation cleanly on the reference store.
func TestHarnessConversation(t *testing.T) {
	tm, err := Harness(context.Background(), stores.MustLookup("reference"), 20, true)
	if err != nil {
		t.Fatal(err)
	}
	if tm.Messages != 20 {
		t.Fatalf("%d messages, want 20", tm.Messages)
	}
}

// A broken pair is found and shrunk to fewer ops than it was found with.
func TestHuntFirstFailure(t *testing.T) {
	f, err := HuntFirstFailure(context.Background(), BrokenPairs[0], 1, 20, 40)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Found || f.ShrunkOps == 0 || f.Schedules < 1 {
		t.Fatalf("%+v", f)
	}
}

func BenchmarkRawLoop(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	d, err := Raw(ctx, b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/d.Seconds(), "msg/s")
}

// BenchmarkHarnessReference is one 300-message conversation per iteration
// through the harness (no baseline), setup included.
func BenchmarkHarnessReference(b *testing.B) {
	ctx := context.Background()
	v := stores.MustLookup("reference")
	b.ReportAllocs()
	var run time.Duration
	for b.Loop() {
		tm, err := Harness(ctx, v, 300, false)
		if err != nil {
			b.Fatal(err)
		}
		run += tm.Run
	}
	b.ReportMetric(float64(300*b.N)/run.Seconds(), "msg/s")
}

// BenchmarkRealClientReference is the same conversation per iteration on
// the real whatsmeow Client in controlled mode (RealClient), setup and
// login included: profile it with -cpuprofile. It reports the goroutine
// snapshots taken per quiet point found (each stops the world), a count
// that the machine's load moves far less than its msg/s.
func BenchmarkRealClientReference(b *testing.B) {
	ctx := context.Background()
	v := stores.MustLookup("reference")
	b.ReportAllocs()
	var run time.Duration
	realclient.Stats()
	for b.Loop() {
		tm, err := RealClient(ctx, v, 300)
		if err != nil {
			b.Fatal(err)
		}
		run += tm.Wall
	}
	snaps, _, quiet := realclient.Stats()
	b.ReportMetric(float64(300*b.N)/run.Seconds(), "msg/s")
	b.ReportMetric(float64(snaps)/float64(max(quiet, 1)), "snapshots/quiet")
	b.ReportMetric(float64(quiet)/float64(300*b.N), "quiet/msg")
}

func BenchmarkScheduleString(b *testing.B) {
	s := Conversation("reference", 200)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.String()
	}
}

func BenchmarkScheduleParse(b *testing.B) {
	text := Conversation("reference", 200).String()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := harness.Parse(strings.NewReader(text)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShrink shrinks the first failure of concurrent/mutexed/reply.
func BenchmarkShrink(b *testing.B) {
	ctx := context.Background()
	v := stores.MustLookup("mutexed")
	var failing *harness.Schedule
	for seed := uint64(1); failing == nil && seed < 50; seed++ {
		s, ok := findFailing(ctx, BrokenPairs[0], seed)
		if ok {
			failing = s
		}
	}
	if failing == nil {
		b.Fatal("no failing schedule")
	}
	for b.Loop() {
		if _, _, err := harness.Shrink(ctx, failing, v, harness.Controlled, 50); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHarnessBaselineReference is one 300-message conversation and its
// protocol baseline per iteration; msg/s counts the pair.
func BenchmarkHarnessBaselineReference(b *testing.B) {
	ctx := context.Background()
	v := stores.MustLookup("reference")
	b.ReportAllocs()
	var run time.Duration
	for b.Loop() {
		tm, err := Harness(ctx, v, 300, true)
		if err != nil {
			b.Fatal(err)
		}
		run += tm.Run + tm.Baseline
	}
	b.ReportMetric(float64(300*b.N)/run.Seconds(), "msg/s")
}
