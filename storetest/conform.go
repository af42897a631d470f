package storetest

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"

	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/stores"
)

// The conformance checks call each store method directly, outside any
// scenario: what each call must return, with real goroutines where a
// store's own locking is what is tested. They go through the same recorder
// and diagnosis as the scenarios, so their findings read the same way.

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
}

func (s *subject) location() (*location, error) {
	l := &location{s: s, tr: newTrace(s.tally)}
	if s.open != nil {
		dir, err := os.MkdirTemp("", "badmac-conform-")
		if err != nil {
			return nil, fmt.Errorf("storetest: location: %w", err)
		}
		l.dir = dir
	}
	return l, nil
}

// instance opens one instance (the constructor, for the simple form).
func (l *location) instance() (*recorder, io.Closer, error) {
	var set stores.Set
	var c io.Closer
	var err error
	if l.s.open != nil {
		set, c, err = l.s.open(l.dir)
	} else {
		set, err = l.s.newStore()
	}
	if err == nil {
		err = set.Complete()
	}
	if err != nil {
		return nil, nil, err
	}
	l.n++
	return &recorder{set: set, tr: l.tr, inst: l.n - 1}, c, nil
}

func (l *location) cleanup() {
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

func closeIf(c io.Closer) error {
	if c == nil {
		return nil
	}
	return c.Close()
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

// conformance runs every check and returns its findings, each prefixed
// with the check's name. Checks that need reopening are skipped for a
// constructor; skipped lists them.
func conformance(ctx context.Context, s *subject) (findings, skipped []string, err error) {
	checks := []struct {
		name  string
		needs string
		fn    func(context.Context, *location) ([]string, error)
	}{
		{"keys and batches", "", checkKeys},
		{"prekeys and identities", "", checkPreKeysIdentities},
		{fmt.Sprintf("%d goroutines at once", Goroutines), "", checkConcurrent},
		{"reopen after Close", capReopen, checkCleanReopen},
		{"reopen after a crash", capReopen, checkCrashReopen},
		{"two instances at once", capInstances, checkTwoInstances},
	}
	for _, c := range checks {
		if c.needs != "" && s.open == nil {
			skipped = append(skipped, c.name)
			continue
		}
		l, err := s.location()
		if err != nil {
			return nil, nil, err
		}
		fs, err := c.fn(ctx, l)
		l.cleanup()
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

// checkKeys: one record per full address (user and device), batches that
// write and read every entry, deletes.
func checkKeys(ctx context.Context, l *location) ([]string, error) {
	r, c, err := l.instance()
	if err != nil {
		return nil, err
	}
	defer closeIf(c)
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
	if _, err := r.GetManySessions(ctx, []string{"alice:0", "carol:0", "carol:1", "dave:0", "nobody:0"}); err != nil {
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
	// Called, not judged: whatsmeow's sqlstore and the in-memory stores
	// move sessions differently, and no Signal path depends on it.
	if err := r.MigratePNToLID(ctx, types.NewJID("15550001", types.DefaultUserServer), types.NewJID("900001", types.HiddenUserServer)); err != nil {
		return nil, fmt.Errorf("MigratePNToLID: %w", err)
	}
	return append(fails, diagnose(l.tr.snapshot(), 5)...), nil
}

// checkPreKeysIdentities: prekeys keep their ids and keys, are never handed
// out twice, stay gone once removed; identities are trusted on first use
// and until deleted.
func checkPreKeysIdentities(ctx context.Context, l *location) ([]string, error) {
	r, c, err := l.instance()
	if err != nil {
		return nil, err
	}
	defer closeIf(c)
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
		got, err := r.GetPreKey(ctx, k.KeyID)
		if err != nil {
			return nil, fmt.Errorf("GetPreKey %d: %w", k.KeyID, err)
		}
		if got == nil || *got.Priv != *k.Priv {
			failf("GetPreKey %d did not return the prekey generated with that id (a contact using it fails with InvalidPreKey)", k.KeyID)
		}
	}
	if err := r.RemovePreKey(ctx, first[0].KeyID); err != nil {
		return nil, fmt.Errorf("RemovePreKey: %w", err)
	}
	if got, err := r.GetPreKey(ctx, first[0].KeyID); err != nil {
		return nil, fmt.Errorf("GetPreKey: %w", err)
	} else if got != nil {
		failf("GetPreKey %d returned the prekey after RemovePreKey (a replayed pkmsg would be accepted again)", first[0].KeyID)
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
	return fails, err
}

// checkConcurrent: Goroutines goroutines write and read sessions of their
// own addresses and draw prekeys at once, round after round. A store whose
// calls are not atomic (an unlocked read-modify-write of one file) loses
// some of them.
func checkConcurrent(ctx context.Context, l *location) ([]string, error) {
	r, c, err := l.instance()
	if err != nil {
		return nil, err
	}
	defer closeIf(c)
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
				a := fmt.Sprintf("r%dg%d:0", round, g)
				if err := r.PutSession(ctx, a, record(a, 1)); err != nil {
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
			a := fmt.Sprintf("r%dg%d:0", round, g)
			if _, err := r.GetSession(ctx, a); err != nil {
				return nil, fmt.Errorf("GetSession %s: %w", a, err)
			}
		}
		var fails []string
		seen := map[uint32]int{}
		for _, id := range pks {
			seen[id]++
		}
		for _, id := range sortedIDs(seen) {
			if seen[id] > 1 {
				fails = append(fails, fmt.Sprintf("GenOnePreKey handed prekey id %d to %d callers at once (round %d)", id, seen[id], round+1))
			}
		}
		fails = append(fails, diagnose(l.tr.snapshot(), 3)...)
		if len(fails) > 0 {
			return fails, nil
		}
	}
	return nil, nil
}

// checkCleanReopen: what one instance wrote, a new instance opened after
// its Close reads back.
func checkCleanReopen(ctx context.Context, l *location) ([]string, error) {
	return reopen(ctx, l, "close")
}

// checkCrashReopen: what one instance wrote, a new instance opened after
// the old one was abandoned (never closed, never called again) reads back:
// whatsmeow treats a returned PutSession as durable.
func checkCrashReopen(ctx context.Context, l *location) ([]string, error) {
	return reopen(ctx, l, "crash")
}

// reopenWrites is how many writes reopen makes before stopping: more than a
// write-back buffer of ten, not a multiple of it.
const reopenWrites = 25

func reopen(ctx context.Context, l *location, how string) ([]string, error) {
	a, ca, err := l.instance()
	if err != nil {
		return nil, err
	}
	addrs := []string{"alice:0", "alice:1", "bob:0", "carol:0", "dave:0"}
	for i := range reopenWrites {
		ad := addrs[i%len(addrs)]
		if err := a.PutSession(ctx, ad, record(ad, i)); err != nil {
			closeIf(ca)
			return nil, fmt.Errorf("PutSession %s: %w", ad, err)
		}
	}
	if err := a.PutSenderKey(ctx, "g1", "alice:0", record("g1/alice:0", 1)); err != nil {
		closeIf(ca)
		return nil, fmt.Errorf("PutSenderKey: %w", err)
	}
	if how == "close" {
		if err := closeIf(ca); err != nil {
			return nil, fmt.Errorf("Close: %w", err)
		}
	}
	l.tr.event(how, l.n)
	b, cb, err := l.instance()
	if err != nil {
		return nil, fmt.Errorf("reopening after %s: %w", how, err)
	}
	defer closeIf(cb)
	for _, ad := range addrs {
		if _, err := b.GetSession(ctx, ad); err != nil {
			return nil, fmt.Errorf("GetSession %s after reopen: %w", ad, err)
		}
	}
	if _, err := b.GetSenderKey(ctx, "g1", "alice:0"); err != nil {
		return nil, fmt.Errorf("GetSenderKey after reopen: %w", err)
	}
	return diagnose(l.tr.snapshot(), 3), nil
}

// checkTwoInstances: two instances open at once over one location see each
// other's writes (two processes during a deploy, replicas).
func checkTwoInstances(ctx context.Context, l *location) ([]string, error) {
	a, ca, err := l.instance()
	if err != nil {
		return nil, err
	}
	defer closeIf(ca)
	b, cb, err := l.instance()
	if err != nil {
		return nil, fmt.Errorf("a second instance while the first is open: %w", err)
	}
	defer closeIf(cb)
	steps := []struct {
		w, r *recorder
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
	return diagnose(l.tr.snapshot(), 3), nil
}

func sortedIDs(m map[uint32]int) []uint32 {
	return slices.Sorted(maps.Keys(m))
}
