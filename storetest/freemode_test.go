package storetest

import "testing"

// The free-mode rate comparison both ways, and where it cannot decide:
// below freeRateMin schedules not even all failing against none failing is
// "above", so runFree must say the rates were not compared (its default
// of 3 free schedules is such a count).
func TestFreeRate(t *testing.T) {
	if freeRateMin != 11 {
		t.Fatalf("freeRateMin = %d, want 11 (z² = %.2f at 99.9%%)", freeRateMin, freeZ*freeZ)
	}
	for _, c := range []struct {
		pair, ref, n     int
		above, decidable bool
	}{
		{3, 0, 3, false, false},   // the default count: the comparison cannot fail a store
		{10, 0, 10, false, false}, // still not
		{11, 0, 11, true, true},   // the fewest that can
		{0, 0, 11, false, true},
		{20, 0, 30, true, true},
		{5, 5, 30, false, true},  // a correct store: the same rate
		{12, 5, 30, false, true}, // worse, not clearly
	} {
		above, decidable := freeRate(c.pair, c.ref, c.n)
		if above != c.above || decidable != c.decidable {
			t.Errorf("freeRate(%d, %d, %d) = above %v decidable %v, want %v %v", c.pair, c.ref, c.n, above, decidable, c.above, c.decidable)
		}
	}
}
