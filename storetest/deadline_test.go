package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/badmac/badmac/stores"
)

// deadlineTB is a recordTB with go test's -timeout deadline.
type deadlineTB struct {
	recordTB
	end time.Time
}

func (d *deadlineTB) Deadline() (time.Time, bool) { return d.end, true }

// A scenario that would not fit before go test's -timeout is not run: the
// test fails naming what was not judged, instead of ending in go test's
// panic. With time to spare the same options pass.
func TestStopsBeforeDeadline(t *testing.T) {
	reference := func() (stores.Set, error) {
		st, err := stores.MustLookup("reference").Open(t.Context())
		if err != nil {
			return stores.Set{}, err
		}
		return st.Instance(t.Context())
	}
	o := Options{Scenarios: []string{"burst", "reply"}, Schedules: 1, FreeSchedules: -1, SkipConformance: true}

	short := &deadlineTB{end: time.Now().Add(deadlineMargin / 2)}
	Check(short, reference, o)
	want := "storetest: stopped before scenario burst: go test's -timeout ends in "
	if !short.failed || !strings.Contains(short.errs, want) || !strings.Contains(short.errs, "not run, so not judged: burst, reply. Run again with a longer timeout") {
		t.Fatalf("failed %v, errors:\n%s", short.failed, short.errs)
	}

	long := &deadlineTB{end: time.Now().Add(time.Hour)}
	Check(long, reference, o)
	if long.failed {
		t.Fatalf("a correct store failed with an hour to spare:\n%s", long.errs)
	}
}
