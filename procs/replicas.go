package procs

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/harness"
)

// ConverseReplicas runs the conversation against replicas device processes
// on one database and one device (the overlapping deploy: a new instance
// starts before the old one stops and both handle the account's messages).
// The first process initializes the device, the others load its
// credentials. Each round the contact sends one or two messages, each
// delivered to a replica drawn from the seed, and a reply is asked of a
// replica drawn too; each replica works through its share of the round in
// order while the others work through theirs at the same time: requests to
// different processes are in flight at once. With replicas 1 every request
// goes to the one process, one at a time: the baseline. Runs across real
// processes do not replay exactly: the seed fixes the conversation and the
// key material, not the interleaving.
func ConverseReplicas(ctx context.Context, cfg Config, replicas int, launch Launcher) (*Result, error) {
	if replicas < 1 {
		return nil, fmt.Errorf("replicas: %d", replicas)
	}
	defer withRandom(cfg.Seed, 0)()
	c, w0, err := start(ctx, launch, 0)
	if err != nil {
		return nil, err
	}
	ws := []*worker{w0}
	defer func() {
		for _, w := range ws {
			w.proc.Close()
		}
	}()
	for i := 1; i < replicas; i++ {
		w := &worker{inc: i}
		if w.proc, err = launch(ctx, i, 0); err != nil {
			return nil, fmt.Errorf("replica %d: %w", i, err)
		}
		ws = append(ws, w)
		h, err := w.proc.Do(ctx, Request{Op: OpHello})
		if err == nil && !h.OK {
			err = errors.New(h.Err)
		}
		if err != nil {
			return nil, fmt.Errorf("replica %d: hello: %w", i, err)
		}
		if creds, err := endpoint.DecodeCreds(h.Creds); err != nil || !creds.Same(c.creds) {
			c.res.RegeneratedCreds = true
			c.log("replica %d: CREDENTIALS DIFFER (%v)", i, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rng := mrand.New(mrand.NewPCG(cfg.Seed, 0x7265706c))
	for i := 1; i <= cfg.Messages; {
		jobs := make([][]func() error, replicas)
		for n := 1 + rng.IntN(2); n > 0 && i <= cfg.Messages; n-- {
			d, err := c.send(fmt.Sprintf("m%d", i))
			if err != nil {
				return nil, err
			}
			i++
			w := ws[rng.IntN(replicas)]
			c.log("%s to replica %d", d.ID, w.inc)
			jobs[w.inc] = append(jobs[w.inc], func() error { return c.deliver(w, d) })
		}
		if rng.Float64() < cfg.Reply {
			w, id := ws[rng.IntN(replicas)], fmt.Sprintf("r%d", i-1)
			c.log("%s from replica %d", id, w.inc)
			jobs[w.inc] = append(jobs[w.inc], func() error { return c.reply(w, id) })
		}
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		for r, js := range jobs {
			if len(js) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.mu.Lock()
				defer c.mu.Unlock()
				for _, j := range js {
					if errs[r] = j(); errs[r] != nil {
						errs[r] = fmt.Errorf("replica %d: %w", r, errs[r])
						return
					}
				}
			}()
		}
		c.mu.Unlock()
		wg.Wait()
		c.mu.Lock()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return c.finish(ws...), nil
}

// Tally sums the oracle's verdicts over runs whose unkilled one-process
// baseline delivers every message once (the tests check it does), so that
// a message is a failure when it ends anything but delivered.
type Tally struct {
	Runs, Messages int
	Outcomes       map[harness.Outcome]int
	// Classes counts failed attempts by class (an old counter on a copy
	// of a message accepted anyway is not a failure).
	Classes     map[endpoint.Class]int
	Failed      int // messages not delivered cleanly
	FailedRuns  int
	Kills       int
	Regenerated int // runs in which credentials changed
	Overlapped  int // requests sent while another process had one in flight
	Requests    int
}

// Add folds a run in.
func (t *Tally) Add(res *Result) {
	if t.Outcomes == nil {
		t.Outcomes, t.Classes = map[harness.Outcome]int{}, map[endpoint.Class]int{}
	}
	t.Runs++
	t.Kills += res.Kills
	t.Overlapped += res.Overlapped
	t.Requests += res.Requests
	if res.RegeneratedCreds {
		t.Regenerated++
	}
	failed := 0
	for _, m := range res.Messages {
		t.Messages++
		o := m.Outcome()
		t.Outcomes[o]++
		if o != harness.Delivered {
			failed++
		}
		for _, a := range m.Failures() {
			t.Classes[a.Class]++
		}
	}
	t.Failed += failed
	if failed > 0 || res.RegeneratedCreds {
		t.FailedRuns++
	}
}

// Rate is the failed messages' share with its 95% Wilson interval.
func (t Tally) Rate() (p, lo, hi float64) { return harness.Rate(t.Failed, t.Messages) }

func (t Tally) String() string {
	p, lo, hi := t.Rate()
	return fmt.Sprintf("%d runs, %d messages: delivered %d, recovered %d, duplicate %d, lost %d, wrong %d; failed attempts %v; failed messages %d = %.1f%% [95%% CI %.1f, %.1f]; failing runs %d; kills %d; regenerated creds %d; overlapped requests %d of %d",
		t.Runs, t.Messages, t.Outcomes[harness.Delivered], t.Outcomes[harness.Recovered], t.Outcomes[harness.Duplicate],
		t.Outcomes[harness.Lost], t.Outcomes[harness.Wrong], t.Classes, t.Failed, 100*p, 100*lo, 100*hi,
		t.FailedRuns, t.Kills, t.Regenerated, t.Overlapped, t.Requests)
}
