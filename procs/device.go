package procs

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
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/stores"
)

// DeviceJID is the Signal identity of the device under test.
var DeviceJID = types.JID{User: "bot", Server: types.DefaultUserServer}

// Handler is the device under test behind the line protocol: the same
// libsignal calls over whatsmeow's store.Device as harness runs, one
// request at a time (a process that handles its messages in order).
type Handler struct {
	storage stores.Storage
	set     stores.Set
	ep      *endpoint.Endpoint
	// buffer, when set, is whatsmeow's decrypted-event buffer
	// (EnableDecryptedEventBuffer): decrypt and persist in one transaction,
	// a redelivered ciphertext answered from the buffer.
	buffer store.EventBuffer
	writes *counter
	// whatsmeow's in-memory retry state (retry.go), per process: the
	// receipts it sent (messageRetries, every recv) and, for Rules
	// requests, its side of the receipts it got
	// (incomingRetryRequestCounter, sessionRecreateHistory). A restart
	// starts them afresh, as a new process does.
	retries fakeserver.RetryCounter
	rh      fakeserver.RetryHandler
}

// NewHandler opens the device over storage. dieAfter > 0 calls die right
// after the dieAfter-th store write of recv and send requests completes.
// txn turns on the decrypted-event buffer; storage must offer it.
func NewHandler(ctx context.Context, storage stores.Storage, txn bool, dieAfter int, die func()) (*Handler, error) {
	set, err := storage.Instance(ctx)
	if err != nil {
		return nil, err
	}
	d := &Handler{storage: storage, writes: &counter{after: dieAfter, die: die}}
	if txn {
		eb, ok := set.Sessions.(store.EventBuffer)
		if !ok {
			return nil, fmt.Errorf("store %T has no DoDecryptionTxn (not a store.EventBuffer)", set.Sessions)
		}
		d.buffer = eb
	}
	d.set = countWrites(set, d.writes)
	return d, nil
}

func (d *Handler) creds() stores.CredsStore {
	cs, _ := d.storage.(stores.CredsStore)
	return cs
}

// Handle answers one request. A recv or send request with StopAt > 0
// calls the device's stop function (OnStop) when its step StopAt begins:
// step s is the start of its s-th store call, and the step after its last
// call is the moment before it answers.
func (d *Handler) Handle(ctx context.Context, req Request) Response {
	counted := req.Op == OpRecv || req.Op == OpSend
	if counted {
		d.writes.mu.Lock()
		d.writes.steps, d.writes.stopAt = 0, req.StopAt
		d.writes.mu.Unlock()
	}
	resp, err := d.handle(ctx, req)
	if err != nil {
		resp.OK, resp.Err = false, err.Error()
	}
	d.writes.mu.Lock()
	resp.Writes, resp.Calls = d.writes.n, d.writes.steps
	late := counted && d.writes.armed && d.writes.stopAt > d.writes.steps
	d.writes.stopAt = 0
	d.writes.mu.Unlock()
	if late {
		d.writes.stop(resp.Calls+1, resp.Writes)
	}
	return resp
}

// OnStop sets what happens when a request's StopAt step begins; stop must
// not return (it unwinds or the process is killed while it waits).
func (d *Handler) OnStop(stop func(step, writes int)) {
	d.writes.mu.Lock()
	defer d.writes.mu.Unlock()
	d.writes.stop = stop
}

func (d *Handler) handle(ctx context.Context, req Request) (Response, error) {
	cs := d.creds()
	switch req.Op {
	case OpInit:
		if cs == nil {
			return Response{}, errors.New("storage keeps no credentials")
		}
		creds := endpoint.NewCreds()
		if err := cs.SaveCreds(ctx, creds.Encode()); err != nil {
			return Response{}, err
		}
		d.ep = endpoint.New(DeviceJID, creds, d.set)
		pks, err := d.ep.Device.PreKeys.GetOrGenPreKeys(ctx, 30)
		if err == nil && len(pks) > 0 {
			err = d.ep.Device.PreKeys.MarkPreKeysAsUploaded(ctx, pks[len(pks)-1].KeyID)
		}
		if err != nil {
			return Response{}, err
		}
		d.writes.arm()
		return Response{OK: true, Creds: creds.Encode(), PreKeys: toPreKeys(pks)}, nil
	case OpHello:
		if cs == nil {
			return Response{}, errors.New("storage keeps no credentials")
		}
		b, err := cs.LoadCreds(ctx)
		if err != nil {
			return Response{}, err
		}
		creds, err := endpoint.DecodeCreds(b)
		if err != nil {
			return Response{}, err
		}
		d.ep = endpoint.New(DeviceJID, creds, d.set)
		d.writes.arm()
		return Response{OK: true, Creds: creds.Encode()}, nil
	}
	if d.ep == nil {
		return Response{}, fmt.Errorf("%s before init or hello", req.Op)
	}
	peer := protocol.NewSignalAddress(req.Peer, req.PeerID)
	switch req.Op {
	case OpRecv:
		pt, note, err := d.decrypt(ctx, peer, req)
		if err == nil {
			return Response{OK: true, PT: pt, Note: note}, nil
		}
		resp := Response{Class: string(endpoint.ClassOf(err)), Err: err.Error()}
		if endpoint.ClassOf(err) == endpoint.OldCounter {
			return resp, nil // whatsmeow's decryptMessages ignores an old counter
		}
		// sendRetryReceipt, for both drivers (Converse's and the harness
		// device's): counted per message in this process, continuing from
		// the copy's count after a restart; none from MaxRetries (retry.go
		// 396 "if retryCount >= 5"), keys from count 2 (retry.go 428 "if
		// retryCount > 1 || forceIncludeIdentity", whatsmeow 11cf47c62d32).
		resp.Receipt = d.retries.Next(req.Msg, req.Count)
		if resp.Receipt >= fakeserver.MaxRetries {
			resp.Receipt, resp.Note = 0, fmt.Sprintf("no retry receipt (count %d)", resp.Receipt)
			return resp, nil
		}
		// forceIncludeIdentity: a group message with no DM part whose
		// sender key is unknown (decryptMessages' isUnavailable).
		force := req.Kind == endpoint.SkMsg && req.DMCT == nil && errors.Is(err, signalerror.ErrNoSenderKeyForUser)
		if fakeserver.WantsKeys(resp.Receipt, force) {
			// whatsmeow's retry receipt carries a fresh one-time prekey.
			pk, gerr := d.ep.Device.PreKeys.GenOnePreKey(ctx)
			if gerr != nil && req.Rules {
				resp.Note = fmt.Sprintf("retry receipt without keys: %v", gerr)
				return resp, nil
			} else if gerr != nil {
				return resp, gerr
			}
			resp.PreKeys = toPreKeys([]*keys.PreKey{pk})
		}
		return resp, nil
	case OpPreKeys:
		var found []*keys.PreKey
		for _, id := range req.IDs {
			pk, err := d.ep.Device.PreKeys.GetPreKey(ctx, id)
			if err != nil {
				return Response{}, err
			}
			if pk != nil {
				found = append(found, pk)
			}
		}
		return Response{OK: true, PreKeys: toPreKeys(found)}, nil
	case OpSend:
		if req.Rules && req.Retry {
			return d.handleRetryReceipt(ctx, peer, req)
		}
		return d.send(ctx, peer, req)
	}
	return Response{}, fmt.Errorf("unknown op %q", req.Op)
}

// send encrypts a reply as whatsmeow does. A message (send.go SendMessage,
// encryptMessageForDevices) loads the sessions with GetManySessions into a
// per-send cache (store/sessioncache.go WithCachedSessions), builds a
// session from a fetched bundle for a device with none, encrypts from the
// cache and writes it back with PutManySessions (PutCachedSessions). The
// answer to a retry receipt (retry.go handleRetryReceipt) encrypts without
// the cache: GetSession/PutSession.
func (d *Handler) send(ctx context.Context, peer *protocol.SignalAddress, req Request) (Response, error) {
	var b *prekey.Bundle
	if req.Bundle != nil {
		var err error
		if b, err = req.Bundle.ToBundle(); err != nil {
			return Response{}, err
		}
	}
	sctx := ctx
	if !req.Retry {
		existing, cctx, err := d.ep.Device.WithCachedSessions(ctx, []string{peer.String()})
		if err != nil {
			return Response{}, err
		}
		if b == nil && !existing[peer.String()] {
			return Response{NeedBundle: true}, nil
		}
		sctx = cctx
	} else if b == nil {
		if has, err := d.ep.Device.ContainsSession(ctx, peer); err != nil {
			return Response{}, err
		} else if !has {
			return Response{NeedBundle: true}, nil
		}
	}
	if b != nil {
		if err := d.processBundle(sctx, peer, b); err != nil {
			return Response{}, fmt.Errorf("failed to process prekey bundle: %w", err)
		}
	}
	kind, ct, err := d.ep.Encrypt(sctx, peer, req.PT)
	if !req.Retry {
		if perr := d.ep.Device.PutCachedSessions(sctx); perr != nil && err == nil {
			err = perr
		}
	}
	if err != nil {
		return Response{}, err
	}
	return Response{OK: true, Kind: kind, CT: ct}, nil
}

// handleRetryReceipt is whatsmeow's (retry.go), as the harness models it
// (harness model.go handleRetryReceipt): the receipt is admitted (dropped
// from the tenth for one message); without keys shouldRecreateSession
// decides whether to rebuild from a fetched bundle (NeedBundle; the parent
// fetches and comes back with Fetched); then encryptMessageForDevice with
// no session cache.
func (d *Handler) handleRetryReceipt(ctx context.Context, peer *protocol.SignalAddress, req Request) (Response, error) {
	var b *prekey.Bundle
	if req.Bundle != nil {
		var err error
		if b, err = req.Bundle.ToBundle(); err != nil {
			return Response{}, err
		}
	}
	if !req.Fetched {
		if !d.rh.Admit(peer, req.Msg) {
			return Response{Dropped: true}, nil
		}
		if b == nil {
			if reason, ok := d.rh.ShouldRecreate(ctx, d.ep, peer, req.Count); ok {
				return Response{NeedBundle: true, Reason: reason}, nil
			}
		}
	}
	if b != nil {
		if err := d.processBundle(ctx, peer, b); err != nil {
			return Response{}, fmt.Errorf("failed to process prekey bundle: %w", err)
		}
	} else if has, err := d.ep.Device.ContainsSession(ctx, peer); err != nil {
		return Response{}, err
	} else if !has {
		return Response{}, fmt.Errorf("no signal session established with %s", peer)
	}
	kind, ct, err := d.ep.Encrypt(ctx, peer, req.PT)
	if err != nil {
		return Response{}, err
	}
	return Response{OK: true, Kind: kind, CT: ct}, nil
}

// processBundle is whatsmeow's encryptMessageForDevice around a bundle: a
// bundle with a changed identity key clears the stored identity (and
// session) and is processed again.
func (d *Handler) processBundle(ctx context.Context, peer *protocol.SignalAddress, b *prekey.Bundle) error {
	err := d.ep.ProcessBundle(ctx, peer, b)
	if !errors.Is(err, signalerror.ErrUntrustedIdentity) {
		return err
	}
	if err := d.ep.Device.Identities.DeleteIdentity(ctx, peer.String()); err != nil {
		return err
	}
	if err := d.ep.Device.Sessions.DeleteSession(ctx, peer.String()); err != nil {
		return err
	}
	return d.ep.ProcessBundle(ctx, peer, b)
}

// decryptDM is whatsmeow's decryptDM: a pkmsg from a contact whose identity
// key changed (a reinstall) clears the stored identity and session
// (clearUntrustedIdentity) and is decrypted again.
func (d *Handler) decryptDM(ctx context.Context, peer *protocol.SignalAddress, kind string, ct []byte) ([]byte, error) {
	pt, err := d.ep.DecryptDM(ctx, peer, kind, ct)
	if err == nil || kind != endpoint.PkMsg || endpoint.ClassOf(err) != endpoint.UntrustedIdentity {
		return pt, err
	}
	if err := d.ep.Device.Identities.DeleteIdentity(ctx, peer.String()); err != nil {
		return nil, err
	}
	if err := d.ep.Device.Sessions.DeleteSession(ctx, peer.String()); err != nil {
		return nil, err
	}
	return d.ep.DecryptDM(ctx, peer, kind, ct)
}

// message is the decryption of one delivery as the harness models
// whatsmeow's (harness model.go decrypt): the DM part first, if any (its
// payload's sender key distribution processed), then the message itself,
// a group message with the sender key; a DM retry of a group message
// carries the distribution in its payload.
func (d *Handler) message(ctx context.Context, peer *protocol.SignalAddress, req Request) ([]byte, error) {
	if req.DMCT != nil {
		pt, err := d.decryptDM(ctx, peer, req.DMKind, req.DMCT)
		if err != nil {
			return nil, err
		}
		dm, err := fakeserver.DecodePayload(pt)
		if err != nil {
			return nil, &endpoint.Failure{Class: endpoint.Other, Err: err}
		}
		if err := d.ep.ProcessSenderKeyDistribution(ctx, req.Group, peer, dm.SKDM); err != nil {
			return nil, err
		}
	}
	if req.Kind == endpoint.SkMsg {
		return d.ep.GroupDecrypt(ctx, req.Group, peer, req.CT)
	}
	pt, err := d.decryptDM(ctx, peer, req.Kind, req.CT)
	if err != nil || req.Group == "" {
		return pt, err
	}
	pl, err := fakeserver.DecodePayload(pt)
	if err != nil {
		return nil, &endpoint.Failure{Class: endpoint.Other, Err: err}
	}
	if pl.SKDM != nil {
		if err := d.ep.ProcessSenderKeyDistribution(ctx, req.Group, peer, pl.SKDM); err != nil {
			return nil, err
		}
	}
	return pt, nil
}

// decrypt is whatsmeow's bufferedDecrypt around the message's decryption.
// With rules it is the whole of it as the harness models it (harness
// model.go bufferedDecrypt): a buffered event without plaintext is
// EventAlreadyProcessed (an old counter), and a handled event's plaintext
// is cleared. note is a line for the history.
func (d *Handler) decrypt(ctx context.Context, peer *protocol.SignalAddress, req Request) (pt []byte, note string, err error) {
	rules := req.Rules
	if d.buffer == nil {
		pt, err = d.message(ctx, peer, req)
		return pt, "", err
	}
	hash := sha256.Sum256(append(append([]byte(nil), req.DMCT...), req.CT...))
	// The buffer's calls go to the store unwrapped; they are steps too.
	d.writes.before()
	buf, err := d.buffer.GetBufferedEvent(ctx, hash)
	if err != nil {
		return nil, "", &endpoint.StoreErr{Err: err}
	} else if buf != nil && buf.Plaintext != nil {
		return buf.Plaintext, "answered from the decrypted-event buffer", nil
	} else if buf != nil && rules {
		return nil, "", &endpoint.Failure{Class: endpoint.OldCounter, Err: errors.New("event already processed (decrypted-event buffer)")}
	}
	err = d.buffer.DoDecryptionTxn(ctx, func(ctx context.Context) error {
		var err error
		if pt, err = d.message(ctx, peer, req); err != nil {
			return err
		}
		d.writes.before()
		return d.buffer.PutBufferedEvent(ctx, hash, pt, time.Unix(0, 0))
	})
	if err == nil && rules {
		d.writes.before()
		if cerr := d.buffer.ClearBufferedEventPlaintext(ctx, hash); cerr != nil {
			note = fmt.Sprintf("clearing the buffered plaintext: %v", cerr)
		}
	}
	return pt, note, err
}
