package baileys

import (
	"context"
	"os"
	"testing"

	"github.com/badmac/badmac/harness"
	"github.com/badmac/badmac/scenarios"
)

func TestSocketSmoke(t *testing.T) {
	ctx := context.Background()
	v := os.Getenv("V")
	if v == "" {
		v = "7.0.0-rc14"
	}
	d, err := OpenSocket(ctx, v, SocketOptions{})
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

func TestSocketFile(t *testing.T) {
	path := os.Getenv("F")
	if path == "" {
		t.Skip("F=schedule file")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := harness.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, _ := ParseSocketDevice(s.Device)
	d, err := OpenSocket(ctx, v, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mode := harness.Controlled
	if os.Getenv("SERIAL") != "" {
		mode = harness.Serial
	}
	_, res, err := d.Exec(ctx, s, mode, harness.Ops(s.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("REF") != "" {
		if res, err = d.Reference(ctx, s, res); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range res.History {
		t.Log(h)
	}
	for _, m := range res.Messages {
		t.Logf("%s %s %v", m.ID, m.Outcome(), m.Attempts)
	}
}
