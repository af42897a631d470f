package storetest

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
)

// Free mode (real goroutines) has no interleaving to replay, so a failure
// there is the store's only in two ways, never by comparing the run with a
// controlled replay of its ops (a different interleaving: the client's
// races would be charged to the store):
//
//   - the store answered what a correct store cannot answer in any order:
//     a stale read, a lost write, a prekey id handed out again with
//     another key (diagnose judges calls by their start and return, so
//     overlapping calls are allowed any order they could have taken), or a
//     restart that lost uploaded prekeys;
//   - its schedules fail against the protocol baseline at a rate clearly
//     above badmac's reference store's under the same client, on the same
//     seeds, in free mode too: the two rates' intervals (freeZ) do not
//     overlap.

// freeZ is the interval's z: 99.9% two-sided. Two runs of one correct store
// have non-overlapping 99.9% intervals far less often than once in a
// thousand comparisons, so a correct store is not failed by chance.
const freeZ = 3.290526731491926

// wilsonZ is the Wilson score interval for k of n at z (harness.Wilson is
// the same formula at 95%).
func wilsonZ(k, n int, z float64) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	p, nf := float64(k)/float64(n), float64(n)
	den := 1 + z*z/nf
	mid := (p + z*z/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return math.Max(0, mid-half), math.Min(1, mid+half)
}

// freeRate compares the store's free-mode rate (pair of n schedules worse
// than the protocol baseline) with the reference store's (refPair of n):
// above when the intervals do not overlap. With n ≤ z² (10 schedules at
// 99.9%) no count can be above, not even n of n against 0 of n, so the
// comparison cannot fail a store: decidable is false, and runFree says the
// rates were not compared instead of passing them.
func freeRate(pair, refPair, n int) (above, decidable bool) {
	lo, _ := wilsonZ(pair, n, freeZ)
	_, rhi := wilsonZ(refPair, n, freeZ)
	allLo, _ := wilsonZ(n, n, freeZ)
	_, noneHi := wilsonZ(0, n, freeZ)
	return lo > rhi, allLo > noneHi
}

// freeRateMin is the fewest free schedules whose rates freeRate can tell
// apart (11 at 99.9%).
var freeRateMin = func() int {
	n := 1
	for _, ok := freeRate(0, 0, n); !ok; _, ok = freeRate(0, 0, n) {
		n++
	}
	return n
}()

// runFree runs o.FreeSchedules schedules of sc with real goroutines on the
// store under test and on the reference store, and fails the test on a
// finding or a rate clearly above the reference store's.
func runFree(ctx context.Context, t TB, s *subject, sc scenarios.Scenario, o Options, who testRef, pool *harness.Pool) bool {
	t.Helper()
	n := o.FreeSchedules
	mode := harness.Free
	outs := runAll(ctx, s, sc, o, mode, n, pool, false)
	failed, pair, messages, fo, ok := tallyOuts(t, s, sc, mode, outs)
	if !ok {
		return false
	}
	refOuts := runAll(ctx, s, sc, o, mode, n, pool, true)
	refPair := 0
	for _, r := range refOuts {
		if r.err != nil {
			t.Fatalf("%v (the reference store)", r.err)
			return false
		}
		if r.pair {
			refPair++
		}
	}
	lo, hi := wilsonZ(pair, n, freeZ)
	rlo, rhi := wilsonZ(refPair, n, freeZ)
	rates := fmt.Sprintf("%d of %d schedules worse than the protocol baseline [%.0f%%, %.0f%%], the reference store %d of %d [%.0f%%, %.0f%%] (99.9%% intervals)",
		pair, n, 100*lo, 100*hi, refPair, n, 100*rlo, 100*rhi)
	above, decidable := freeRate(pair, refPair, n)
	label := modeLabel[mode]
	if fo == nil && !above {
		verdict := "no failures"
		switch {
		case !decidable && pair > refPair:
			verdict = fmt.Sprintf("no findings, and more schedules worse than the protocol baseline than on the reference store, too few to tell apart "+
				"(rates not compared: %d schedules cannot separate two rates at 99.9%%; set Options.FreeSchedules to %d or more)", n, freeRateMin)
		case !decidable:
			verdict = fmt.Sprintf("no findings (rates not compared: %d schedules cannot separate two rates at 99.9%%; %d or more can)", n, freeRateMin)
		}
		t.Logf("storetest: %s (%s, %s client): %d schedules, %d messages, %s; %s", sc.Name, label, o.Discipline, n, messages, verdict, rates)
		return true
	}
	var b strings.Builder
	if fo != nil {
		fmt.Fprintf(&b, "storetest: scenario %s (%s, %s client): %d of %d schedules failed\n", sc.Name, label, o.Discipline, failed, n)
		writeFailure(&b, fo.finds, fo.res, fo.worse)
		fmt.Fprintf(&b, "seed %d (real goroutines: the interleaving is not recorded; rerun, ideally with -race):\n  %s\n",
			fo.sched.Seed, who.command(nil))
	}
	if above {
		fmt.Fprintf(&b, "storetest: scenario %s (%s, %s client): %s: a rate clearly above a correct store's under the same client\n",
			sc.Name, label, o.Discipline, rates)
		if fo == nil {
			for i := range outs {
				if outs[i].pair {
					fmt.Fprintf(&b, "first such schedule: seed %d; rerun: %s\n", scenarios.SeedFor(o.Seed, i), who.command(nil))
					break
				}
			}
		}
	}
	t.Errorf("%s", b.String())
	return false
}
