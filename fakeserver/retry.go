package fakeserver

import (
	"context"
	"sync"

	"go.mau.fi/libsignal/protocol"

	"github.com/badmac/badmac/endpoint"
)

// The retry receipt rules, read from whatsmeow at the pinned commit
// (go.mau.fi/whatsmeow v0.0.0-20251217143725-11cf47c62d32, retry.go). Both
// ends follow them: the device under test is whatsmeow, and the fake
// contacts answer and send receipts the same way (WhatsApp's own clients
// are not public; whatsmeow is written to interoperate with them).

// MaxRetries is the retry count at which a receiver stops sending retry
// receipts (sendRetryReceipt: "if retryCount >= 5 { return }"): a message
// gets at most MaxRetries-1 receipts.
const MaxRetries = 5

// KeysFrom is the first retry count whose receipt carries <keys>, a fresh
// prekey bundle (sendRetryReceipt: "if retryCount > 1 || forceIncludeIdentity").
const KeysFrom = 2

// MaxIncomingRetries is where a sender drops further retry receipts for one
// message from one device (handleRetryReceipt: "if internalCounter >= 10").
const MaxIncomingRetries = 10

// RetryCounter is sendRetryReceipt's messageRetries: per message id, how
// many receipts this receiver has asked for. It lives in memory: a restarted
// process starts again from the count the resent copy carries.
type RetryCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// Next counts a failed copy of msg whose <enc count> was countInMsg (0 for a
// first send) and returns the retry count of its receipt. As in whatsmeow,
// a first failure of a copy that is itself a retry continues from its count.
func (c *RetryCounter) Next(msg string, countInMsg int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int)
	}
	c.n[msg]++
	if c.n[msg] == 1 && countInMsg > 0 {
		c.n[msg] = countInMsg + 1
	}
	return c.n[msg]
}

// WantsKeys reports whether a receipt with this count carries a fresh
// bundle. force is sendRetryReceipt's forceIncludeIdentity, set by
// decryptMessages for a skmsg with no DM part that failed with
// ErrNoSenderKeyForUser.
func WantsKeys(count int, force bool) bool { return count >= KeysFrom || force }

// RetryHandler is the sender's side: handleRetryReceipt's
// incomingRetryRequestCounter and shouldRecreateSession's
// sessionRecreateHistory, both in memory.
type RetryHandler struct {
	mu        sync.Mutex
	incoming  map[string]int
	recreated map[string]bool
}

// Admit counts a receipt for msg from addr and reports whether it is
// handled (handleRetryReceipt drops it from the tenth on).
func (h *RetryHandler) Admit(addr *protocol.SignalAddress, msg string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.incoming == nil {
		h.incoming = make(map[string]int)
	}
	k := addr.String() + " " + msg
	h.incoming[k]++
	return h.incoming[k] < MaxIncomingRetries
}

// ShouldRecreate is shouldRecreateSession for a receipt without <keys>:
// rebuild from a fetched bundle when there is no session with the
// receiver; otherwise re-encrypt on the existing session at count 1; from
// count 2, rebuild if the last recreation for this contact is over an hour
// old. badmac's runs are far shorter than an hour and its clock does not
// advance, so that last rule rebuilds once per contact and process: the
// first time, and never again until a restart clears the history.
func (h *RetryHandler) ShouldRecreate(ctx context.Context, e *endpoint.Endpoint, addr *protocol.SignalAddress, count int) (reason string, recreate bool) {
	has, err := e.Device.ContainsSession(ctx, addr)
	if err != nil {
		return "", false // whatsmeow: an error is "don't recreate"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.recreated == nil {
		h.recreated = make(map[string]bool)
	}
	switch {
	case !has:
		h.recreated[addr.String()] = true
		return "no session", true
	case count < KeysFrom:
		return "", false
	case !h.recreated[addr.String()]:
		h.recreated[addr.String()] = true
		return "count > 1, first recreation", true
	}
	return "", false
}
