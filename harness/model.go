package harness

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/signalerror"
	"go.mau.fi/whatsmeow/store"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/sim"
)

// The device under test in process: the model of whatsmeow's client
// (docs/design.md §4): its receive, decrypt, send and retry handling, each
// a task that reaches the store through the run's discipline (discipline.go).

// device is one instance of the device under test (one process).
type device struct {
	*endpoint.Endpoint
	inst  int
	addrs sim.KeyedFIFO // locked: one queue per Signal address
	recv  sim.FIFO      // whatsmeow: one receive at a time, in arrival order
	send  sim.Mutex     // whatsmeow: messageSendLock
	// txn, controlled mode: held by a receive's DoDecryptionTxn from its
	// first write to its end. A write outside the transaction waits for
	// it, as SQLite's writer lock and PostgreSQL's row locks make it wait;
	// the scheduler must see that wait or it would block inside the
	// database (docs/design.md §6). Before the transaction's first write
	// nothing waits: an outside write commits, and the database decides
	// what the transaction's own write then meets (SQLite:
	// SQLITE_BUSY_SNAPSHOT; PostgreSQL READ COMMITTED: it overwrites).
	txn      sim.Mutex
	txnWrote bool
	// whatsmeow's in-memory retry state (retry.go), per process: the
	// receipts it sent (messageRetries) and its side of the receipts it
	// got (incomingRetryRequestCounter, sessionRecreateHistory).
	retries fakeserver.RetryCounter
	handler fakeserver.RetryHandler
}

type inTxnKey struct{}

// receive is the device's handling of one delivery, like whatsmeow's
// handleEncryptedMessage: decrypt the DM part (sender key distribution) if
// any, then the message; on failure send a retry receipt with a fresh
// prekey, except for old counter, which whatsmeow ignores.
func (r *Run) receive(ctx context.Context, d *device, del *fakeserver.Delivery, tk *ticket) {
	r.Took(del)
	unlock := tk.lock(ctx)
	var pl fakeserver.Payload
	var err error
	if r.sched.Discipline == Txn {
		pl, err = r.bufferedDecrypt(ctx, d, del)
	} else {
		pl, err = r.decrypt(ctx, d, del)
	}
	unlock()
	a := Attempt{Delivery: del.ID}
	if err != nil {
		a.Class = endpoint.ClassOf(err)
		a.Err = err.Error()
	} else {
		a.OK = true
	}
	r.Received(del, a, pl)
	r.noteProgress(ctx, func(p *progress) { p.acked = true })
	if err == nil || a.Class == endpoint.OldCounter {
		return // whatsmeow's decryptMessages ignores an old counter
	}
	r.sendRetryReceipt(ctx, d, del, err)
}

// sendRetryReceipt is whatsmeow's (retry.go): count the failure per message,
// stop at MaxRetries, attach a fresh prekey bundle only from count 2, or at
// once for a group message whose sender key is unknown and that came with
// no DM part (decryptMessages' isUnavailable, passed as
// forceIncludeIdentity). A failed GenOnePreKey sends the receipt without keys.
func (r *Run) sendRetryReceipt(ctx context.Context, d *device, del *fakeserver.Delivery, err error) {
	count := d.retries.Next(del.Msg, del.Retry)
	if count >= fakeserver.MaxRetries {
		r.log("%s: no retry receipt (count %d)", del.ID, count)
		return
	}
	force := del.Kind == endpoint.SkMsg && del.DMCT == nil && errors.Is(err, signalerror.ErrNoSenderKeyForUser)
	var b *prekey.Bundle
	if fakeserver.WantsKeys(count, force) {
		pk, gerr := d.Device.PreKeys.GenOnePreKey(ctx)
		if gerr != nil {
			r.log("%s: retry receipt without keys: %v", del.ID, gerr)
		} else {
			b = d.Bundle(pk)
		}
	}
	r.mu.Lock()
	r.receipts = append(r.receipts, receipt{msg: del.Msg, peer: del.From, retry: count, b: b})
	r.mu.Unlock()
}

// bufferedDecrypt is whatsmeow's bufferedDecrypt (EnableDecryptedEventBuffer):
// a ciphertext already in the buffer is answered from it; otherwise decrypt
// and buffer the plaintext in one DoDecryptionTxn. A task killed inside the
// transaction cancels its context, which rolls the transaction back, as
// the database does for a dead process's connection.
func (r *Run) bufferedDecrypt(ctx context.Context, d *device, del *fakeserver.Delivery) (fakeserver.Payload, error) {
	buf := d.Probe.Set.Sessions.(store.EventBuffer) // checked in newDevices
	hash := sha256.Sum256(append(append([]byte(nil), del.DMCT...), del.CT...))
	if ev, err := buf.GetBufferedEvent(ctx, hash); err != nil {
		return fakeserver.Payload{}, &endpoint.StoreErr{Err: err}
	} else if ev != nil && ev.Plaintext != nil {
		r.log("%s: answered from the decrypted-event buffer", del.ID)
		return fakeserver.DecodePayload(ev.Plaintext)
	} else if ev != nil {
		// whatsmeow's EventAlreadyProcessed: a replay, dropped like an
		// old counter (not a failure once the message was accepted).
		return fakeserver.Payload{}, &endpoint.Failure{Class: endpoint.OldCounter, Err: errors.New("event already processed (decrypted-event buffer)")}
	}
	tctx, cancel := context.WithCancel(context.WithValue(ctx, inTxnKey{}, true))
	defer cancel()
	defer func() {
		if d.txnWrote {
			d.txnWrote = false
			d.txn.Unlock(ctx)
		}
	}()
	var pl fakeserver.Payload
	err := buf.DoDecryptionTxn(tctx, func(ctx context.Context) error {
		var err error
		if pl, err = r.decrypt(ctx, d, del); err != nil {
			return err
		}
		return buf.PutBufferedEvent(ctx, hash, pl.Encode(), time.Unix(0, 0))
	})
	if err == nil {
		r.noteProgress(ctx, func(p *progress) { p.stored = true }) // committed
		// Handled: whatsmeow then clears the plaintext, keeping the hash.
		if cerr := buf.ClearBufferedEventPlaintext(ctx, hash); cerr != nil {
			r.log("%s: clearing the buffered plaintext: %v", del.ID, cerr)
		}
	}
	return pl, err
}

func (r *Run) decrypt(ctx context.Context, d *device, del *fakeserver.Delivery) (fakeserver.Payload, error) {
	if del.DMCT != nil {
		pt, err := decryptDM(ctx, d, del.From, del.DMKind, del.DMCT)
		if err != nil {
			return fakeserver.Payload{}, err
		}
		dm, err := fakeserver.DecodePayload(pt)
		if err != nil {
			return dm, &endpoint.Failure{Class: endpoint.Other, Err: err}
		}
		if err := d.ProcessSenderKeyDistribution(ctx, del.Group, del.From, dm.SKDM); err != nil {
			return dm, err
		}
	}
	var pt []byte
	var err error
	if del.Kind == endpoint.SkMsg {
		pt, err = d.GroupDecrypt(ctx, del.Group, del.From, del.CT)
	} else {
		pt, err = decryptDM(ctx, d, del.From, del.Kind, del.CT)
	}
	if err != nil {
		return fakeserver.Payload{}, err
	}
	pl, err := fakeserver.DecodePayload(pt)
	if err != nil {
		return pl, &endpoint.Failure{Class: endpoint.Other, Err: err}
	}
	if del.Kind != endpoint.SkMsg && del.Group != "" && pl.SKDM != nil {
		// A group message resent on a retry receipt: a DM carrying the
		// sender key distribution (handleRetryReceipt adds it).
		if err := d.ProcessSenderKeyDistribution(ctx, del.Group, del.From, pl.SKDM); err != nil {
			return pl, err
		}
	}
	return pl, nil
}

// decryptDM is whatsmeow's decryptDM: a pkmsg from a contact whose identity
// key changed (a reinstall) clears the stored identity and session
// (clearUntrustedIdentity) and is decrypted again.
func decryptDM(ctx context.Context, d *device, from *protocol.SignalAddress, kind string, ct []byte) ([]byte, error) {
	pt, err := d.DecryptDM(ctx, from, kind, ct)
	if err == nil || kind != endpoint.PkMsg || endpoint.ClassOf(err) != endpoint.UntrustedIdentity {
		return pt, err
	}
	if err := d.Device.Identities.DeleteIdentity(ctx, from.String()); err != nil {
		return nil, err
	}
	if err := d.Device.Sessions.DeleteSession(ctx, from.String()); err != nil {
		return nil, err
	}
	return d.DecryptDM(ctx, from, kind, ct)
}

// processBundle is whatsmeow's encryptMessageForDevice around a bundle: a
// bundle with a changed identity key clears the stored identity (and
// session) and is processed again.
func processBundle(ctx context.Context, d *device, to *protocol.SignalAddress, b *prekey.Bundle) error {
	err := d.ProcessBundle(ctx, to, b)
	if !errors.Is(err, signalerror.ErrUntrustedIdentity) {
		return err
	}
	if err := d.Device.Identities.DeleteIdentity(ctx, to.String()); err != nil {
		return err
	}
	if err := d.Device.Sessions.DeleteSession(ctx, to.String()); err != nil {
		return err
	}
	return d.ProcessBundle(ctx, to, b)
}

// sendMessage is whatsmeow's SendMessage to one contact device (send.go
// SendMessage, sendDM, encryptMessageForDevices): load the sessions with
// GetManySessions into a per-send cache (store/sessioncache.go
// WithCachedSessions), fetch a bundle for a device with none, encrypt from
// the cache, write the cache back with PutManySessions
// (PutCachedSessions). Identity calls go to the store directly.
func (r *Run) sendMessage(ctx context.Context, d *device, p *fakeserver.Peer, msg, id, body string, tk *ticket) {
	unlock := tk.lock(ctx)
	defer unlock()
	addr := p.Address()
	existing, cctx, err := d.Device.WithCachedSessions(ctx, []string{addr.String()})
	if err != nil {
		r.log("%s: send failed: %v", id, err)
		return
	}
	var b *prekey.Bundle
	if has, ok := existing[addr.String()]; ok && !has {
		// fetchPreKeysNoError: a device without a bundle is skipped.
		if b, err = r.srv.FetchBundle(addr); err != nil {
			r.log("%s: fetching a bundle: %v", id, err)
		}
	}
	kind, ct, err := encryptForDevice(cctx, d, addr, msg, body, b, existing)
	if perr := d.Device.PutCachedSessions(cctx); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		r.log("%s: send failed: %v", id, err)
		return
	}
	r.ToPeer(p, msg, id, 0, kind, ct)
}

// handleRetryReceipt is whatsmeow's (retry.go) for a receipt from p with
// count retry and, when the receipt had <keys>, bundle b: dropped from the
// tenth receipt for one message; without keys, shouldRecreateSession
// decides whether to rebuild from a fetched bundle; then
// encryptMessageForDevice with no session cache (GetSession/PutSession).
func (r *Run) handleRetryReceipt(ctx context.Context, d *device, p *fakeserver.Peer, msg, id, body string, retry int, b *prekey.Bundle, tk *ticket) {
	unlock := tk.lock(ctx)
	defer unlock()
	addr := p.Address()
	if !d.handler.Admit(addr, msg) {
		r.log("%s: retry receipt %d dropped", id, retry)
		return
	}
	if b == nil {
		if reason, ok := d.handler.ShouldRecreate(ctx, d.Endpoint, addr, retry); ok {
			var err error
			if b, err = r.srv.FetchBundle(addr); err != nil {
				r.log("%s: send failed: fetching a bundle: %v", id, err)
				return
			}
			r.log("%s: recreating the session (%s)", id, reason)
		}
	}
	kind, ct, err := encryptForDevice(ctx, d, addr, msg, body, b, nil)
	if err != nil {
		r.log("%s: send failed: %v", id, err)
		return
	}
	r.ToPeer(p, msg, id, retry, kind, ct)
}

// encryptForDevice is whatsmeow's encryptMessageForDevice (send.go): with a
// bundle, build a session from it first; without, a device with no session
// is an error (existing, when given, is what the send's prefetch found).
func encryptForDevice(ctx context.Context, d *device, to *protocol.SignalAddress, msg, body string, b *prekey.Bundle, existing map[string]bool) (string, []byte, error) {
	if b != nil {
		if err := processBundle(ctx, d, to, b); err != nil {
			return "", nil, fmt.Errorf("failed to process prekey bundle: %w", err)
		}
	} else {
		has, checked := existing[to.String()]
		if !checked {
			var err error
			if has, err = d.Device.ContainsSession(ctx, to); err != nil {
				return "", nil, err
			}
		}
		if !has {
			return "", nil, fmt.Errorf("no signal session established with %s", to)
		}
	}
	pl := fakeserver.Payload{ID: msg, Body: body}
	return d.Encrypt(ctx, to, pl.Encode())
}

// read is the peer taking a delivery from the device. A failure other than
// old counter makes the peer send a retry receipt by whatsmeow's rules
// (Contacts.Read); the device handles it in a task of its own.
func (r *Run) read(del *fakeserver.Delivery) {
	rc, err := r.Read(r.ctx, del)
	if err != nil {
		r.fail(err)
		return
	}
	if rc == nil {
		return
	}
	r.start(job{name: rc.ID, kind: "retry-handling", addr: rc.Peer.Address().String(), msg: rc.Msg,
		fn: func(ctx context.Context, d *device, tk *ticket, id string) {
			r.handleRetryReceipt(ctx, d, rc.Peer, rc.Msg, id, rc.Body, rc.Count, rc.Bundle, tk)
		}})
}
