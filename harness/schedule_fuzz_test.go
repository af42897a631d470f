package harness

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParse: any text gives a schedule or an error naming its line, never
// a panic, and a schedule that parses prints as text that parses back to
// the same schedule (what replay and shrink rely on). The seed corpus in
// testdata/fuzz/FuzzParse holds real schedules (the regression script, a
// crash schedule) and truncated ones.
func FuzzParse(f *testing.F) {
	f.Add(Version + "\nseed 1\nscenario reply\ndiscipline locked\nstore reference\ncontacts alice:1\nops\nsend alice.0 m1\ndeliver m1\nrun m1\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Parse(strings.NewReader(text))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "schedule") {
				t.Fatalf("error does not say where: %v", err)
			}
			return
		}
		out := s.String()
		again, err := Parse(strings.NewReader(out))
		if err != nil {
			t.Fatalf("printed schedule does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalize(s), normalize(again)) {
			t.Fatalf("round trip changed the schedule:\nparsed  %#v\nreparsed %#v\ntext:\n%s", s, again, out)
		}
	})
}

// normalize treats nil and empty op lists alike (both print as nothing)
// and drops where Parse read each line, which is not part of the schedule.
func normalize(s *Schedule) *Schedule {
	c := s.Clone()
	c.lines, c.opLines = nil, nil
	if len(c.Ops) == 0 {
		c.Ops = nil
	}
	return c
}
