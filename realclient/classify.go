package realclient

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/petermattis/goid"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	waBinary "go.mau.fi/whatsmeow/binary"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/stores"
)

// How a copy the real client could not decrypt is classified, without its
// log. whatsmeow reports the failure as events.UndecryptableMessage (the
// copy failed; message.go decryptMessages at the pinned commit), but the
// event carries no error. The error is libsignal's, from what the store
// handed the handler's goroutine: so badmac keeps, per goroutine, the last
// record each read returned (Reads: sessions, one-time prekeys, sender
// keys), and decrypts the copy again, with libsignal, on a sandbox store
// holding exactly those records and the device's own keys. The sandbox's
// error is classed by endpoint's classifier, the model's (a MAC mismatch
// told from a missing session by the per-state decrypt, docs/design.md
// §5): the same error gets the same class on a real-client row and on a
// model row. A store call that returned an error is a StoreError.

// Reads is what the store returned to one goroutine of the client: the
// last record per key, and the first error.
type Reads struct {
	Sessions   map[string][]byte       `json:"sessions,omitempty"`
	PreKeys    map[uint32]*keys.PreKey `json:"prekeys,omitempty"`
	SenderKeys map[string][]byte       `json:"senderkeys,omitempty"` // group + "\x00" + user
	Err        string                  `json:"err,omitempty"`
}

// tap is what a run hangs on the store it gives the client (an
// endpoint.Probe's Gate and Leave): in controlled mode every call parks
// until the schedule lets it go (ctl); in every mode it keeps each
// goroutine's Reads.
type tap struct {
	ctl   *ctl // nil: the client runs freely
	dead  atomic.Bool
	mu    sync.Mutex
	reads map[int64]*Reads
	// calls counts the store calls started; a child process SIGKILLs
	// itself as call killBefore starts or call killAfter returns.
	calls                 atomic.Int64
	killBefore, killAfter int
}

// errKilled is every store call of a killed client.
var errKilled = errors.New("the process was killed")

func newTap(c *ctl) *tap { return &tap{ctl: c, reads: map[int64]*Reads{}} }

// probe wraps set for the client.
func (t *tap) probe(set stores.Set) stores.Set {
	p := &endpoint.Probe{Set: set, Gate: t.gate, Leave: t.leave, Refuse: t.refuse}
	return stores.Set{Sessions: p, PreKeys: p, Identities: p, SenderKeys: p}
}

func (t *tap) gate(_ context.Context, call string) {
	if t.ctl != nil && !t.dead.Load() {
		t.ctl.gate(call)
	}
	if n := t.calls.Add(1); t.killBefore > 0 && n == int64(t.killBefore) {
		sigkill()
	}
}

func (t *tap) refuse(context.Context, string) error {
	if t.dead.Load() {
		return errKilled
	}
	return nil
}

func (t *tap) leave(_ context.Context, call string, result any, err error) {
	g := goid.Get()
	t.mu.Lock()
	r := t.reads[g]
	if r == nil {
		r = &Reads{}
		t.reads[g] = r
	}
	if err != nil && r.Err == "" {
		r.Err = fmt.Sprintf("%s: %v", call, err)
	}
	switch v := result.(type) {
	case []byte:
		if addr, ok := strings.CutPrefix(call, "GetSession "); ok {
			if r.Sessions == nil {
				r.Sessions = map[string][]byte{}
			}
			r.Sessions[addr] = append([]byte(nil), v...)
		}
	case map[string][]byte:
		if r.Sessions == nil {
			r.Sessions = map[string][]byte{}
		}
		for a, b := range v {
			r.Sessions[a] = append([]byte(nil), b...)
		}
	case *keys.PreKey:
		if v != nil {
			if r.PreKeys == nil {
				r.PreKeys = map[uint32]*keys.PreKey{}
			}
			r.PreKeys[v.KeyID] = v
		}
	case endpoint.SenderKeyRead:
		if r.SenderKeys == nil {
			r.SenderKeys = map[string][]byte{}
		}
		r.SenderKeys[v.Group+"\x00"+v.User] = append([]byte(nil), v.Record...)
	}
	t.mu.Unlock()
	if t.ctl != nil && err == nil && (strings.HasPrefix(call, "PutSession ") || strings.HasPrefix(call, "PutManySessions")) {
		t.ctl.stored(g)
	}
	if t.ctl != nil && !errors.Is(err, errKilled) {
		t.ctl.left()
	}
	if t.killAfter > 0 && t.calls.Load() == int64(t.killAfter) {
		sigkill()
	}
}

// sigkill kills this process as SIGKILL does: at once, nothing flushed.
func sigkill() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

// take returns and forgets what the calling goroutine read.
func (t *tap) take() *Reads {
	g := goid.Get()
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.reads[g]
	delete(t.reads, g)
	if r == nil {
		r = &Reads{}
	}
	return r
}

// DeviceKeys are the device's long-term keys, which the sandbox decrypts
// with.
type DeviceKeys struct {
	JID   types.JID
	Creds endpoint.Creds
}

// KeysOf returns dev's keys.
func KeysOf(dev *store.Device) DeviceKeys {
	return DeviceKeys{JID: *dev.ID, Creds: endpoint.Creds{Identity: dev.IdentityKey, SignedPreKey: dev.SignedPreKey,
		RegistrationID: dev.RegistrationID}}
}

// errSandboxDecrypts is a copy whatsmeow failed that libsignal decrypts
// from what the store returned: not a class of its own (Other), and a test
// pins that it does not happen.
var errSandboxDecrypts = errors.New("whatsmeow could not decrypt it, but libsignal does from what the store returned")

// Classify is the class of the copy node (a <message> stanza the device
// took) that whatsmeow failed to decrypt, from what the store returned to
// the handler's goroutine (see Reads).
func Classify(ctx context.Context, dk DeviceKeys, node waBinary.Node, r *Reads) (endpoint.Class, error) {
	if r == nil {
		r = &Reads{}
	}
	if r.Err != "" {
		return endpoint.StoreError, errors.New("store: " + r.Err)
	}
	st, err := stores.MustLookup("reference").Open(ctx)
	if err != nil {
		return endpoint.Other, err
	}
	defer st.Close()
	set, err := st.Instance(ctx)
	if err != nil {
		return endpoint.Other, err
	}
	for a, rec := range r.Sessions {
		if len(rec) > 0 {
			if err := set.Sessions.PutSession(ctx, a, rec); err != nil {
				return endpoint.Other, err
			}
		}
	}
	for k, rec := range r.SenderKeys {
		group, user, _ := strings.Cut(k, "\x00")
		if len(rec) > 0 {
			if err := set.SenderKeys.PutSenderKey(ctx, group, user, rec); err != nil {
				return endpoint.Other, err
			}
		}
	}
	set.PreKeys = sandboxPreKeys{PreKeyStore: set.PreKeys, keys: r.PreKeys}
	ep := endpoint.New(dk.JID, dk.Creds, set)
	ag := node.AttrGetter()
	from := ag.JID("from")
	sender := from
	if from.Server == types.GroupServer {
		sender = ag.JID("participant")
	}
	for _, enc := range node.GetChildrenByTag("enc") {
		kind, _ := enc.Attrs["type"].(string)
		ct, ok := enc.Content.([]byte)
		if !ok {
			return endpoint.Other, fmt.Errorf("<enc type=%s> without bytes", kind)
		}
		switch kind {
		case endpoint.PkMsg, endpoint.Msg:
			if _, err := ep.DecryptDM(ctx, sender.SignalAddress(), kind, ct); err != nil {
				return endpoint.ClassOf(err), err
			}
		case endpoint.SkMsg:
			if _, err := ep.GroupDecrypt(ctx, from.String(), sender.SignalAddress(), ct); err != nil {
				return endpoint.ClassOf(err), err
			}
		default:
			return endpoint.Other, fmt.Errorf("<enc type=%s>", kind)
		}
	}
	return endpoint.Other, errSandboxDecrypts
}

// sandboxPreKeys answers GetPreKey from the prekeys the client read.
type sandboxPreKeys struct {
	store.PreKeyStore
	keys map[uint32]*keys.PreKey
}

func (s sandboxPreKeys) GetPreKey(_ context.Context, id uint32) (*keys.PreKey, error) {
	return s.keys[id], nil
}

func (s sandboxPreKeys) RemovePreKey(context.Context, uint32) error { return nil }
