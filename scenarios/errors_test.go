package scenarios

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/stores"
)

// stubDevice fails at once (fail set) or waits until its run is cancelled.
type stubDevice struct {
	name string
	fail error
}

func (d stubDevice) Name() string                                { return d.name }
func (d stubDevice) Check(*harness.Schedule, harness.Mode) error { return nil }
func (d stubDevice) Baseline(context.Context, *harness.Schedule) (*harness.Result, error) {
	return nil, errors.New("no baseline")
}
func (d stubDevice) Exec(ctx context.Context, _ *harness.Schedule, _ harness.Mode, _ harness.Source) (*harness.Schedule, *harness.Result, error) {
	if d.fail != nil {
		return nil, nil, d.fail
	}
	<-ctx.Done()
	return nil, nil, ctx.Err()
}

// The error RunPairs reports is the one that happened first, named by its
// row (issue 16 §5): before, it returned errors in row order, so a run
// whose second row failed reported the first row's cancellation
// ("request 15 (reset): context canceled"), and a device row was named
// by the discipline it does not have ("locked/…").
func TestRunPairsFirstErrorWins(t *testing.T) {
	sc, err := Lookup("reply")
	if err != nil {
		t.Fatal(err)
	}
	v := stores.Variant{Name: "stock"}
	pairs := []Pair{
		{Scenario: sc, Discipline: harness.Locked, Variant: v, Device: stubDevice{name: "waits"}},
		{Scenario: sc, Discipline: harness.Locked, Variant: v, Device: stubDevice{name: "breaks", fail: errors.New("adapter died")}},
	}
	_, err = RunPairs(context.Background(), pairs, Config{Mode: harness.Controlled, Seed: 1, Schedules: 1, Workers: 2})
	if err == nil || err.Error() != "breaks/stock/reply: adapter died" {
		t.Fatalf("error %v, want the second row's, named by its device", err)
	}
	if strings.Contains(err.Error(), "canceled") {
		t.Fatalf("a cancellation was reported: %v", err)
	}
}
