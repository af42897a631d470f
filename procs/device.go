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

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/stores"
)

// DeviceJID is the Signal identity of the device under test.
var DeviceJID = types.JID{User: "bot", Server: types.DefaultUserServer}

// Handler is the device under test behind the line protocol: the same
// libsignal calls over whatsmeow's store.Device as harness runs, one
// request at a time (a process that handles its messages in order), or
// with gates (Gated) its tasks in flight at once, one store call at a time.
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
	// gates, when set (Gated), parks the tasks at their store calls;
	// ends keeps each task's reply until its end is reported.
	gates *devproto.Gates
	ends  map[string]devproto.Reply
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

// open is the device on its credentials; with gates its tasks' store
// calls wait at gates.
func (d *Handler) open(creds endpoint.Creds) {
	d.ep = endpoint.New(DeviceJID, creds, d.set)
	if d.gates != nil {
		d.ep.Probe.Gate = devproto.Gate
	}
}

func (d *Handler) creds() stores.CredsStore {
	cs, _ := d.storage.(stores.CredsStore)
	return cs
}

// ChildName is the whatsmeow child's device name in its hello line.
const ChildName = "badmac-device@whatsmeow"

// provisionPreKeys is how many one-time prekeys provision makes when the
// request does not say.
const provisionPreKeys = 30

// Handle answers one request (docs/device-protocol.md "The whatsmeow
// child"). A decrypt or encrypt runs whole as one task and its reply
// carries the task's end. A request with StopAt > 0 calls the device's
// stop function (OnStop) when its step StopAt begins: step s is the start
// of its s-th store call, and the step after its last call is the moment
// before it answers.
func (d *Handler) Handle(ctx context.Context, req devproto.Request) devproto.Reply {
	counted := req.Op == devproto.OpDecrypt || req.Op == devproto.OpEncrypt
	if counted {
		d.writes.mu.Lock()
		d.writes.steps, d.writes.stopAt = 0, req.StopAt
		d.writes.mu.Unlock()
	}
	rep, err := d.handle(ctx, req)
	d.answer(&rep, req, err)
	d.writes.mu.Lock()
	rep.Calls = d.writes.steps
	late := counted && d.writes.armed && d.writes.stopAt > d.writes.steps
	d.writes.stopAt = 0
	d.writes.mu.Unlock()
	if late {
		d.writes.stop(rep.Calls+1, rep.Writes)
	}
	return rep
}

// answer fills what every reply to req carries: v, id, ok or err, the
// events (never null) and the store writes so far.
func (d *Handler) answer(rep *devproto.Reply, req devproto.Request, err error) {
	rep.V, rep.ID, rep.OK = 1, req.ID, err == nil
	if err != nil {
		rep.Err = err.Error()
	}
	if rep.Events == nil {
		rep.Events = []devproto.Event{}
	}
	d.writes.mu.Lock()
	rep.Writes = d.writes.n
	d.writes.mu.Unlock()
}

// OnStop sets what happens when a request's StopAt step begins; stop must
// not return (it unwinds or the process is killed while it waits).
func (d *Handler) OnStop(stop func(step, writes int)) {
	d.writes.mu.Lock()
	defer d.writes.mu.Unlock()
	d.writes.stop = stop
}

// pubCreds are the credentials' public halves, as the wire carries them.
func pubCreds(c endpoint.Creds) *devproto.Creds {
	return &devproto.Creds{Reg: c.RegistrationID, Identity: c.Identity.Pub[:], SPKID: c.SignedPreKey.KeyID,
		SPK: c.SignedPreKey.Pub[:], Sig: c.SignedPreKey.Signature[:]}
}

func pubPreKeys(pks []*keys.PreKey) []devproto.PreKey {
	var out []devproto.PreKey
	for _, pk := range pks {
		out = append(out, devproto.PreKey{ID: pk.KeyID, Pub: pk.Pub[:]})
	}
	return out
}

// end is a task's end event: ok with pt (a decrypt) or kind and ct (an
// encrypt), or failed with err's class.
func end(task string, err error) devproto.Event {
	ev := devproto.Event{Task: task, Done: true, OK: err == nil}
	if err != nil {
		ev.Class, ev.Err = string(endpoint.ClassOf(err)), err.Error()
	}
	return ev
}

// needBundle is an encrypt's end for want of a session: the harness
// fetches the contact's bundle and sends the encrypt again with it.
func needBundle(task string) devproto.Event {
	return devproto.Event{Task: task, Done: true, Class: string(endpoint.NoSession), Err: "no session", NeedBundle: true}
}

func (d *Handler) handle(ctx context.Context, req devproto.Request) (devproto.Reply, error) {
	var rep devproto.Reply
	cs := d.creds()
	switch req.Op {
	case devproto.OpProvision:
		if cs == nil {
			return rep, errors.New("storage keeps no credentials")
		}
		creds := endpoint.NewCreds()
		if err := cs.SaveCreds(ctx, creds.Encode()); err != nil {
			return rep, err
		}
		d.open(creds)
		n := req.PreKeys
		if n <= 0 {
			n = provisionPreKeys
		}
		pks, err := d.ep.Device.PreKeys.GetOrGenPreKeys(ctx, uint32(n))
		if err == nil && len(pks) > 0 {
			err = d.ep.Device.PreKeys.MarkPreKeysAsUploaded(ctx, pks[len(pks)-1].KeyID)
		}
		if err != nil {
			return rep, err
		}
		d.writes.arm()
		rep.Creds, rep.PreKeys = pubCreds(creds), pubPreKeys(pks)
		return rep, nil
	case devproto.OpLoad:
		if cs == nil {
			return rep, errors.New("storage keeps no credentials")
		}
		b, err := cs.LoadCreds(ctx)
		if err != nil {
			return rep, err
		}
		creds, err := endpoint.DecodeCreds(b)
		if err != nil {
			return rep, err
		}
		d.open(creds)
		d.writes.arm()
		rep.Creds = pubCreds(creds)
		return rep, nil
	case devproto.OpState, devproto.OpDecrypt, devproto.OpEncrypt:
	default:
		return rep, fmt.Errorf("unknown op %q (the whatsmeow child answers provision, load, state, decrypt, encrypt)", req.Op)
	}
	if d.ep == nil {
		return rep, fmt.Errorf("%s before provision or load", req.Op)
	}
	if req.Op == devproto.OpState {
		// The restart check of uploaded, unclaimed prekeys: which of IDs
		// the store still holds.
		var found []*keys.PreKey
		for _, id := range req.IDs {
			pk, err := d.ep.Device.PreKeys.GetPreKey(ctx, id)
			if err != nil {
				return rep, err
			}
			if pk != nil {
				found = append(found, pk)
			}
		}
		rep.Creds, rep.PreKeys = pubCreds(d.ep.Creds), pubPreKeys(found)
		return rep, nil
	}
	if req.Task == "" {
		return rep, fmt.Errorf("%s without a task", req.Op)
	}
	peer := protocol.NewSignalAddress(req.Peer, uint32(req.PeerDev))
	if req.Op == devproto.OpEncrypt {
		send := d.send
		if req.Rules && req.Retry {
			send = d.handleRetryReceipt
		}
		rep, ev, err := send(ctx, peer, req)
		if err != nil {
			ev = end(req.Task, err)
		}
		if !rep.Dropped {
			rep.Events = []devproto.Event{ev}
		}
		return rep, nil
	}
	pt, note, err := d.decrypt(ctx, peer, req)
	ev := end(req.Task, err)
	rep.Events, rep.Note = []devproto.Event{ev}, note
	if err == nil {
		rep.Events[0].PT = pt
		return rep, nil
	}
	if endpoint.ClassOf(err) == endpoint.OldCounter {
		return rep, nil // whatsmeow's decryptMessages ignores an old counter
	}
	// sendRetryReceipt, for both drivers (Converse's and the harness
	// device's): counted per message in this process, continuing from
	// the copy's count after a restart; none from MaxRetries (retry.go
	// 396 "if retryCount >= 5"), keys from count 2 (retry.go 428 "if
	// retryCount > 1 || forceIncludeIdentity", whatsmeow 11cf47c62d32).
	rep.Receipt = d.retries.Next(req.Msg, req.Count)
	if rep.Receipt >= fakeserver.MaxRetries {
		rep.Receipt, rep.Note = 0, fmt.Sprintf("no retry receipt (count %d)", rep.Receipt)
		return rep, nil
	}
	// forceIncludeIdentity: a group message with no DM part whose
	// sender key is unknown (decryptMessages' isUnavailable).
	force := req.Kind == endpoint.SkMsg && req.DMCT == nil && errors.Is(err, signalerror.ErrNoSenderKeyForUser)
	if fakeserver.WantsKeys(rep.Receipt, force) {
		// whatsmeow's retry receipt carries a fresh one-time prekey.
		pk, gerr := d.ep.Device.PreKeys.GenOnePreKey(ctx)
		if gerr != nil && req.Rules {
			rep.Note = fmt.Sprintf("retry receipt without keys: %v", gerr)
			return rep, nil
		} else if gerr != nil {
			// The receipt goes without keys; the request fails with why.
			return rep, gerr
		}
		rep.PreKey = &pubPreKeys([]*keys.PreKey{pk})[0]
	}
	return rep, nil
}

// send encrypts a reply as whatsmeow does. A message (send.go SendMessage,
// encryptMessageForDevices) loads the sessions with GetManySessions into a
// per-send cache (store/sessioncache.go WithCachedSessions), builds a
// session from a fetched bundle for a device with none, encrypts from the
// cache and writes it back with PutManySessions (PutCachedSessions). The
// answer to a retry receipt (retry.go handleRetryReceipt) encrypts without
// the cache: GetSession/PutSession.
func (d *Handler) send(ctx context.Context, peer *protocol.SignalAddress, req devproto.Request) (devproto.Reply, devproto.Event, error) {
	var rep devproto.Reply
	var b *prekey.Bundle
	if req.Bundle != nil {
		var err error
		if b, err = req.Bundle.ToBundle(); err != nil {
			return rep, devproto.Event{}, err
		}
	}
	sctx := ctx
	if !req.Retry {
		existing, cctx, err := d.ep.Device.WithCachedSessions(ctx, []string{peer.String()})
		if err != nil {
			return rep, devproto.Event{}, err
		}
		if b == nil && !existing[peer.String()] {
			return rep, needBundle(req.Task), nil
		}
		sctx = cctx
	} else if b == nil {
		if has, err := d.ep.Device.ContainsSession(ctx, peer); err != nil {
			return rep, devproto.Event{}, err
		} else if !has {
			return rep, needBundle(req.Task), nil
		}
	}
	if b != nil {
		if err := d.processBundle(sctx, peer, b); err != nil {
			return rep, devproto.Event{}, fmt.Errorf("failed to process prekey bundle: %w", err)
		}
	}
	kind, ct, err := d.ep.Encrypt(sctx, peer, req.PT)
	if !req.Retry {
		if perr := d.ep.Device.PutCachedSessions(sctx); perr != nil && err == nil {
			err = perr
		}
	}
	return rep, sent(req.Task, kind, ct), err
}

// sent is an encrypt's successful end.
func sent(task, kind string, ct []byte) devproto.Event {
	ev := end(task, nil)
	ev.Kind, ev.CT = kind, ct
	return ev
}

// handleRetryReceipt is whatsmeow's (retry.go), as the harness models it
// (harness model.go handleRetryReceipt): the receipt is admitted (dropped
// from the tenth for one message); without keys shouldRecreateSession
// decides whether to rebuild from a fetched bundle (need_bundle; the
// parent fetches and comes back with Fetched); then
// encryptMessageForDevice with no session cache.
func (d *Handler) handleRetryReceipt(ctx context.Context, peer *protocol.SignalAddress, req devproto.Request) (devproto.Reply, devproto.Event, error) {
	var rep devproto.Reply
	var b *prekey.Bundle
	if req.Bundle != nil {
		var err error
		if b, err = req.Bundle.ToBundle(); err != nil {
			return rep, devproto.Event{}, err
		}
	}
	if !req.Fetched {
		if !d.rh.Admit(peer, req.Msg) {
			rep.Dropped = true
			return rep, devproto.Event{}, nil
		}
		if b == nil {
			if reason, ok := d.rh.ShouldRecreate(ctx, d.ep, peer, req.Count); ok {
				rep.Reason = reason
				return rep, needBundle(req.Task), nil
			}
		}
	}
	if b != nil {
		if err := d.processBundle(ctx, peer, b); err != nil {
			return rep, devproto.Event{}, fmt.Errorf("failed to process prekey bundle: %w", err)
		}
	} else if has, err := d.ep.Device.ContainsSession(ctx, peer); err != nil {
		return rep, devproto.Event{}, err
	} else if !has {
		return rep, devproto.Event{}, fmt.Errorf("no signal session established with %s", peer)
	}
	kind, ct, err := d.ep.Encrypt(ctx, peer, req.PT)
	return rep, sent(req.Task, kind, ct), err
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
func (d *Handler) message(ctx context.Context, peer *protocol.SignalAddress, req devproto.Request) ([]byte, error) {
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
func (d *Handler) decrypt(ctx context.Context, peer *protocol.SignalAddress, req devproto.Request) (pt []byte, note string, err error) {
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
