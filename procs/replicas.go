package procs

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
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
func ConverseReplicas(ctx context.Context, cfg Config, replicas int, launch Launcher) (*Run, error) {
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
		creds, err := load(ctx, w.proc)
		if err != nil {
			return nil, fmt.Errorf("replica %d: load: %w", i, err)
		}
		if !creds.Same(c.creds) {
			c.res.RegeneratedCreds = true
			c.log("replica %d: CREDENTIALS DIFFER (%v)", i, nil)
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
