package storetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/stores"
)

// proc is one instance of the store under test, open in a child process
// of its own (child.go); it implements whatsmeow's four interfaces by
// calling the child. Calls from several goroutines go out at once.
type proc struct {
	conn      *devproto.StoreConn
	snapshots bool // the store's Closer is a Snapshotter
	tracer    *tracer
}

// spawn starts a child for the test named test and opens the store over
// dir in it. With tr, the child runs under the tracer (a kill inside a
// store call, killpoint.go).
func spawn(ctx context.Context, test, dir string, tr *tracer, timeout time.Duration) (*proc, error) {
	if test == "" {
		return nil, errors.New("storetest: no test name for the store process")
	}
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := devproto.StoreCmd{Path: exe, Args: childArgs(test), Env: append(os.Environ(), childEnv+"="+test), Timeout: timeout}
	if tr != nil {
		cmd.Start = tr.start
	}
	conn, err := devproto.StartStore(ctx, cmd)
	if err != nil {
		return nil, fmt.Errorf("starting the store process: %w", err)
	}
	p := &proc{conn: conn, tracer: tr}
	rep, err := conn.Call(ctx, devproto.StoreRequest{Op: devproto.StoreOpen, Dir: dir})
	if err == nil {
		err = devproto.StoreError(rep)
	}
	if err != nil {
		conn.Kill()
		return nil, err
	}
	p.snapshots = rep.Snapshots
	return p, nil
}

// kill is a crash: SIGKILL, no Close, nothing deferred runs.
func (p *proc) kill() { p.conn.Kill() }

// close is a clean shutdown: the store's Close, then the process exits.
func (p *proc) close(ctx context.Context) error {
	if p.conn.Exited() {
		return nil
	}
	rep, err := p.conn.Call(ctx, devproto.StoreRequest{Op: devproto.StoreClose})
	if err == nil {
		err = devproto.StoreError(rep)
	}
	if werr := p.conn.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("the store process after Close: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("Close: %w", err)
	}
	return nil
}

func (p *proc) do(ctx context.Context, req devproto.StoreRequest) (devproto.StoreReply, error) {
	rep, err := p.conn.Call(ctx, req)
	if err != nil {
		return rep, err
	}
	return rep, devproto.StoreError(rep)
}

func (p *proc) call(ctx context.Context, method string, req devproto.StoreRequest) (devproto.StoreReply, error) {
	req.Op, req.Method = devproto.StoreCall, method
	return p.do(ctx, req)
}

func (p *proc) snapshot(ctx context.Context) ([]byte, error) {
	rep, err := p.do(ctx, devproto.StoreRequest{Op: devproto.StoreSnapshot})
	return rep.Backup, err
}

func (p *proc) restore(ctx context.Context, b []byte) error {
	_, err := p.do(ctx, devproto.StoreRequest{Op: devproto.StoreRestore, Backup: b})
	return err
}

var _ stores.All = (*proc)(nil)

func (p *proc) PutIdentity(ctx context.Context, address string, key [32]byte) error {
	_, err := p.call(ctx, "PutIdentity", devproto.StoreRequest{Addr: address, Key: key[:]})
	return err
}

func (p *proc) DeleteAllIdentities(ctx context.Context, phone string) error {
	_, err := p.call(ctx, "DeleteAllIdentities", devproto.StoreRequest{Addr: phone})
	return err
}

func (p *proc) DeleteIdentity(ctx context.Context, address string) error {
	_, err := p.call(ctx, "DeleteIdentity", devproto.StoreRequest{Addr: address})
	return err
}

func (p *proc) IsTrustedIdentity(ctx context.Context, address string, key [32]byte) (bool, error) {
	rep, err := p.call(ctx, "IsTrustedIdentity", devproto.StoreRequest{Addr: address, Key: key[:]})
	return rep.Bool, err
}

func record1(rep devproto.StoreReply) []byte {
	if rep.Nil {
		return nil
	}
	if rep.Record == nil {
		return []byte{}
	}
	return rep.Record
}

func (p *proc) GetSession(ctx context.Context, address string) ([]byte, error) {
	rep, err := p.call(ctx, "GetSession", devproto.StoreRequest{Addr: address})
	return record1(rep), err
}

func (p *proc) HasSession(ctx context.Context, address string) (bool, error) {
	rep, err := p.call(ctx, "HasSession", devproto.StoreRequest{Addr: address})
	return rep.Bool, err
}

func (p *proc) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	rep, err := p.call(ctx, "GetManySessions", devproto.StoreRequest{Addrs: addresses})
	if err != nil || rep.Nil {
		return nil, err
	}
	if rep.Records == nil {
		return map[string][]byte{}, nil
	}
	return rep.Records, nil
}

func (p *proc) PutSession(ctx context.Context, address string, session []byte) error {
	_, err := p.call(ctx, "PutSession", devproto.StoreRequest{Addr: address, Record: session})
	return err
}

func (p *proc) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	_, err := p.call(ctx, "PutManySessions", devproto.StoreRequest{Records: sessions})
	return err
}

func (p *proc) DeleteAllSessions(ctx context.Context, phone string) error {
	_, err := p.call(ctx, "DeleteAllSessions", devproto.StoreRequest{Addr: phone})
	return err
}

func (p *proc) DeleteSession(ctx context.Context, address string) error {
	_, err := p.call(ctx, "DeleteSession", devproto.StoreRequest{Addr: address})
	return err
}

func (p *proc) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	_, err := p.call(ctx, "MigratePNToLID", devproto.StoreRequest{PN: pn.String(), LID: lid.String()})
	return err
}

func prekeysFrom(rep devproto.StoreReply) []*keys.PreKey {
	if rep.Nil {
		return nil
	}
	out := make([]*keys.PreKey, 0, len(rep.PreKeys))
	for _, w := range rep.PreKeys {
		out = append(out, fromWire(w))
	}
	return out
}

func onePreKey(rep devproto.StoreReply) *keys.PreKey {
	if ks := prekeysFrom(rep); len(ks) > 0 {
		return ks[0]
	}
	return nil
}

func (p *proc) GetOrGenPreKeys(ctx context.Context, count uint32) ([]*keys.PreKey, error) {
	rep, err := p.call(ctx, "GetOrGenPreKeys", devproto.StoreRequest{Count: count})
	return prekeysFrom(rep), err
}

func (p *proc) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	rep, err := p.call(ctx, "GenOnePreKey", devproto.StoreRequest{})
	return onePreKey(rep), err
}

func (p *proc) GetPreKey(ctx context.Context, id uint32) (*keys.PreKey, error) {
	rep, err := p.call(ctx, "GetPreKey", devproto.StoreRequest{KeyID: id})
	return onePreKey(rep), err
}

func (p *proc) RemovePreKey(ctx context.Context, id uint32) error {
	_, err := p.call(ctx, "RemovePreKey", devproto.StoreRequest{KeyID: id})
	return err
}

func (p *proc) MarkPreKeysAsUploaded(ctx context.Context, upToID uint32) error {
	_, err := p.call(ctx, "MarkPreKeysAsUploaded", devproto.StoreRequest{KeyID: upToID})
	return err
}

func (p *proc) UploadedPreKeyCount(ctx context.Context) (int, error) {
	rep, err := p.call(ctx, "UploadedPreKeyCount", devproto.StoreRequest{})
	return rep.Int, err
}

func (p *proc) PutSenderKey(ctx context.Context, group, user string, session []byte) error {
	_, err := p.call(ctx, "PutSenderKey", devproto.StoreRequest{Group: group, Addr: user, Record: session})
	return err
}

func (p *proc) GetSenderKey(ctx context.Context, group, user string) ([]byte, error) {
	rep, err := p.call(ctx, "GetSenderKey", devproto.StoreRequest{Group: group, Addr: user})
	return record1(rep), err
}
