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
	// Refuse, when set, runs after Gate: an error it returns is the
	// call's, and the store is not called (a killed process's goroutines
	// reach no store).
	Refuse func(ctx context.Context, call string) error
	// Exit, when set, runs when the call has returned (after Leave): a
	// harness counts the calls a task completed (docs/design.md §5, the
	// same-client run).
	Exit func(ctx context.Context, call string)
}

type captureKey struct{}

type capture struct {
	loaded bool
	record []byte
}

func (p *Probe) enter(ctx context.Context, call string) error {
	if p.Trace != nil {
		p.Trace(ctx, call)
	}
	sim.Yield(ctx, call)
	if p.Gate != nil {
		p.Gate(ctx, call)
	}
	if p.Refuse != nil {
		return p.Refuse(ctx, call)
	}
	return nil
}

// leave reports the call's end to Leave and marks the store's error.
func (p *Probe) leave(ctx context.Context, call string, result any, err error) error {
	if p.Leave != nil {
		p.Leave(ctx, call, result, err)
	}
	if p.Exit != nil {
		p.Exit(ctx, call)
	}
	if err == nil {
		return nil
	}
	return &StoreErr{Err: err}
}

func (p *Probe) PutIdentity(ctx context.Context, address string, key [32]byte) error {
	call := "PutIdentity " + address
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.Identities.PutIdentity(ctx, address, key))
}

func (p *Probe) DeleteAllIdentities(ctx context.Context, phone string) error {
	call := "DeleteAllIdentities " + phone
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.Identities.DeleteAllIdentities(ctx, phone))
}

func (p *Probe) DeleteIdentity(ctx context.Context, address string) error {
	call := "DeleteIdentity " + address
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.Identities.DeleteIdentity(ctx, address))
}

func (p *Probe) IsTrustedIdentity(ctx context.Context, address string, key [32]byte) (bool, error) {
	call := "IsTrustedIdentity " + address
	if err := p.enter(ctx, call); err != nil {
		return false, p.leave(ctx, call, nil, err)
	}
	ok, err := p.Set.Identities.IsTrustedIdentity(ctx, address, key)
	return ok, p.leave(ctx, call, ok, err)
}

func (p *Probe) GetSession(ctx context.Context, address string) ([]byte, error) {
	call := "GetSession " + address
	if err := p.enter(ctx, call); err != nil {
		return nil, p.leave(ctx, call, nil, err)
	}
	b, err := p.Set.Sessions.GetSession(ctx, address)
	if c, ok := ctx.Value(captureKey{}).(*capture); ok && err == nil {
		c.loaded, c.record = true, append([]byte(nil), b...)
	}
	return b, p.leave(ctx, call, b, err)
}

func (p *Probe) HasSession(ctx context.Context, address string) (bool, error) {
	call := "HasSession " + address
	if err := p.enter(ctx, call); err != nil {
		return false, p.leave(ctx, call, nil, err)
	}
	ok, err := p.Set.Sessions.HasSession(ctx, address)
	return ok, p.leave(ctx, call, ok, err)
}

func (p *Probe) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	call := "GetManySessions " + strings.Join(addresses, ",")
	if err := p.enter(ctx, call); err != nil {
		return nil, p.leave(ctx, call, nil, err)
	}
	m, err := p.Set.Sessions.GetManySessions(ctx, addresses)
	return m, p.leave(ctx, call, m, err)
}

func (p *Probe) PutSession(ctx context.Context, address string, session []byte) error {
	call := "PutSession " + address
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.Sessions.PutSession(ctx, address, session))
}

func (p *Probe) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	addrs := make([]string, 0, len(sessions))
	for a := range sessions {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs) // map order must not reach the history
	call := "PutManySessions " + strings.Join(addrs, ",")
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.Sessions.PutManySessions(ctx, sessions))
}

func (p *Probe) DeleteAllSessions(ctx context.Context, phone string) error {
	call := "DeleteAllSessions " + phone
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.Sessions.DeleteAllSessions(ctx, phone))
}

func (p *Probe) DeleteSession(ctx context.Context, address string) error {
	call := "DeleteSession " + address
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.Sessions.DeleteSession(ctx, address))
}

func (p *Probe) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	call := "MigratePNToLID"
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.Sessions.MigratePNToLID(ctx, pn, lid))
}

func (p *Probe) GetOrGenPreKeys(ctx context.Context, count uint32) ([]*keys.PreKey, error) {
	call := "GetOrGenPreKeys"
	if err := p.enter(ctx, call); err != nil {
		return nil, p.leave(ctx, call, nil, err)
	}
	k, err := p.Set.PreKeys.GetOrGenPreKeys(ctx, count)
	return k, p.leave(ctx, call, k, err)
}

func (p *Probe) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	call := "GenOnePreKey"
	if err := p.enter(ctx, call); err != nil {
		return nil, p.leave(ctx, call, nil, err)
	}
	k, err := p.Set.PreKeys.GenOnePreKey(ctx)
	return k, p.leave(ctx, call, k, err)
}

func (p *Probe) GetPreKey(ctx context.Context, id uint32) (*keys.PreKey, error) {
	call := "GetPreKey"
	if err := p.enter(ctx, call); err != nil {
		return nil, p.leave(ctx, call, nil, err)
	}
	k, err := p.Set.PreKeys.GetPreKey(ctx, id)
	return k, p.leave(ctx, call, k, err)
}

func (p *Probe) RemovePreKey(ctx context.Context, id uint32) error {
	call := "RemovePreKey"
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.PreKeys.RemovePreKey(ctx, id))
}

func (p *Probe) MarkPreKeysAsUploaded(ctx context.Context, upToID uint32) error {
	call := "MarkPreKeysAsUploaded"
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.PreKeys.MarkPreKeysAsUploaded(ctx, upToID))
}

func (p *Probe) UploadedPreKeyCount(ctx context.Context) (int, error) {
	call := "UploadedPreKeyCount"
	if err := p.enter(ctx, call); err != nil {
		return 0, p.leave(ctx, call, nil, err)
	}
	n, err := p.Set.PreKeys.UploadedPreKeyCount(ctx)
	return n, p.leave(ctx, call, n, err)
}

func (p *Probe) PutSenderKey(ctx context.Context, group, user string, session []byte) error {
	call := "PutSenderKey " + user
	if err := p.enter(ctx, call); err != nil {
		return p.leave(ctx, call, nil, err)
	}
	return p.leave(ctx, call, nil, p.Set.SenderKeys.PutSenderKey(ctx, group, user, session))
}

func (p *Probe) GetSenderKey(ctx context.Context, group, user string) ([]byte, error) {
	call := "GetSenderKey " + user
	if err := p.enter(ctx, call); err != nil {
		return nil, p.leave(ctx, call, nil, err)
	}
	b, err := p.Set.SenderKeys.GetSenderKey(ctx, group, user)
	return b, p.leave(ctx, call, SenderKeyRead{Group: group, User: user, Record: b}, err)
}

// SenderKeyRead is what Leave gets for a GetSenderKey.
type SenderKeyRead struct {
	Group, User string
	Record      []byte
}
