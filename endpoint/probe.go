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
	// lock) would make the call wait.
	Gate func(ctx context.Context, call string)
	// Exit, when set, runs when the call has returned: a harness counts
	// the calls a task completed (docs/design.md §5, the same-client run).
	Exit func(ctx context.Context, call string)
}

type captureKey struct{}

type capture struct {
	loaded bool
	record []byte
}

// enter is the call's yield point; it returns the call for exit, which
// every method defers (`defer p.exit(ctx, p.enter(ctx, call))`), so exit
// runs once the store has answered.
func (p *Probe) enter(ctx context.Context, call string) string {
	if p.Trace != nil {
		p.Trace(ctx, call)
	}
	sim.Yield(ctx, call)
	if p.Gate != nil {
		p.Gate(ctx, call)
	}
	return call
}

func (p *Probe) exit(ctx context.Context, call string) {
	if p.Exit != nil {
		p.Exit(ctx, call)
	}
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return &StoreErr{Err: err}
}

func (p *Probe) PutIdentity(ctx context.Context, address string, key [32]byte) error {
	defer p.exit(ctx, p.enter(ctx, "PutIdentity "+address))
	return wrap(p.Set.Identities.PutIdentity(ctx, address, key))
}

func (p *Probe) DeleteAllIdentities(ctx context.Context, phone string) error {
	defer p.exit(ctx, p.enter(ctx, "DeleteAllIdentities "+phone))
	return wrap(p.Set.Identities.DeleteAllIdentities(ctx, phone))
}

func (p *Probe) DeleteIdentity(ctx context.Context, address string) error {
	defer p.exit(ctx, p.enter(ctx, "DeleteIdentity "+address))
	return wrap(p.Set.Identities.DeleteIdentity(ctx, address))
}

func (p *Probe) IsTrustedIdentity(ctx context.Context, address string, key [32]byte) (bool, error) {
	defer p.exit(ctx, p.enter(ctx, "IsTrustedIdentity "+address))
	ok, err := p.Set.Identities.IsTrustedIdentity(ctx, address, key)
	return ok, wrap(err)
}

func (p *Probe) GetSession(ctx context.Context, address string) ([]byte, error) {
	defer p.exit(ctx, p.enter(ctx, "GetSession "+address))
	b, err := p.Set.Sessions.GetSession(ctx, address)
	if c, ok := ctx.Value(captureKey{}).(*capture); ok && err == nil {
		c.loaded, c.record = true, append([]byte(nil), b...)
	}
	return b, wrap(err)
}

func (p *Probe) HasSession(ctx context.Context, address string) (bool, error) {
	defer p.exit(ctx, p.enter(ctx, "HasSession "+address))
	ok, err := p.Set.Sessions.HasSession(ctx, address)
	return ok, wrap(err)
}

func (p *Probe) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	defer p.exit(ctx, p.enter(ctx, "GetManySessions "+strings.Join(addresses, ",")))
	m, err := p.Set.Sessions.GetManySessions(ctx, addresses)
	return m, wrap(err)
}

func (p *Probe) PutSession(ctx context.Context, address string, session []byte) error {
	defer p.exit(ctx, p.enter(ctx, "PutSession "+address))
	return wrap(p.Set.Sessions.PutSession(ctx, address, session))
}

func (p *Probe) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	addrs := make([]string, 0, len(sessions))
	for a := range sessions {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs) // map order must not reach the history
	defer p.exit(ctx, p.enter(ctx, "PutManySessions "+strings.Join(addrs, ",")))
	return wrap(p.Set.Sessions.PutManySessions(ctx, sessions))
}

func (p *Probe) DeleteAllSessions(ctx context.Context, phone string) error {
	defer p.exit(ctx, p.enter(ctx, "DeleteAllSessions "+phone))
	return wrap(p.Set.Sessions.DeleteAllSessions(ctx, phone))
}

func (p *Probe) DeleteSession(ctx context.Context, address string) error {
	defer p.exit(ctx, p.enter(ctx, "DeleteSession "+address))
	return wrap(p.Set.Sessions.DeleteSession(ctx, address))
}

func (p *Probe) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	defer p.exit(ctx, p.enter(ctx, "MigratePNToLID"))
	return wrap(p.Set.Sessions.MigratePNToLID(ctx, pn, lid))
}

func (p *Probe) GetOrGenPreKeys(ctx context.Context, count uint32) ([]*keys.PreKey, error) {
	defer p.exit(ctx, p.enter(ctx, "GetOrGenPreKeys"))
	k, err := p.Set.PreKeys.GetOrGenPreKeys(ctx, count)
	return k, wrap(err)
}

func (p *Probe) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	defer p.exit(ctx, p.enter(ctx, "GenOnePreKey"))
	k, err := p.Set.PreKeys.GenOnePreKey(ctx)
	return k, wrap(err)
}

func (p *Probe) GetPreKey(ctx context.Context, id uint32) (*keys.PreKey, error) {
	defer p.exit(ctx, p.enter(ctx, "GetPreKey"))
	k, err := p.Set.PreKeys.GetPreKey(ctx, id)
	return k, wrap(err)
}

func (p *Probe) RemovePreKey(ctx context.Context, id uint32) error {
	defer p.exit(ctx, p.enter(ctx, "RemovePreKey"))
	return wrap(p.Set.PreKeys.RemovePreKey(ctx, id))
}

func (p *Probe) MarkPreKeysAsUploaded(ctx context.Context, upToID uint32) error {
	defer p.exit(ctx, p.enter(ctx, "MarkPreKeysAsUploaded"))
	return wrap(p.Set.PreKeys.MarkPreKeysAsUploaded(ctx, upToID))
}

func (p *Probe) UploadedPreKeyCount(ctx context.Context) (int, error) {
	defer p.exit(ctx, p.enter(ctx, "UploadedPreKeyCount"))
	n, err := p.Set.PreKeys.UploadedPreKeyCount(ctx)
	return n, wrap(err)
}

func (p *Probe) PutSenderKey(ctx context.Context, group, user string, session []byte) error {
	defer p.exit(ctx, p.enter(ctx, "PutSenderKey "+user))
	return wrap(p.Set.SenderKeys.PutSenderKey(ctx, group, user, session))
}

func (p *Probe) GetSenderKey(ctx context.Context, group, user string) ([]byte, error) {
	defer p.exit(ctx, p.enter(ctx, "GetSenderKey "+user))
	b, err := p.Set.SenderKeys.GetSenderKey(ctx, group, user)
	return b, wrap(err)
}
