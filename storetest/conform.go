package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/badmac/badmac/stores"
)

// The conformance checks call each store method directly, outside any
// scenario: what each call must return, with real goroutines where a
// store's own locking is what is tested. They go through the same recorder
// and diagnosis as the scenarios, so their findings read the same way.
// With an Opener every instance is a process of its own (child.go), and a
// crash is a SIGKILL of it.

// Goroutines is how many goroutines the concurrent check runs at once.
const Goroutines = 16

// concurrentRounds bounds the rounds of the concurrent check: a race inside
// a store call shows within a few rounds of 16 goroutines; the check stops
// at the first round with a finding.
const concurrentRounds = 20

// location is one conformance check's store: a fresh location to open (and
// reopen) instances over.
type location struct {
	s   *subject
	tr  *trace
	dir string
	n   int
	// procs: each instance an Opener opens is a process of its own (a
	// check that reopens); otherwise it is opened in this process.
	procs bool
}

func (s *subject) location() (*location, error) {
	l := &location{s: s, tr: newTrace(s.tally, 1)}
	if s.open != nil {
		dir, err := os.MkdirTemp("", "badmac-conform-")
		if err != nil {
			return nil, fmt.Errorf("storetest: location: %w", err)
		}
		l.dir = dir
	}
	return l, nil
}

// inst is one open instance: a process (Opener) or an object (constructor).
type inst struct {
	*recorder
	p *proc
	c io.Closer
}

// instance opens one instance (the constructor, for the simple form).
func (l *location) instance(ctx context.Context) (*inst, error) {
	var set stores.Set
	var c io.Closer
	var p *proc
	var err error
	switch {
	case l.s.open != nil && l.procs:
		p, err = spawn(ctx, l.s.test, l.dir, nil, 0)
		if err == nil {
			set = stores.SetOf(p)
		}
	case l.s.open != nil:
		set, c, err = l.s.open(l.dir)
	default:
		set, err = l.s.newStore()
	}
	if err == nil {
		err = set.Complete()
	}
	if err != nil {
		return nil, err
	}
	l.n++
	return &inst{recorder: &recorder{set: set, tr: l.tr, inst: l.n - 1}, p: p, c: c}, nil
}

// close is a clean Close.
func (i *inst) close(ctx context.Context) error {
	if i.p != nil {
		return i.p.close(ctx)
	}
	if i.c != nil {
		return i.c.Close()
	}
	return nil
}

// crash kills the instance's process: nothing of it runs on.
func (i *inst) crash() {
	if i.p != nil {
		i.p.kill()
	}
}

func (l *location) cleanup() {
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

// record is a session record of realistic size, distinct per key and write.
func record(key string, n int) []byte {
	b := make([]byte, 0, 2048)
	b = fmt.Appendf(b, `{"record":%q,"write":%d,"pad":"`, key, n)
	for len(b) < 2000 {
		b = append(b, byte('a'+(len(b)+n)%26))
	}
	return append(b, `"}`...)
}

// conformanceCheck is one direct check; procs: it reopens the store, so
// each instance is a process of its own.
type conformanceCheck struct {
	name  string
	needs string
	procs bool
	fn    func(context.Context, *location) ([]string, error)
}

var conformanceChecks = []conformanceCheck{
	{"keys and batches", "", false, checkKeys},
	{"prekeys and identities", "", false, checkPreKeysIdentities},
	{fmt.Sprintf("%d goroutines at once", Goroutines), "", false, checkConcurrent},
	{"MigratePNToLID", "", true, checkMigrate},
	{"MigratePNToLID while the contact's sessions are in use", "", false, checkMigrateConcurrent},
	{"reopen after Close", capReopen, true, checkCleanReopen},
	{"reopen after a crash", capReopen, true, checkCrashReopen},
	{twoInstances, capInstances, true, checkTwoInstances},
	{"a crash inside a store call", capReopen, true, checkKillInside},
}

// ConformanceChecks lists the direct checks by name, in the order they run
// (Options.Conformance picks among them).
func ConformanceChecks() []string {
	var out []string
	for _, c := range conformanceChecks {
		out = append(out, c.name)
	}
	return out
}

// conformance runs every check and returns its findings, each prefixed
// with the check's name. Checks that need what the store cannot do are
// skipped, each with why.
func conformance(ctx context.Context, s *subject, only []string) (findings, skipped []string, err error) {
	for _, c := range conformanceChecks {
		if len(only) > 0 && !slices.Contains(only, c.name) {
			continue
		}
		if why := s.lacks(c.needs); why != "" {
			skipped = append(skipped, c.name+" ("+why+")")
			continue
		}
		if c.needs == capReopen && !traceSupported && c.name == "a crash inside a store call" {
			skipped = append(skipped, c.name+" (needs ptrace on Linux amd64)")
			continue
		}
		l, err := s.location()
		if err != nil {
			return nil, nil, err
		}
		l.procs = c.procs
		fs, err := c.fn(ctx, l)
		l.cleanup()
		var skip skipCheck
		if errors.As(err, &skip) {
			skipped = append(skipped, c.name+" ("+skip.why+")")
			continue
		}
		if err != nil {
			// A store call that fails where whatsmeow expects it to work
			// is a finding like any other (a torn file read, a lock error).
			fs = append(fs, "the store failed a call: "+err.Error())
		}
		for _, f := range fs {
			findings = append(findings, c.name+": "+f)
		}
	}
	return findings, skipped, nil
}

// lacks says why the subject cannot do need ("" if it can).
func (s *subject) lacks(need string) string {
	switch {
	case need == "":
		return ""
	case s.open == nil:
		return "a constructor cannot " + capWords[need]
	}
	return s.caps.lacks[need]
}

// checkKeys: one record per full address (user and device), batches that
// write and read every entry and return every address asked for, deletes.
func checkKeys(ctx context.Context, l *location) ([]string, error) {
	r, err := l.instance(ctx)
	if err != nil {
		return nil, err
	}
	defer r.close(ctx)
	var fails []string
	for _, a := range []string{"alice:0", "alice:1", "bob:0"} {
		if err := r.PutSession(ctx, a, record(a, 1)); err != nil {
			return nil, fmt.Errorf("PutSession %s: %w", a, err)
		}
	}
	for _, a := range []string{"alice:0", "alice:1", "bob:0"} {
		if _, err := r.GetSession(ctx, a); err != nil {
			return nil, fmt.Errorf("GetSession %s: %w", a, err)
		}
		if _, err := r.HasSession(ctx, a); err != nil {
			return nil, fmt.Errorf("HasSession %s: %w", a, err)
		}
	}
	if has, err := r.HasSession(ctx, "nobody:0"); err != nil {
		return nil, fmt.Errorf("HasSession nobody:0: %w", err)
	} else if has {
		fails = append(fails, "HasSession nobody:0 said yes though nothing was written")
	}
	batch := map[string][]byte{"carol:0": record("carol:0", 1), "carol:1": record("carol:1", 1), "dave:0": record("dave:0", 1)}
	if err := r.PutManySessions(ctx, batch); err != nil {
		return nil, fmt.Errorf("PutManySessions: %w", err)
	}
	for _, a := range []string{"carol:0", "carol:1", "dave:0"} {
		if _, err := r.GetSession(ctx, a); err != nil {
			return nil, fmt.Errorf("GetSession %s: %w", a, err)
		}
	}
	// whatsmeow's send path asks for every device of the recipients at
	// once, most of them without a session the first time (send.go).
	if _, err := r.GetManySessions(ctx, []string{"alice:0", "carol:0", "carol:1", "dave:0", "nobody:0", "nobody:1", "nobody:2"}); err != nil {
		return nil, fmt.Errorf("GetManySessions: %w", err)
	}
	for _, gk := range [][2]string{{"g1", "alice:0"}, {"g1", "alice:1"}, {"g2", "alice:0"}} {
		if err := r.PutSenderKey(ctx, gk[0], gk[1], record(gk[0]+"/"+gk[1], 1)); err != nil {
			return nil, fmt.Errorf("PutSenderKey %s %s: %w", gk[0], gk[1], err)
		}
	}
	for _, gk := range [][2]string{{"g1", "alice:0"}, {"g1", "alice:1"}, {"g2", "alice:0"}} {
		if _, err := r.GetSenderKey(ctx, gk[0], gk[1]); err != nil {
			return nil, fmt.Errorf("GetSenderKey %s %s: %w", gk[0], gk[1], err)
		}
	}
	if err := r.DeleteSession(ctx, "alice:1"); err != nil {
		return nil, fmt.Errorf("DeleteSession: %w", err)
	}
	if _, err := r.GetSession(ctx, "alice:1"); err != nil {
		return nil, err
	}
	if err := r.DeleteAllSessions(ctx, "bob"); err != nil {
		return nil, fmt.Errorf("DeleteAllSessions: %w", err)
	}
	if _, err := r.GetSession(ctx, "bob:0"); err != nil {
		return nil, err
	}
	return append(fails, diagnose(l.tr.snapshot(), 5, 1)...), nil
}

// checkPreKeysIdentities: prekeys keep their ids and keys, are never handed
// out twice, stay gone once removed; identities are trusted on first use
// and until deleted.
func checkPreKeysIdentities(ctx context.Context, l *location) ([]string, error) {
	r, err := l.instance(ctx)
	if err != nil {
		return nil, err
	}
	defer r.close(ctx)
	var fails []string
	failf := func(f string, a ...any) { fails = append(fails, fmt.Sprintf(f, a...)) }
	first, err := r.GetOrGenPreKeys(ctx, 5)
	if err != nil {
		return nil, fmt.Errorf("GetOrGenPreKeys: %w", err)
	}
	if len(first) != 5 {
		failf("GetOrGenPreKeys(5) returned %d prekeys", len(first))
		return fails, nil
	}
	if err := r.MarkPreKeysAsUploaded(ctx, first[len(first)-1].KeyID); err != nil {
		return nil, fmt.Errorf("MarkPreKeysAsUploaded: %w", err)
	}
	if n, err := r.UploadedPreKeyCount(ctx); err != nil {
		return nil, fmt.Errorf("UploadedPreKeyCount: %w", err)
	} else if n != 5 {
		failf("UploadedPreKeyCount is %d after 5 prekeys were marked uploaded", n)
	}
	second, err := r.GetOrGenPreKeys(ctx, 5)
	if err != nil {
		return nil, fmt.Errorf("GetOrGenPreKeys: %w", err)
	}
	one, err := r.GenOnePreKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("GenOnePreKey: %w", err)
	}
	ids := map[uint32]bool{}
	for _, k := range append(append(first, second...), one) {
		if ids[k.KeyID] {
			failf("prekey id %d handed out twice (GetOrGenPreKeys after MarkPreKeysAsUploaded, then GenOnePreKey)", k.KeyID)
		}
		ids[k.KeyID] = true
		if _, err := r.GetPreKey(ctx, k.KeyID); err != nil {
			return nil, fmt.Errorf("GetPreKey %d: %w", k.KeyID, err)
		}
	}
	if err := r.RemovePreKey(ctx, first[0].KeyID); err != nil {
		return nil, fmt.Errorf("RemovePreKey: %w", err)
	}
	if _, err := r.GetPreKey(ctx, first[0].KeyID); err != nil {
		return nil, fmt.Errorf("GetPreKey: %w", err)
	}
	k1, k2 := [32]byte{1}, [32]byte{2}
	trusted := func(addr string, k [32]byte) bool {
		ok, terr := r.IsTrustedIdentity(ctx, addr, k)
		if terr != nil && err == nil {
			err = fmt.Errorf("IsTrustedIdentity %s: %w", addr, terr)
		}
		return ok
	}
	for _, a := range []string{"erin:0", "erin:1"} {
		if perr := r.PutIdentity(ctx, a, k1); perr != nil {
			return nil, fmt.Errorf("PutIdentity %s: %w", a, perr)
		}
	}
	if !trusted("erin:0", k1) {
		failf("IsTrustedIdentity erin:0 refused the key PutIdentity stored")
	}
	if trusted("erin:0", k2) {
		failf("IsTrustedIdentity erin:0 accepted a key other than the one PutIdentity stored")
	}
	if derr := r.DeleteIdentity(ctx, "erin:0"); derr != nil {
		return nil, fmt.Errorf("DeleteIdentity: %w", derr)
	}
	if !trusted("erin:0", k2) {
		failf("IsTrustedIdentity erin:0 refused a new key after DeleteIdentity (a reinstalled contact stays undecryptable)")
	}
	if derr := r.DeleteAllIdentities(ctx, "erin"); derr != nil {
		return nil, fmt.Errorf("DeleteAllIdentities: %w", derr)
	}
	if !trusted("erin:1", k2) {
		failf("IsTrustedIdentity erin:1 refused a new key after DeleteAllIdentities erin")
	}
	return append(fails, diagnose(l.tr.snapshot(), 5, 1)...), err
}

// checkConcurrent: Goroutines goroutines write and read sessions of their
// own addresses and draw prekeys at once, round after round. A store whose
// calls are not atomic (an unlocked read-modify-write of one file) loses
// some of them.
func checkConcurrent(ctx context.Context, l *location) ([]string, error) {
	r, err := l.instance(ctx)
	if err != nil {
		return nil, err
	}
	defer r.close(ctx)
	for round := range concurrentRounds {
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, Goroutines)
		pks := make([]uint32, Goroutines)
		for g := range Goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// The same address each round, a new record: the store
				// keeps its size, so the rounds cost the same.
				a := fmt.Sprintf("g%d:0", g)
				if err := r.PutSession(ctx, a, record(a, round+1)); err != nil {
					errs[g] = fmt.Errorf("PutSession %s: %w", a, err)
					return
				}
				if _, err := r.GetSession(ctx, a); err != nil {
					errs[g] = fmt.Errorf("GetSession %s: %w", a, err)
					return
				}
				pk, err := r.GenOnePreKey(ctx)
				if err != nil {
					errs[g] = fmt.Errorf("GenOnePreKey: %w", err)
					return
				}
				pks[g] = pk.KeyID
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		for g := range Goroutines {
			a := fmt.Sprintf("g%d:0", g)
			if _, err := r.GetSession(ctx, a); err != nil {
				return nil, fmt.Errorf("GetSession %s: %w", a, err)
			}
		}
		var fails []string
		seen := map[uint32]int{}
		for _, id := range pks {
			seen[id]++
		}
		for _, id := range slices.Sorted(maps.Keys(seen)) {
			if seen[id] > 1 {
				fails = append(fails, fmt.Sprintf("GenOnePreKey handed prekey id %d to %d callers at once (round %d)", id, seen[id], round+1))
			}
		}
		fails = append(fails, diagnose(l.tr.snapshot(), 3, 1)...)
		if len(fails) > 0 {
			return fails, nil
		}
	}
	return nil, nil
}

// checkCleanReopen: what one instance wrote, a new instance opened after
// its Close reads back, prekeys by their keys included.
func checkCleanReopen(ctx context.Context, l *location) ([]string, error) {
	return reopen(ctx, l, "close")
}

// checkCrashReopen: what one instance wrote, a new instance opened after
// the old one's process was killed (SIGKILL: no Close, no timer, no
// deferred function ran) reads back: whatsmeow treats a returned call as
// durable. Prekeys handed out before keep their keys, and no id is handed
// out again with another key.
func checkCrashReopen(ctx context.Context, l *location) ([]string, error) {
	return reopen(ctx, l, "crash")
}

// reopenWrites is how many writes reopen makes before stopping: more than a
// write-back buffer of ten, not a multiple of it.
const reopenWrites = 25

func reopen(ctx context.Context, l *location, how string) ([]string, error) {
	a, err := l.instance(ctx)
	if err != nil {
		return nil, err
	}
	fail := func(err error) ([]string, error) { a.crash(); return nil, err }
	// Prekeys as whatsmeow handles them: a batch uploaded (prekeys.go
	// uploadPreKeys), one more for a retry receipt (retry.go).
	pks, err := a.GetOrGenPreKeys(ctx, 5)
	if err != nil {
		return fail(fmt.Errorf("GetOrGenPreKeys: %w", err))
	}
	if len(pks) > 0 {
		if err := a.MarkPreKeysAsUploaded(ctx, pks[len(pks)-1].KeyID); err != nil {
			return fail(fmt.Errorf("MarkPreKeysAsUploaded: %w", err))
		}
	}
	one, err := a.GenOnePreKey(ctx)
	if err != nil {
		return fail(fmt.Errorf("GenOnePreKey: %w", err))
	}
	addrs := []string{"alice:0", "alice:1", "bob:0", "carol:0", "dave:0"}
	for i := range reopenWrites {
		ad := addrs[i%len(addrs)]
		if err := a.PutSession(ctx, ad, record(ad, i)); err != nil {
			return fail(fmt.Errorf("PutSession %s: %w", ad, err))
		}
	}
	if err := a.PutSenderKey(ctx, "g1", "alice:0", record("g1/alice:0", 1)); err != nil {
		return fail(fmt.Errorf("PutSenderKey: %w", err))
	}
	if how == "close" {
		if err := a.close(ctx); err != nil {
			return nil, fmt.Errorf("Close: %w", err)
		}
	} else {
		a.crash()
	}
	l.tr.event(how, l.n)
	b, err := l.instance(ctx)
	if err != nil {
		return nil, fmt.Errorf("reopening after %s: %w", how, err)
	}
	defer b.close(ctx)
	for _, ad := range addrs {
		if _, err := b.GetSession(ctx, ad); err != nil {
			return nil, fmt.Errorf("GetSession %s after reopen: %w", ad, err)
		}
	}
	if _, err := b.GetSenderKey(ctx, "g1", "alice:0"); err != nil {
		return nil, fmt.Errorf("GetSenderKey after reopen: %w", err)
	}
	for _, k := range append(pks, one) {
		if k == nil {
			continue
		}
		if _, err := b.GetPreKey(ctx, k.KeyID); err != nil {
			return nil, fmt.Errorf("GetPreKey %d after reopen: %w", k.KeyID, err)
		}
	}
	// The server asks for more after a restart (connectionevents.go:
	// uploadPreKeys when it holds fewer than MinPreKeyCount), and the next
	// retry receipt draws one more.
	if _, err := b.GetOrGenPreKeys(ctx, 5); err != nil {
		return nil, fmt.Errorf("GetOrGenPreKeys after reopen: %w", err)
	}
	if _, err := b.GenOnePreKey(ctx); err != nil {
		return nil, fmt.Errorf("GenOnePreKey after reopen: %w", err)
	}
	return diagnose(l.tr.snapshot(), 3, 1), nil
}

// twoInstances names the direct check of two instances open at once.
const twoInstances = "two instances at once"

// checkTwoInstances: two instances open at once over one location see each
// other's writes (two processes during a deploy, replicas).
func checkTwoInstances(ctx context.Context, l *location) ([]string, error) {
	a, err := l.instance(ctx)
	if err != nil {
		return nil, err
	}
	defer a.close(ctx)
	b, err := l.instance(ctx)
	if err != nil {
		return nil, fmt.Errorf("a second instance while the first is open: %w", err)
	}
	defer b.close(ctx)
	steps := []struct {
		w, r *inst
		n    int
	}{{a, b, 1}, {b, a, 2}, {a, b, 3}}
	for _, s := range steps {
		// Read first, so that a read-through cache holds the old record.
		if _, err := s.w.GetSession(ctx, "alice:0"); err != nil {
			return nil, err
		}
		if _, err := s.r.GetSession(ctx, "alice:0"); err != nil {
			return nil, err
		}
		if err := s.w.PutSession(ctx, "alice:0", record("alice:0", s.n)); err != nil {
			return nil, fmt.Errorf("PutSession: %w", err)
		}
		if _, err := s.r.GetSession(ctx, "alice:0"); err != nil {
			return nil, err
		}
	}
	// The writer reads its own write back, and so does a third instance
	// opened after every write: later reads tell a stale cache from a
	// write the writer kept to itself and from a lost write.
	if _, err := a.GetSession(ctx, "alice:0"); err != nil {
		return nil, err
	}
	c, err := l.instance(ctx)
	if err != nil {
		return nil, fmt.Errorf("a third instance: %w", err)
	}
	defer c.close(ctx)
	if _, err := c.GetSession(ctx, "alice:0"); err != nil {
		return nil, err
	}
	return diagnose(l.tr.snapshot(), 3, 3), nil
}
