package endpoint

import (
	"context"
	"sort"
	"strings"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/sim"
	"github.com/badmac/badmac/stores"
)

// Probe sits between store.Device and a candidate store. Every call is a
// yield point of the controlled scheduler and, when a Trace is set, one line
// of the history; errors from the store are marked as StoreErr; the bytes a
// decrypt loaded are kept for classification.
type Probe struct {
	Set   stores.Set
	Trace func(ctx context.Context, call string)
	// Gate, when set, runs after the yield point and before the call: a
	// harness parks a task there while something it models (a database
	// lock) would make the call wait, or until its scheduler lets the
	// call go (realclient's controlled mode).
	Gate func(ctx context.Context, call string)
	// Leave, when set, runs when the call returns, with what it returned
	// (the record bytes, the prekey, the trust answer; nil for writes) and
	// the store's error, unwrapped.
	Leave func(ctx context.Context, call string, result any, err error)
}

type captureKey struct{}

type capture struct {
	loaded bool
	record []byte
}

func (p *Probe) enter(ctx context.Context, call string) {
	if p.Trace != nil {
		p.Trace(ctx, call)
	}
	sim.Yield(ctx, call)
	if p.Gate != nil {
		p.Gate(ctx, call)
	}
}

// leave reports the call's end to Leave and marks the store's error.
func (p *Probe) leave(ctx context.Context, call string, result any, err error) error {
	if p.Leave != nil {
		p.Leave(ctx, call, result, err)
	}
	if err == nil {
		return nil
	}
	return &StoreErr{Err: err}
}

func (p *Probe) PutIdentity(ctx context.Context, address string, key [32]byte) error {
	call := "PutIdentity " + address
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.Identities.PutIdentity(ctx, address, key))
}

func (p *Probe) DeleteAllIdentities(ctx context.Context, phone string) error {
	call := "DeleteAllIdentities " + phone
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.Identities.DeleteAllIdentities(ctx, phone))
}

func (p *Probe) DeleteIdentity(ctx context.Context, address string) error {
	call := "DeleteIdentity " + address
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.Identities.DeleteIdentity(ctx, address))
}

func (p *Probe) IsTrustedIdentity(ctx context.Context, address string, key [32]byte) (bool, error) {
	call := "IsTrustedIdentity " + address
	p.enter(ctx, call)
	ok, err := p.Set.Identities.IsTrustedIdentity(ctx, address, key)
	return ok, p.leave(ctx, call, ok, err)
}

func (p *Probe) GetSession(ctx context.Context, address string) ([]byte, error) {
	call := "GetSession " + address
	p.enter(ctx, call)
	b, err := p.Set.Sessions.GetSession(ctx, address)
	if c, ok := ctx.Value(captureKey{}).(*capture); ok && err == nil {
		c.loaded, c.record = true, append([]byte(nil), b...)
	}
	return b, p.leave(ctx, call, b, err)
}

func (p *Probe) HasSession(ctx context.Context, address string) (bool, error) {
	call := "HasSession " + address
	p.enter(ctx, call)
	ok, err := p.Set.Sessions.HasSession(ctx, address)
	return ok, p.leave(ctx, call, ok, err)
}

func (p *Probe) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	call := "GetManySessions " + strings.Join(addresses, ",")
	p.enter(ctx, call)
	m, err := p.Set.Sessions.GetManySessions(ctx, addresses)
	return m, p.leave(ctx, call, m, err)
}

func (p *Probe) PutSession(ctx context.Context, address string, session []byte) error {
	call := "PutSession " + address
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.Sessions.PutSession(ctx, address, session))
}

func (p *Probe) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	addrs := make([]string, 0, len(sessions))
	for a := range sessions {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs) // map order must not reach the history
	call := "PutManySessions " + strings.Join(addrs, ",")
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.Sessions.PutManySessions(ctx, sessions))
}

func (p *Probe) DeleteAllSessions(ctx context.Context, phone string) error {
	call := "DeleteAllSessions " + phone
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.Sessions.DeleteAllSessions(ctx, phone))
}

func (p *Probe) DeleteSession(ctx context.Context, address string) error {
	call := "DeleteSession " + address
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.Sessions.DeleteSession(ctx, address))
}

func (p *Probe) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	call := "MigratePNToLID"
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.Sessions.MigratePNToLID(ctx, pn, lid))
}

func (p *Probe) GetOrGenPreKeys(ctx context.Context, count uint32) ([]*keys.PreKey, error) {
	call := "GetOrGenPreKeys"
	p.enter(ctx, call)
	k, err := p.Set.PreKeys.GetOrGenPreKeys(ctx, count)
	return k, p.leave(ctx, call, k, err)
}

func (p *Probe) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	call := "GenOnePreKey"
	p.enter(ctx, call)
	k, err := p.Set.PreKeys.GenOnePreKey(ctx)
	return k, p.leave(ctx, call, k, err)
}

func (p *Probe) GetPreKey(ctx context.Context, id uint32) (*keys.PreKey, error) {
	call := "GetPreKey"
	p.enter(ctx, call)
	k, err := p.Set.PreKeys.GetPreKey(ctx, id)
	return k, p.leave(ctx, call, k, err)
}

func (p *Probe) RemovePreKey(ctx context.Context, id uint32) error {
	call := "RemovePreKey"
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.PreKeys.RemovePreKey(ctx, id))
}

func (p *Probe) MarkPreKeysAsUploaded(ctx context.Context, upToID uint32) error {
	call := "MarkPreKeysAsUploaded"
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.PreKeys.MarkPreKeysAsUploaded(ctx, upToID))
}

func (p *Probe) UploadedPreKeyCount(ctx context.Context) (int, error) {
	call := "UploadedPreKeyCount"
	p.enter(ctx, call)
	n, err := p.Set.PreKeys.UploadedPreKeyCount(ctx)
	return n, p.leave(ctx, call, n, err)
}

func (p *Probe) PutSenderKey(ctx context.Context, group, user string, session []byte) error {
	call := "PutSenderKey " + user
	p.enter(ctx, call)
	return p.leave(ctx, call, nil, p.Set.SenderKeys.PutSenderKey(ctx, group, user, session))
}

func (p *Probe) GetSenderKey(ctx context.Context, group, user string) ([]byte, error) {
	call := "GetSenderKey " + user
	p.enter(ctx, call)
	b, err := p.Set.SenderKeys.GetSenderKey(ctx, group, user)
	return b, p.leave(ctx, call, SenderKeyRead{Group: group, User: user, Record: b}, err)
}

// SenderKeyRead is what Leave gets for a GetSenderKey.
type SenderKeyRead struct {
	Group, User string
	Record      []byte
}
