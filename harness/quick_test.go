package harness

import (
	"context"
	"os"
	"testing"
)

func TestQuickMinimal(t *testing.T) {
	f, err := os.Open("testdata/badmac-minimal.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Discipline{Concurrent, Locked, Whatsmeow} {
		for _, st := range []string{"mutexed", "reference", "uncached"} {
			c := s.Clone()
			c.Discipline = d
			c.Store = st
			res, err := Replay(context.Background(), c, Controlled)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s/%s: %s %+v", d, st, res.Summary(), res.Counts())
			if d == Concurrent && st == "mutexed" {
				t.Log(res.HistoryText())
			}
		}
	}
}
