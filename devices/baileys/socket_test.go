package baileys

import (
	"context"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
)

func TestSocketSmoke(t *testing.T) {
	ctx := context.Background()
	d, err := OpenSocket(ctx, "7.0.0-rc14", SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sc, _ := scenarios.Lookup("reply")
	setup := sc.Setup(scenarios.SeedFor(1, 0), harness.Locked, MultiFile)
	g := scenarios.NewGenerator(sc, scenarios.Random, setup.Seed)
	sched, res, err := harness.RunOn(ctx, d, setup, harness.Controlled, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(sched.String())
	for _, h := range res.History {
		t.Log(h)
	}
	for _, m := range res.Messages {
		t.Logf("%s %s %v", m.ID, m.Outcome(), m.Attempts)
	}
}
