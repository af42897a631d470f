package harness

import (
	"context"
	"fmt"
	"strings"

	"github.com/badmac/badmac/sim"
)

// Discipline is how the client under test calls its store (docs/design.md §4).
type Discipline string

// The client disciplines.
const (
	// Concurrent: deliveries and replies run at once, nothing held across
	// load→decrypt→store.
	Concurrent Discipline = "concurrent"
	// Whatsmeow: receives one at a time; sends take only a send lock and
	// retry handling takes none, so both run alongside receives.
	Whatsmeow Discipline = "whatsmeow"
	// Locked: one lock per Signal address across load→decrypt/encrypt→store.
	Locked Discipline = "locked"
	// Txn: whatsmeow with EnableDecryptedEventBuffer: the locks of
	// Whatsmeow, plus each receive's decrypt and the plaintext it buffers
	// committed in one store transaction (store.EventBuffer.DoDecryptionTxn,
	// which takes no lock and serialises no send); a redelivered
	// ciphertext is answered from the buffer. Stores without
	// DoDecryptionTxn are refused.
	Txn Discipline = "txn"
)

// Disciplines lists every discipline in report order.
var Disciplines = []Discipline{Concurrent, Whatsmeow, Locked, Txn}

// ParseDiscipline checks a discipline name.
func ParseDiscipline(s string) (Discipline, error) {
	for _, d := range Disciplines {
		if string(d) == s {
			return d, nil
		}
	}
	var names []string
	for _, d := range Disciplines {
		names = append(names, string(d))
	}
	return "", fmt.Errorf("unknown discipline %q (known: %s)", s, strings.Join(names, ", "))
}

// ticket is a place reserved in a discipline's lock when a task starts.
type ticket struct {
	fifo *sim.FIFO
	n    int
	mu   *sim.Mutex
}

// reserve takes the place a task will wait for under the run's discipline:
// locked queues every task on its peer's address; whatsmeow (and txn, which
// only adds the transaction) queues receives, serializes sends
// (messageSendLock, whatsmeow send.go SendMessage) and lets retry handling
// run free (receipt.go handleReceipt starts handleRetryReceipt in a
// goroutine of its own, under no lock).
func (r *Run) reserve(d *device, kind, addr string) *ticket {
	switch r.sched.Discipline {
	case Locked:
		f := d.addrs.Get(addr)
		return &ticket{fifo: f, n: f.Reserve()}
	case Whatsmeow, Txn:
		switch kind {
		case "receive":
			return &ticket{fifo: &d.recv, n: d.recv.Reserve()}
		case "send":
			return &ticket{mu: &d.send}
		}
	}
	return nil
}

// lock waits for the ticket and returns its release.
func (t *ticket) lock(ctx context.Context) func() {
	switch {
	case t == nil:
		return func() {}
	case t.mu != nil:
		t.mu.Lock(ctx)
		return func() { t.mu.Unlock(ctx) }
	}
	t.fifo.Lock(ctx, t.n)
	return t.fifo.Unlock
}
