package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/stores"
)

// A crash inside a store call (docs/design.md §7, "storetest"): the store's
// process runs under ptrace (trace_linux_amd64.go) and is killed right
// after the call's k-th write to the file system, for several k between
// its first write and its return; a new process then opens the store. A
// correct store is atomic per call across a crash: it opens, and what it
// holds is what it held before the call or what the call left, never a
// mix, a torn record or a record gone; one-time prekeys it handed out keep
// their keys. Each kill point is a count of the store's own system calls,
// so it falls at the same place on a loaded machine (a store that writes
// from background goroutines at the same time is the exception).

// killTarget is one call to kill inside.
type killTarget struct {
	name string
	call func(ctx context.Context, r *inst) error
}

var killTargets = []killTarget{
	{"PutSession alice:0", func(ctx context.Context, r *inst) error {
		return r.PutSession(ctx, "alice:0", record("alice:0", 2))
	}},
	{"PutManySessions alice:0 carol:0 dave:0", func(ctx context.Context, r *inst) error {
		return r.PutManySessions(ctx, map[string][]byte{"alice:0": record("alice:0", 2), "carol:0": record("carol:0", 1), "dave:0": record("dave:0", 1)})
	}},
	{"PutSenderKey g1 alice:0", func(ctx context.Context, r *inst) error {
		return r.PutSenderKey(ctx, "g1", "alice:0", record("g1/alice:0", 2))
	}},
	{"MigratePNToLID 15550001", func(ctx context.Context, r *inst) error { return r.MigratePNToLID(ctx, migPN, migLID) }},
	{"GetOrGenPreKeys 10", func(ctx context.Context, r *inst) error { _, err := r.GetOrGenPreKeys(ctx, 10); return err }},
	{"GenOnePreKey", func(ctx context.Context, r *inst) error { _, err := r.GenOnePreKey(ctx); return err }},
}

// killPoints is how many kill points each call gets at most, spread over
// its writes.
const killPoints = 3

// killSetup is the state every kill point starts from: sessions, a sender
// key, identities, a contact to migrate and five uploaded prekeys.
func killSetup(ctx context.Context, r *inst) ([]*keys.PreKey, error) {
	for _, a := range []string{"alice:0", "bob:0"} {
		if err := r.PutSession(ctx, a, record(a, 1)); err != nil {
			return nil, fmt.Errorf("PutSession %s: %w", a, err)
		}
	}
	if err := r.PutSenderKey(ctx, "g1", "alice:0", record("g1/alice:0", 1)); err != nil {
		return nil, fmt.Errorf("PutSenderKey: %w", err)
	}
	if err := r.PutIdentity(ctx, "alice:0", key32(8)); err != nil {
		return nil, fmt.Errorf("PutIdentity: %w", err)
	}
	if err := migSetup(ctx, r, migPN); err != nil {
		return nil, err
	}
	pks, err := r.GetOrGenPreKeys(ctx, 5)
	if err != nil {
		return nil, fmt.Errorf("GetOrGenPreKeys: %w", err)
	}
	if len(pks) > 0 {
		if err := r.MarkPreKeysAsUploaded(ctx, pks[len(pks)-1].KeyID); err != nil {
			return nil, fmt.Errorf("MarkPreKeysAsUploaded: %w", err)
		}
	}
	return pks, nil
}

// killView is what a kill point is judged on: every record and identity
// the calls touch, read back.
type killView map[string]string

var killSessions = []string{"alice:0", "bob:0", "carol:0", "dave:0", migAddr(migPN, 0), migAddr(migPN, 1), migAddr(migLID, 0), migAddr(migLID, 1)}

func readView(ctx context.Context, r *inst) (killView, error) {
	v := killView{}
	for _, a := range killSessions {
		b, err := r.GetSession(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("GetSession %s: %w", a, err)
		}
		v["session "+a] = fingerprint(b)
	}
	for _, gk := range [][2]string{{"g1", "alice:0"}, {"g1", migAddr(migPN, 0)}, {"g1", migAddr(migLID, 0)}} {
		b, err := r.GetSenderKey(ctx, gk[0], gk[1])
		if err != nil {
			return nil, fmt.Errorf("GetSenderKey %s %s: %w", gk[0], gk[1], err)
		}
		v["sender key "+gk[0]+" "+gk[1]] = fingerprint(b)
	}
	for _, a := range []string{"alice:0", migAddr(migPN, 0), migAddr(migLID, 0)} {
		var trusted []string
		for _, k := range []byte{1, 8, 9} {
			ok, err := r.IsTrustedIdentity(ctx, a, key32(k))
			if err != nil {
				return nil, fmt.Errorf("IsTrustedIdentity %s: %w", a, err)
			}
			if ok {
				trusted = append(trusted, fmt.Sprint(k))
			}
		}
		switch len(trusted) {
		case 3:
			v["identity "+a] = "none (any key trusted)"
		case 1:
			v["identity "+a] = "key " + trusted[0]
		default:
			v["identity "+a] = "trusts keys " + strings.Join(trusted, ",")
		}
	}
	return v, nil
}

// fingerprint names a record by the write that made it (record() embeds
// its key and write number), or says it is none of them.
func fingerprint(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	var key string
	var n int
	if _, err := fmt.Sscanf(string(bytes.SplitN(b, []byte(`,"pad"`), 2)[0]), `{"record":%q,"write":%d`, &key, &n); err == nil && bytes.Equal(b, record(key, n)) {
		return fmt.Sprintf("write %d of %s", n, key)
	}
	return fmt.Sprintf("%d bytes no call wrote (torn)", len(b))
}

// checkKillInside kills the store's process inside each target call at up
// to killPoints of its writes and judges what a new process finds.
func checkKillInside(ctx context.Context, l *location) ([]string, error) {
	tpl, err := l.killTemplate(ctx)
	if err != nil {
		return nil, err
	}
	if tpl != nil {
		defer os.RemoveAll(tpl.dir)
	}
	// The state before any target call, and after each, without a kill;
	// then the kill points, all in parallel (each run is a location and
	// processes of its own).
	type job struct {
		t   *killTarget
		k   int
		res *killResult
		err error
	}
	runJobs := func(jobs []*job) error {
		sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
		var wg sync.WaitGroup
		for _, j := range jobs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				j.res, j.err = l.killRun(ctx, tpl, j.t, j.k)
			}()
		}
		wg.Wait()
		for _, j := range jobs {
			if j.err != nil {
				return j.err
			}
		}
		return nil
	}
	first := []*job{{}}
	for i := range killTargets {
		first = append(first, &job{t: &killTargets[i]})
	}
	if err := runJobs(first); err != nil {
		return nil, err
	}
	base := first[0].res
	var points []*job
	for _, f := range first[1:] {
		for _, k := range spread(f.res.writes, killPoints) {
			points = append(points, &job{t: f.t, k: k})
		}
	}
	if err := runJobs(points); err != nil {
		return nil, err
	}
	var fails []string
	for _, f := range first[1:] {
		after := f.res
		for _, j := range points {
			if j.t != f.t {
				continue
			}
			got := j.res
			where := fmt.Sprintf("a crash inside %s (after write %d of its %d to the file system)", j.t.name, j.k, after.writes)
			switch {
			case !got.killed:
				continue // the call returned before its k-th write this time: nothing to judge
			case got.openErr != nil:
				fails = append(fails, fmt.Sprintf("%s: the store did not open again: %v", where, got.openErr))
				continue
			case got.readErr != nil:
				fails = append(fails, fmt.Sprintf("%s: reading the store back failed: %v", where, got.readErr))
				continue
			}
			if d := mixed(got.view, base.view, after.view); d != "" {
				fails = append(fails, fmt.Sprintf("%s, then reopen: %s", where, d))
			}
			fails = append(fails, prefixAll(where+", then reopen: ", got.finds)...)
		}
		if len(fails) > 0 {
			break // one call's findings are enough to read
		}
	}
	return fails, nil
}

// spread picks up to n kill points among writes 1..w-1 (after the last
// write the call has done all it will), always the first.
func spread(w, n int) []int {
	var out []int
	if w < 2 {
		return nil
	}
	for i := range n {
		k := 1 + i*(w-2)/max(n-1, 1)
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

type killResult struct {
	writes  int
	killed  bool
	view    killView
	openErr error
	readErr error
	finds   []string
}

// killTpl is the setup done once, for a store whose data is in dir: the
// directory it left (closed cleanly) and the calls that made it.
type killTpl struct {
	dir   string
	calls []call
	clock int
}

// killTemplate runs the setup once when the store keeps its data in dir,
// so that each kill point copies the directory instead of running it
// again under the tracer; nil otherwise.
func (l *location) killTemplate(ctx context.Context) (*killTpl, error) {
	if !l.s.caps.inDir || l.s.caps.snapshots {
		return nil, nil
	}
	dir, err := os.MkdirTemp("", "badmac-kill-")
	if err != nil {
		return nil, err
	}
	tr := newTrace(l.s.tally, 1)
	loc := &location{s: l.s, tr: tr, dir: dir, procs: true}
	a, err := loc.instance(ctx)
	if err == nil {
		if _, err = killSetup(ctx, a); err != nil {
			a.crash()
		} else {
			err = a.close(ctx)
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("setting up a crash inside a call: %w", err)
	}
	tr.event("close", loc.n)
	return &killTpl{dir: dir, calls: tr.snapshot(), clock: tr.clock}, nil
}

// killRun runs the setup and target t in a traced process of a fresh
// location, killed at write k of t (0: not killed, and the writes counted),
// then reads the state back in a new process. t nil: the setup alone.
func (l *location) killRun(ctx context.Context, tpl *killTpl, t *killTarget, k int) (*killResult, error) {
	dir, err := os.MkdirTemp("", "badmac-kill-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tr := newTrace(l.s.tally, 1)
	loc := &location{s: l.s, tr: tr, dir: dir, procs: true}
	if tpl != nil {
		if err := restoreDir(dir, copyDir(tpl.dir)); err != nil {
			return nil, err
		}
		tr.calls, tr.clock, loc.n = append([]call(nil), tpl.calls...), tpl.clock, 1
	}
	trc := newTracer()
	p, err := spawn(ctx, l.s.test, dir, trc, 0)
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			return nil, skipCheck{"this machine does not allow ptrace of a child process: " + err.Error()}
		}
		return nil, err
	}
	a := &inst{recorder: &recorder{set: stores.SetOf(p), tr: tr, inst: loc.n}, p: p}
	loc.n++
	if tpl == nil {
		if _, err := killSetup(ctx, a); err != nil {
			p.kill()
			return nil, fmt.Errorf("setting up a crash inside a call: %w", err)
		}
	}
	res := &killResult{}
	if t != nil {
		trc.arm(k)
		callErr := t.call(ctx, a)
		res.writes, res.killed = trc.disarm()
		if !res.killed && callErr != nil {
			p.kill()
			return nil, fmt.Errorf("%s: %w", t.name, callErr)
		}
	}
	if res.killed {
		p.kill()
		tr.event("crash", loc.n)
	} else if err := a.close(ctx); err != nil {
		return nil, err
	}
	b, err := loc.instance(ctx)
	if err != nil {
		res.openErr = err
		return res, nil
	}
	defer b.close(ctx)
	if res.view, err = readView(ctx, b); err != nil {
		res.readErr = err
		return res, nil
	}
	// Prekeys: the five uploaded keep their keys; no id comes back with
	// another key when the store hands out more (diagnose's prekey rules).
	for id := uint32(1); id <= 5; id++ {
		if _, err := b.GetPreKey(ctx, id); err != nil {
			res.readErr = fmt.Errorf("GetPreKey %d: %w", id, err)
			return res, nil
		}
	}
	if _, err := b.GetOrGenPreKeys(ctx, 5); err != nil {
		res.readErr = fmt.Errorf("GetOrGenPreKeys: %w", err)
		return res, nil
	}
	if _, err := b.GenOnePreKey(ctx); err != nil {
		res.readErr = fmt.Errorf("GenOnePreKey: %w", err)
		return res, nil
	}
	// Only the prekey calls: the killed call itself returned no answer, so
	// the records it may have written are judged by mixed, not here.
	var pkCalls []call
	for _, c := range tr.snapshot() {
		if c.event != "" || strings.Contains(c.method, "PreKey") {
			pkCalls = append(pkCalls, c)
		}
	}
	res.finds = diagnose(pkCalls, 2, 1)
	return res, nil
}

// mixed says how got is neither before nor after ("" if it is one of them).
func mixed(got, before, after killView) string {
	if maps.Equal(got, before) || maps.Equal(got, after) {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(got)) {
		switch {
		case got[k] == before[k] && got[k] == after[k]:
		case got[k] == after[k]:
			parts = append(parts, fmt.Sprintf("%s as after the call (%s)", k, got[k]))
		case got[k] == before[k]:
			parts = append(parts, fmt.Sprintf("%s as before it (%s)", k, got[k]))
		default:
			parts = append(parts, fmt.Sprintf("%s is %s, neither before (%s) nor after (%s)", k, got[k], before[k], after[k]))
		}
	}
	return "the store holds neither what it held before the call nor what the call left, but a mix: " + strings.Join(parts, "; ") +
		" (the call is not atomic across a crash)"
}

func prefixAll(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}

// skipCheck is a direct check that cannot run on this machine: skipped with
// why, never a finding.
type skipCheck struct{ why string }

func (s skipCheck) Error() string { return s.why }
