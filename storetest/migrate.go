package storetest

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"go.mau.fi/whatsmeow/types"
)

// MigratePNToLID moves a contact's Signal state from its phone-number
// address to its LID address. Each rule below is read from whatsmeow's
// sqlstore at the version go.mod pins (go.mau.fi/whatsmeow
// v0.0.0-20251217143725-11cf47c62d32, store/sqlstore/store.go):
//
//   - every session of the phone number's devices ("PN:N") is copied to
//     the LID's ("LID_1:N", types.JID.SignalAddressUser) and the phone
//     number's are deleted (migratePNToLIDSessionsQuery, lines 123-128;
//     MigratePNToLID, lines 256 and 264);
//   - the same for identities (lines 131-137, 269-277) and sender keys, in
//     every group (lines 139-145, 282-290);
//   - only that contact: the pattern is the number followed by ':'
//     (`their_id LIKE $2 || ':%'`, lines 127, 135, 143), so 155500019
//     is not 15550001;
//   - all of it in one transaction (s.db.DoTxn, line 255): atomic, across a
//     crash too (checkKillInside);
//   - a second call changes nothing (the process's migratedPNSessionsCache,
//     lines 250-252; in a new process the phone number has nothing left to
//     move).
//
// whatsmeow calls it before decrypting a phone-number stanza by its LID
// (message.go decryptMessages, lines 314-323), before sending
// (send.go:1261) and before answering a retry receipt (retry.go:250).

var (
	migPN  = types.NewJID("15550001", types.DefaultUserServer)
	migLID = types.NewJID("900001", types.HiddenUserServer)
)

// migAddr is a device address of a JID as whatsmeow's stores see it.
func migAddr(j types.JID, dev int) string { return fmt.Sprintf("%s:%d", j.SignalAddressUser(), dev) }

func key32(b byte) [32]byte { return [32]byte{b, 0x5a, b} }

// migSetup writes a contact's state under its phone number, and a
// neighbour's that the migration must not touch.
func migSetup(ctx context.Context, r *inst, pn types.JID) error {
	other := types.NewJID(pn.User[:len(pn.User)-1]+"2", types.DefaultUserServer) // 15550002
	prefix := types.NewJID(pn.User+"9", types.DefaultUserServer)                 // 155500019
	for _, w := range []struct{ addr string }{{migAddr(pn, 0)}, {migAddr(pn, 1)}, {migAddr(other, 0)}, {migAddr(prefix, 0)}} {
		if err := r.PutSession(ctx, w.addr, record(w.addr, 1)); err != nil {
			return fmt.Errorf("PutSession %s: %w", w.addr, err)
		}
	}
	for i, a := range []string{migAddr(pn, 0), migAddr(pn, 1), migAddr(other, 0)} {
		if err := r.PutIdentity(ctx, a, key32(byte(i+1))); err != nil {
			return fmt.Errorf("PutIdentity %s: %w", a, err)
		}
	}
	for _, gk := range [][2]string{{"g1", migAddr(pn, 0)}, {"g2", migAddr(pn, 1)}, {"g1", migAddr(other, 0)}} {
		if err := r.PutSenderKey(ctx, gk[0], gk[1], record(gk[0]+"/"+gk[1], 1)); err != nil {
			return fmt.Errorf("PutSenderKey %s %s: %w", gk[0], gk[1], err)
		}
	}
	return nil
}

// migExpect lists what a finished migration of pn to lid leaves, read back
// call by call; each wrong answer is a finding in plain words.
func migExpect(ctx context.Context, r *inst, pn, lid types.JID, when string) ([]string, error) {
	other := types.NewJID(pn.User[:len(pn.User)-1]+"2", types.DefaultUserServer)
	prefix := types.NewJID(pn.User+"9", types.DefaultUserServer)
	var fails []string
	failf := func(f string, a ...any) { fails = append(fails, when+fmt.Sprintf(f, a...)) }
	for dev := range 2 {
		p, l := migAddr(pn, dev), migAddr(lid, dev)
		got, err := r.GetSession(ctx, l)
		if err != nil {
			return nil, fmt.Errorf("GetSession %s: %w", l, err)
		}
		if !bytes.Equal(got, record(p, 1)) {
			failf("MigratePNToLID did not move the session of %s to %s (GetSession %s returned %s; whatsmeow's sqlstore copies every session of the number, store/sqlstore/store.go:123-128)",
				p, l, l, describe(got))
		}
		if left, err := r.GetSession(ctx, p); err != nil {
			return nil, fmt.Errorf("GetSession %s: %w", p, err)
		} else if len(left) > 0 {
			failf("MigratePNToLID left the session of %s under the phone number (a copy without the delete: a later call by the number would still use it; sqlstore deletes it in the same transaction, store.go:264)", p)
		}
		trusts, err := r.IsTrustedIdentity(ctx, l, key32(0xee))
		if err != nil {
			return nil, fmt.Errorf("IsTrustedIdentity %s: %w", l, err)
		}
		own, err := r.IsTrustedIdentity(ctx, l, key32(byte(dev+1)))
		if err != nil {
			return nil, fmt.Errorf("IsTrustedIdentity %s: %w", l, err)
		}
		if trusts || !own {
			failf("MigratePNToLID did not move the identity of %s to %s (IsTrustedIdentity %s accepted another key; sqlstore moves identities, store.go:131-137, 269-277): the contact's identity is forgotten",
				p, l, l)
		}
		if fresh, err := r.IsTrustedIdentity(ctx, p, key32(0xee)); err != nil {
			return nil, fmt.Errorf("IsTrustedIdentity %s: %w", p, err)
		} else if !fresh {
			failf("MigratePNToLID left the identity of %s under the phone number (sqlstore deletes it, store.go:277)", p)
		}
	}
	for _, gk := range [][2]string{{"g1", "0"}, {"g2", "1"}} {
		p, l := pn.SignalAddressUser()+":"+gk[1], lid.SignalAddressUser()+":"+gk[1]
		got, err := r.GetSenderKey(ctx, gk[0], l)
		if err != nil {
			return nil, fmt.Errorf("GetSenderKey %s %s: %w", gk[0], l, err)
		}
		if !bytes.Equal(got, record(gk[0]+"/"+p, 1)) {
			failf("MigratePNToLID did not move the sender key of %s in %s to %s (GetSenderKey returned %s; sqlstore moves sender keys in every group, store.go:139-145, 282-290): the contact's group messages fail with no sender key",
				p, gk[0], l, describe(got))
		}
		if left, err := r.GetSenderKey(ctx, gk[0], p); err != nil {
			return nil, fmt.Errorf("GetSenderKey %s %s: %w", gk[0], p, err)
		} else if len(left) > 0 {
			failf("MigratePNToLID left the sender key of %s in %s under the phone number (sqlstore deletes it, store.go:290)", p, gk[0])
		}
	}
	for _, a := range []string{migAddr(other, 0), migAddr(prefix, 0)} {
		got, err := r.GetSession(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("GetSession %s: %w", a, err)
		}
		if !bytes.Equal(got, record(a, 1)) {
			why := "another contact"
			if a == migAddr(prefix, 0) {
				why = "whose number only begins with " + pn.User + " (sqlstore matches the number followed by ':', store.go:127)"
			}
			failf("MigratePNToLID of %s changed the session of %s, %s", pn.User, a, why)
		}
	}
	if got, err := r.GetSenderKey(ctx, "g1", migAddr(other, 0)); err != nil {
		return nil, err
	} else if !bytes.Equal(got, record("g1/"+migAddr(other, 0), 1)) {
		failf("MigratePNToLID of %s changed the sender key of %s, another contact", pn.User, migAddr(other, 0))
	}
	return fails, nil
}

func describe(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	return fmt.Sprintf("%d bytes of another record", len(b))
}

// checkMigrate: one migration moves sessions, identities and sender keys,
// leaves no copy under the phone number, touches no other contact; a
// second call, and one after a reopen, change nothing.
func checkMigrate(ctx context.Context, l *location) ([]string, error) {
	r, err := l.instance(ctx)
	if err != nil {
		return nil, err
	}
	if err := migSetup(ctx, r, migPN); err != nil {
		r.close(ctx)
		return nil, err
	}
	if err := r.MigratePNToLID(ctx, migPN, migLID); err != nil {
		r.close(ctx)
		return nil, fmt.Errorf("MigratePNToLID: %w", err)
	}
	fails, err := migExpect(ctx, r, migPN, migLID, "")
	if err != nil || len(fails) > 0 {
		r.close(ctx)
		return fails, err
	}
	if err := r.MigratePNToLID(ctx, migPN, migLID); err != nil {
		r.close(ctx)
		return nil, fmt.Errorf("a second MigratePNToLID: %w", err)
	}
	if fails, err = migExpect(ctx, r, migPN, migLID, "after a second call (not idempotent): "); err != nil || len(fails) > 0 {
		r.close(ctx)
		return fails, err
	}
	if l.s.open == nil {
		return nil, r.close(ctx)
	}
	if err := r.close(ctx); err != nil {
		return nil, err
	}
	b, err := l.instance(ctx)
	if err != nil {
		return nil, err
	}
	defer b.close(ctx)
	if err := b.MigratePNToLID(ctx, migPN, migLID); err != nil {
		return nil, fmt.Errorf("MigratePNToLID after reopen: %w", err)
	}
	return migExpect(ctx, b, migPN, migLID, "after a reopen and a third call (not idempotent): ")
}

// migRounds is how many contacts checkMigrateConcurrent migrates.
const migRounds = 8

// checkMigrateConcurrent: a migration while other goroutines store the
// same contact's sessions, as a decrypt by the LID does after its own
// migration (message.go:314-323) and an answer to a retry receipt by the
// phone number does where no LID is known (retry.go:243-251). Whatever
// the order, a write that returned is not lost: a session written under
// the number is either moved or left after the migration, never dropped;
// one written under the LID after the migration returned stays.
func checkMigrateConcurrent(ctx context.Context, l *location) ([]string, error) {
	r, err := l.instance(ctx)
	if err != nil {
		return nil, err
	}
	defer r.close(ctx)
	for round := range migRounds {
		pn := types.NewJID(fmt.Sprintf("1555%03d1", round+10), types.DefaultUserServer)
		lid := types.NewJID(fmt.Sprintf("90%03d1", round+10), types.HiddenUserServer)
		if err := migSetup(ctx, r, pn); err != nil {
			return nil, err
		}
		type span struct{ begin, end int }
		var mig, dec, old span
		x, z := record(migAddr(lid, 0), 2), record(migAddr(pn, 1), 2)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		start := make(chan struct{})
		wg.Add(3)
		go func() {
			defer wg.Done()
			<-start
			mig.begin = l.tr.begin()
			errs[0] = r.MigratePNToLID(ctx, pn, lid)
			mig.end = l.tr.begin()
		}()
		go func() {
			defer wg.Done()
			<-start
			dec.begin = l.tr.begin()
			errs[1] = r.PutSession(ctx, migAddr(lid, 0), x)
			dec.end = l.tr.begin()
		}()
		go func() {
			defer wg.Done()
			<-start
			old.begin = l.tr.begin()
			errs[2] = r.PutSession(ctx, migAddr(pn, 1), z)
			old.end = l.tr.begin()
		}()
		close(start)
		wg.Wait()
		if errs[0] != nil {
			return nil, fmt.Errorf("MigratePNToLID: %w", errs[0])
		}
		read := func(a string) ([]byte, error) { return r.GetSession(ctx, a) }
		lid0, err := read(migAddr(lid, 0))
		if err != nil {
			return nil, err
		}
		lid1, err := read(migAddr(lid, 1))
		if err != nil {
			return nil, err
		}
		pn1, err := read(migAddr(pn, 1))
		if err != nil {
			return nil, err
		}
		var fails []string
		if errs[1] == nil {
			// After the migration the write stays; before it, the migration
			// may copy the number's session over it (sqlstore does,
			// store.go:128) or keep it.
			ok := bytes.Equal(lid0, x) || dec.begin < mig.end && bytes.Equal(lid0, record(migAddr(pn, 0), 1))
			if !ok {
				fails = append(fails, fmt.Sprintf("PutSession %s, made while MigratePNToLID moved the same contact, was lost (GetSession %s returned %s afterwards)",
					migAddr(lid, 0), migAddr(lid, 0), describe(lid0)))
			}
		}
		if errs[2] == nil {
			before := bytes.Equal(lid1, z) && len(pn1) == 0                              // the write, then the migration moved it
			after := bytes.Equal(pn1, z) && bytes.Equal(lid1, record(migAddr(pn, 1), 1)) // the migration, then the write
			if !(before && old.begin < mig.end || after && old.end > mig.begin) {
				fails = append(fails, fmt.Sprintf("PutSession %s, made while MigratePNToLID moved the same contact, was lost or half moved "+
					"(afterwards %s held %s and %s held %s): the migration is not one atomic step (sqlstore makes it one transaction, store/sqlstore/store.go:255)",
					migAddr(pn, 1), migAddr(pn, 1), describe2(pn1, z), migAddr(lid, 1), describe2(lid1, z)))
			}
		}
		if len(fails) > 0 {
			return fails, nil
		}
	}
	return nil, nil
}

func describe2(got, written []byte) string {
	if bytes.Equal(got, written) {
		return "that write"
	}
	if len(got) == 0 {
		return "nothing"
	}
	return "the record from before the migration"
}
