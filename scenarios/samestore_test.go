package scenarios

import (
	"context"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/internal/testenv"
	"github.com/badmac/badmac/stores"
)

// Store blame must come from the store alone (issue 16 §3): the
// same-client run follows the candidate's interleaving exactly, so a store
// whose every call is atomic and whose reads return the last write is
// never store-blamed. mutexed (a lock around each call, yield points inside
// it) and reference (no yield point inside a call) are both such stores:
// each is judged against the other as the same-client run's store, under
// every discipline and in every scenario, and neither may be store-blamed
// for a single message. The other direction: a store that is not atomic
// (uncached) or not fresh across processes (cached) is store-blamed by the
// same comparison.
func TestAtomicStoresNeverStoreBlamed(t *testing.T) {
	n := 2
	if testenv.Long() {
		n = 200
	}
	ctx := context.Background()
	ref, mut := stores.MustLookup("reference"), stores.MustLookup("mutexed")
	cfg := Config{Mode: harness.Controlled, Policy: Random, Seed: 1, Schedules: n}
	var pairs []Pair
	for _, sc := range All() {
		if sc.LID != nil {
			continue // the real client only (lid.go)
		}
		for _, d := range []harness.Discipline{harness.Concurrent, harness.Whatsmeow, harness.Locked} {
			pairs = append(pairs,
				Pair{Scenario: sc, Discipline: d, Variant: mut, Device: harness.Model{Variant: mut, Against: &ref}},
				Pair{Scenario: sc, Discipline: d, Variant: ref, Device: harness.Model{Variant: ref, Against: &mut}})
		}
	}
	prs, err := RunPairs(ctx, pairs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	judged, blamed := 0, 0
	for i, pr := range prs {
		against := pairs[i].Device.(harness.Model).Against.Name
		c := pr.Counts
		if c.StoreNA > 0 {
			t.Errorf("%s/%s/%s against %s: the store was not judged in %d schedules", pr.Discipline, pr.Store, pr.Scenario, against, c.StoreNA)
		}
		if c.StoreBlamed > 0 {
			t.Errorf("%s/%s/%s against %s: %d of %d messages store-blamed", pr.Discipline, pr.Store, pr.Scenario, against, c.StoreBlamed, c.Messages)
		}
		judged += c.Messages
		blamed += c.Blamed
	}
	t.Logf("%d pairs × %d schedules: %d messages judged, %d pair-blamed (the clients' own), 0 store-blamed", len(pairs), n, judged, blamed)
	if blamed == 0 {
		t.Error("no message pair-blamed: the racy clients ran nothing")
	}

	// The comparison can fail: the same schedules store-blame a store that
	// is not atomic, or not fresh across two processes.
	for _, c := range []struct{ store, scenario string }{{"uncached", "group"}, {"cached", "replica"}} {
		sc, err := Lookup(c.scenario)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := RunPair(ctx, sc, harness.Concurrent, stores.MustLookup(c.store), Config{Mode: harness.Controlled, Policy: Random, Seed: 1, Schedules: 6})
		if err != nil {
			t.Fatal(err)
		}
		if pr.Counts.StoreBlamed == 0 {
			t.Errorf("concurrent/%s/%s: nothing store-blamed in 6 schedules", c.store, c.scenario)
		}
	}
}
