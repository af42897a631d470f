package procs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/stores"
)

// DeviceJID is the Signal identity of the device under test.
var DeviceJID = types.JID{User: "bot", Server: types.DefaultUserServer}

// Device is the device under test behind the line protocol: the same
// libsignal calls over whatsmeow's store.Device as harness runs, one
// request at a time (a process that handles its messages in order).
type Device struct {
	storage stores.Storage
	set     stores.Set
	ep      *endpoint.Endpoint
	// buffer, when set, is whatsmeow's decrypted-event buffer
	// (EnableDecryptedEventBuffer): decrypt and persist in one transaction,
	// a redelivered ciphertext answered from the buffer.
	buffer store.EventBuffer
	writes *counter
}

// NewDevice opens the device over storage. dieAfter > 0 calls die right
// after the dieAfter-th store write of recv and send requests completes.
// txn turns on the decrypted-event buffer; storage must offer it.
func NewDevice(ctx context.Context, storage stores.Storage, txn bool, dieAfter int, die func()) (*Device, error) {
	set, err := storage.Instance(ctx)
	if err != nil {
		return nil, err
	}
	d := &Device{storage: storage, writes: &counter{after: dieAfter, die: die}}
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

func (d *Device) creds() stores.CredsStore {
	cs, _ := d.storage.(stores.CredsStore)
	return cs
}

// Handle answers one request. A recv or send request with StopAt > 0
// calls the device's stop function (OnStop) when its step StopAt begins:
// step s is the start of its s-th store call, and the step after its last
// call is the moment before it answers.
func (d *Device) Handle(ctx context.Context, req Request) Response {
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
func (d *Device) OnStop(stop func(step, writes int)) {
	d.writes.mu.Lock()
	defer d.writes.mu.Unlock()
	d.writes.stop = stop
}

func (d *Device) handle(ctx context.Context, req Request) (Response, error) {
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
		pt, err := d.decrypt(ctx, peer, req.Kind, req.CT)
		if err == nil {
			return Response{OK: true, PT: pt}, nil
		}
		resp := Response{Class: string(endpoint.ClassOf(err)), Err: err.Error()}
		if endpoint.ClassOf(err) != endpoint.OldCounter {
			// whatsmeow's retry receipt carries a fresh one-time prekey.
			pk, gerr := d.ep.Device.PreKeys.GenOnePreKey(ctx)
			if gerr != nil {
				return resp, gerr
			}
			resp.PreKeys = toPreKeys([]*keys.PreKey{pk})
		}
		return resp, nil
	case OpSend:
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
func (d *Device) send(ctx context.Context, peer *protocol.SignalAddress, req Request) (Response, error) {
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
		if err := d.ep.ProcessBundle(sctx, peer, b); err != nil {
			return Response{}, err
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

// decrypt is whatsmeow's bufferedDecrypt around decryptDM.
func (d *Device) decrypt(ctx context.Context, peer *protocol.SignalAddress, kind string, ct []byte) ([]byte, error) {
	if d.buffer == nil {
		return d.ep.DecryptDM(ctx, peer, kind, ct)
	}
	hash := sha256.Sum256(ct)
	// The buffer's calls go to the store unwrapped; they are steps too.
	d.writes.before()
	buf, err := d.buffer.GetBufferedEvent(ctx, hash)
	if err != nil {
		return nil, &endpoint.StoreErr{Err: err}
	} else if buf != nil && buf.Plaintext != nil {
		return buf.Plaintext, nil
	}
	var pt []byte
	err = d.buffer.DoDecryptionTxn(ctx, func(ctx context.Context) error {
		var err error
		if pt, err = d.ep.DecryptDM(ctx, peer, kind, ct); err != nil {
			return err
		}
		d.writes.before()
		return d.buffer.PutBufferedEvent(ctx, hash, pt, time.Unix(0, 0))
	})
	return pt, err
}
