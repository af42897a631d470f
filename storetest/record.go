package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/stores"
)

// call is one store call as the store answered it: what a diagnosis reads.
// Only session and sender-key calls carry keys and records; the rest are
// counted.
type call struct {
	// begin and seq are when the call began and when it returned, on one
	// counter: calls that overlap (real goroutines) have overlapping
	// intervals, and a call whose seq is below another's begin returned
	// before that one began. An event has begin == seq, but a snapshot
	// spans from before its processes were stopped to after they went on.
	begin, seq int
	inst       int    // which open instance (0 first; reopens count up)
	method     string // "PutSession", "GetSession", ...
	key        string // "alice:0", or "group/alice:0" for sender keys
	val        []byte // written, or returned by a get
	ok         bool   // the call returned no error
	omitted    bool   // GetManySessions: the address was not in the map returned
	prekeys    []pk   // prekeys returned (GetOrGenPreKeys, GenOnePreKey, GetPreKey); the id for RemovePreKey, MarkPreKeysAsUploaded
	event      string // "crash", "stop", "snapshot", "rollback", "close": no call
}

// pk is a prekey as a call returned it; nil priv: none (GetPreKey found
// nothing).
type pk struct {
	id   uint32
	priv *[32]byte
}

// trace is the store calls of one run (or of one conformance check), in the
// order the store answered them, shared by every instance over one location.
type trace struct {
	mu    sync.Mutex
	calls []call
	clock int
	tally *tally
	// perRun is how many device instances run at once (the schedule's
	// instances): instance i is the history's @(i mod perRun).
	perRun int
}

func newTrace(t *tally, perRun int) *trace { return &trace{tally: t, perRun: max(perRun, 1)} }

// begin is the clock reading before a call goes to the store.
func (tr *trace) begin() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.clock++
	return tr.clock
}

// add records c as it returns (c.begin set by the caller).
func (tr *trace) add(c call) {
	tr.mu.Lock()
	tr.clock++
	c.seq = tr.clock
	if c.event != "" && c.begin == 0 {
		c.begin = c.seq // an instant; a snapshot is a span (trace.span)
	}
	tr.calls = append(tr.calls, c)
	tr.mu.Unlock()
	if c.event == "" {
		tr.tally.note(c.method, len(c.val), strings.HasPrefix(c.method, "Get"))
	}
}

func (tr *trace) event(name string, inst int) { tr.add(call{event: name, inst: inst}) }

// span records an event that took from clock begin (tr.begin) until now:
// a snapshot, whose copy was taken somewhere in between.
func (tr *trace) span(name string, inst, begin int) {
	tr.add(call{event: name, inst: inst, begin: begin})
}

func (tr *trace) snapshot() []call {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]call(nil), tr.calls...)
}

// tally counts calls per method over a whole Check and the largest record
// the store was handed and read back.
type tally struct {
	mu                      sync.Mutex
	calls                   map[string]int
	maxWritten, maxRead     int
	maxWrittenBy, maxReadBy string
}

func newTally() *tally { return &tally{calls: map[string]int{}} }

func (t *tally) note(method string, size int, read bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls[method]++
	if read && size > t.maxRead {
		t.maxRead, t.maxReadBy = size, method
	}
	if !read && size > t.maxWritten {
		t.maxWritten, t.maxWrittenBy = size, method
	}
}

// merge adds o's calls to t and takes o's largest records where they are
// larger: merged in schedule order, the result is what noting every call
// of those runs one after another into t would give, ties included.
func (t *tally) merge(o *tally) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	for m, n := range o.calls {
		t.calls[m] += n
	}
	if o.maxRead > t.maxRead {
		t.maxRead, t.maxReadBy = o.maxRead, o.maxReadBy
	}
	if o.maxWritten > t.maxWritten {
		t.maxWritten, t.maxWrittenBy = o.maxWritten, o.maxWrittenBy
	}
}

func (t *tally) count(method string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls[method]
}

func (t *tally) counts() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.calls))
	for k, v := range t.calls {
		out[k] = v
	}
	return out
}

// notIncreased lists the whatsmeow methods called no more often than in
// before: what the scenarios never reached.
func (t *tally) notIncreased(before map[string]int) []string {
	var out []string
	for _, m := range Methods() {
		_, name, _ := strings.Cut(m, ".")
		if t.count(name) <= before[name] {
			out = append(out, m)
		}
	}
	return out
}

// signalInterfaces are the whatsmeow interfaces a Signal store implements;
// the method list comes from them by reflection, so a method whatsmeow adds
// is a method storetest reports as never called, not one it silently skips.
var signalInterfaces = []reflect.Type{
	reflect.TypeFor[store.SessionStore](),
	reflect.TypeFor[store.PreKeyStore](),
	reflect.TypeFor[store.IdentityStore](),
	reflect.TypeFor[store.SenderKeyStore](),
}

// Methods lists "Interface.Method" for every method of the four whatsmeow
// interfaces, sorted.
func Methods() []string {
	var out []string
	for _, it := range signalInterfaces {
		for i := range it.NumMethod() {
			out = append(out, it.Name()+"."+it.Method(i).Name)
		}
	}
	sort.Strings(out)
	return out
}

// uncalled lists the methods of the whatsmeow interfaces the tally never saw.
func (t *tally) uncalled() []string {
	var out []string
	for _, m := range Methods() {
		_, name, _ := strings.Cut(m, ".")
		if t.count(name) == 0 {
			out = append(out, m)
		}
	}
	return out
}

// recorder wraps one instance of the store under test and records every
// call it answers in the run's trace.
type recorder struct {
	set  stores.Set
	tr   *trace
	inst int
}

var _ stores.All = (*recorder)(nil)

func (r *recorder) rec(b int, method, key string, val []byte, err error) {
	r.tr.add(call{begin: b, inst: r.inst, method: method, key: key, val: append([]byte(nil), val...), ok: err == nil})
}

func (r *recorder) recKeys(b int, method string, ks []*keys.PreKey, err error) {
	c := call{begin: b, inst: r.inst, method: method, ok: err == nil}
	for _, k := range ks {
		if k != nil && k.Priv != nil {
			priv := *k.Priv
			c.prekeys = append(c.prekeys, pk{id: k.KeyID, priv: &priv})
		}
	}
	r.tr.add(c)
}

func (r *recorder) recID(b int, method string, id uint32, err error) {
	r.tr.add(call{begin: b, inst: r.inst, method: method, ok: err == nil, prekeys: []pk{{id: id}}})
}

func (r *recorder) count(b int, method string, err error) { r.rec(b, method, "", nil, err) }

func (r *recorder) PutIdentity(ctx context.Context, address string, key [32]byte) error {
	b := r.tr.begin()
	err := r.set.Identities.PutIdentity(ctx, address, key)
	r.rec(b, "PutIdentity", address, key[:], err)
	return err
}

func (r *recorder) DeleteAllIdentities(ctx context.Context, phone string) error {
	b := r.tr.begin()
	err := r.set.Identities.DeleteAllIdentities(ctx, phone)
	r.rec(b, "DeleteAllIdentities", phone, nil, err)
	return err
}

func (r *recorder) DeleteIdentity(ctx context.Context, address string) error {
	b := r.tr.begin()
	err := r.set.Identities.DeleteIdentity(ctx, address)
	r.rec(b, "DeleteIdentity", address, nil, err)
	return err
}

func (r *recorder) IsTrustedIdentity(ctx context.Context, address string, key [32]byte) (bool, error) {
	b := r.tr.begin()
	ok, err := r.set.Identities.IsTrustedIdentity(ctx, address, key)
	r.count(b, "IsTrustedIdentity", err)
	return ok, err
}

func (r *recorder) GetSession(ctx context.Context, address string) ([]byte, error) {
	b := r.tr.begin()
	v, err := r.set.Sessions.GetSession(ctx, address)
	r.rec(b, "GetSession", address, v, err)
	return v, err
}

func (r *recorder) HasSession(ctx context.Context, address string) (bool, error) {
	b := r.tr.begin()
	ok, err := r.set.Sessions.HasSession(ctx, address)
	var v []byte
	if ok {
		v = []byte{1}
	}
	r.rec(b, "HasSession", address, v, err)
	return ok, err
}

func (r *recorder) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	b := r.tr.begin()
	m, err := r.set.Sessions.GetManySessions(ctx, addresses)
	for _, a := range addresses {
		v, present := m[a]
		r.tr.add(call{begin: b, inst: r.inst, method: "GetManySessions", key: a, val: append([]byte(nil), v...),
			ok: err == nil, omitted: err == nil && !present})
	}
	if len(addresses) == 0 {
		r.count(b, "GetManySessions", err)
	}
	return m, err
}

func (r *recorder) PutSession(ctx context.Context, address string, session []byte) error {
	b := r.tr.begin()
	err := r.set.Sessions.PutSession(ctx, address, session)
	r.rec(b, "PutSession", address, session, err)
	return err
}

func (r *recorder) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	b := r.tr.begin()
	err := r.set.Sessions.PutManySessions(ctx, sessions)
	addrs := make([]string, 0, len(sessions))
	for a := range sessions {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		r.rec(b, "PutManySessions", a, sessions[a], err)
	}
	if len(addrs) == 0 {
		r.count(b, "PutManySessions", err)
	}
	return err
}

func (r *recorder) DeleteAllSessions(ctx context.Context, phone string) error {
	b := r.tr.begin()
	err := r.set.Sessions.DeleteAllSessions(ctx, phone)
	r.rec(b, "DeleteAllSessions", phone, nil, err)
	return err
}

func (r *recorder) DeleteSession(ctx context.Context, address string) error {
	b := r.tr.begin()
	err := r.set.Sessions.DeleteSession(ctx, address)
	r.rec(b, "DeleteSession", address, nil, err)
	return err
}

func (r *recorder) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	b := r.tr.begin()
	err := r.set.Sessions.MigratePNToLID(ctx, pn, lid)
	r.rec(b, "MigratePNToLID", pn.SignalAddressUser()+">"+lid.SignalAddressUser(), nil, err)
	return err
}

func (r *recorder) GetOrGenPreKeys(ctx context.Context, count uint32) ([]*keys.PreKey, error) {
	b := r.tr.begin()
	k, err := r.set.PreKeys.GetOrGenPreKeys(ctx, count)
	r.recKeys(b, "GetOrGenPreKeys", k, err)
	return k, err
}

func (r *recorder) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	b := r.tr.begin()
	k, err := r.set.PreKeys.GenOnePreKey(ctx)
	r.recKeys(b, "GenOnePreKey", []*keys.PreKey{k}, err)
	return k, err
}

func (r *recorder) GetPreKey(ctx context.Context, id uint32) (*keys.PreKey, error) {
	b := r.tr.begin()
	k, err := r.set.PreKeys.GetPreKey(ctx, id)
	c := call{begin: b, inst: r.inst, method: "GetPreKey", ok: err == nil, prekeys: []pk{{id: id}}}
	if k != nil && k.Priv != nil {
		priv := *k.Priv
		c.prekeys[0].priv = &priv
	}
	r.tr.add(c)
	return k, err
}

func (r *recorder) RemovePreKey(ctx context.Context, id uint32) error {
	b := r.tr.begin()
	err := r.set.PreKeys.RemovePreKey(ctx, id)
	r.recID(b, "RemovePreKey", id, err)
	return err
}

func (r *recorder) MarkPreKeysAsUploaded(ctx context.Context, upToID uint32) error {
	b := r.tr.begin()
	err := r.set.PreKeys.MarkPreKeysAsUploaded(ctx, upToID)
	r.recID(b, "MarkPreKeysAsUploaded", upToID, err)
	return err
}

func (r *recorder) UploadedPreKeyCount(ctx context.Context) (int, error) {
	b := r.tr.begin()
	n, err := r.set.PreKeys.UploadedPreKeyCount(ctx)
	r.count(b, "UploadedPreKeyCount", err)
	return n, err
}

func (r *recorder) PutSenderKey(ctx context.Context, group, user string, session []byte) error {
	b := r.tr.begin()
	err := r.set.SenderKeys.PutSenderKey(ctx, group, user, session)
	r.rec(b, "PutSenderKey", group+"/"+user, session, err)
	return err
}

func (r *recorder) GetSenderKey(ctx context.Context, group, user string) ([]byte, error) {
	b := r.tr.begin()
	v, err := r.set.SenderKeys.GetSenderKey(ctx, group, user)
	r.rec(b, "GetSenderKey", group+"/"+user, v, err)
	return v, err
}

// recordedSet wraps set so that every call lands in tr as instance inst.
func recordedSet(set stores.Set, tr *trace, inst int) stores.Set {
	return stores.SetOf(&recorder{set: set, tr: tr, inst: inst})
}

func sizeString(n int) string {
	if n >= 1024 {
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%d B", n)
}
