package stores

import (
	"bytes"
	"context"
	"testing"

	groupRecord "go.mau.fi/libsignal/groups/state/record"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
)

// Fuzz targets for every reader of stored bytes in the files variants:
// whatever a torn write, a crash or a hand edit leaves in a file, reading
// it gives a value or an error, never a panic. Each target puts its input
// where a file would be (in place, as a crash leaves it) and calls every
// reader of that file through the store; values the store passes through
// (session and sender key records) must read back byte for byte. The seed
// corpora under
// testdata/fuzz/ are real files of a files-atomic store after a
// conversation (sessions, prekeys, identity, sender key, creds.json),
// their inner records, and truncated copies.

// fuzzStore is a files store (in place, or atomic) whose file path holds
// content, durable as if a crash had left it there.
func fuzzStore(t *testing.T, atomic bool, path string, content []byte) (*fileStorage, *KV) {
	st := &fileStorage{disk: NewDisk(), atomic: atomic}
	st.disk.WriteFile(path, content)
	st.disk.Fsync(path)
	set, err := st.Instance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st, set.Sessions.(*KV)
}

// libsignal's record decoders (v0.2.1), which whatsmeow's store.Device
// calls on whatever bytes a store returns, panic on records that are valid
// JSON with fields missing; they are not readers of this package and are
// pinned by TestLibsignalRecordDecodersPanic instead of fuzzed here.

// FuzzFilesSession: a session file with any content, read by every session
// reader; the input is also taken as a raw session record, stored and
// read back unchanged.
func FuzzFilesSession(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte) {
		ctx := context.Background()
		const addr = "alice:0"
		files := &Files{Dir: authDir}
		_, kv := fuzzStore(t, false, files.path(sessionPrefix+addr), content)
		_, _ = kv.GetSession(ctx, addr)
		_, _ = kv.HasSession(ctx, addr)
		_, _ = kv.GetManySessions(ctx, []string{addr, "bob:0"})
		pn := types.JID{User: "alice", Server: types.DefaultUserServer}
		lid := types.JID{User: "1234", Server: types.HiddenUserServer}
		_ = kv.MigratePNToLID(ctx, pn, lid)

		if err := kv.PutSession(ctx, "carol:0", content); err != nil {
			t.Fatal(err)
		}
		back, err := kv.GetSession(ctx, "carol:0")
		if err != nil || !bytes.Equal(back, content) {
			t.Fatalf("stored %q, read back %q, %v", content, back, err)
		}
	})
}

// FuzzFilesSenderKey: the same for a sender key file and record.
func FuzzFilesSenderKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte) {
		ctx := context.Background()
		files := &Files{Dir: authDir}
		_, kv := fuzzStore(t, false, files.path(senderKeyPrefix+"g1/bot:0"), content)
		_, _ = kv.GetSenderKey(ctx, "g1", "bot:0")
		if err := kv.PutSenderKey(ctx, "g2", "bot:0", content); err != nil {
			t.Fatal(err)
		}
		back, err := kv.GetSenderKey(ctx, "g2", "bot:0")
		if err != nil || !bytes.Equal(back, content) {
			t.Fatalf("stored %q, read back %q, %v", content, back, err)
		}
	})
}

// FuzzFilesIdentity: an identity file with any content.
func FuzzFilesIdentity(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte) {
		ctx := context.Background()
		files := &Files{Dir: authDir}
		_, kv := fuzzStore(t, false, files.path(identityPrefix+"alice:0"), content)
		_, _ = kv.IsTrustedIdentity(ctx, "alice:0", [32]byte{1})
		_ = kv.DeleteAllIdentities(ctx, "alice")
	})
}

// FuzzFilesPreKey: a file with any name in the auth folder (a prekey
// file, a stray one) and any content, read by every
// prekey reader: the file name is parsed as much as its content.
func FuzzFilesPreKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string, content []byte) {
		ctx := context.Background()
		_, kv := fuzzStore(t, false, authDir+name, content)
		_, _ = kv.GetPreKey(ctx, 2)
		_, _ = kv.UploadedPreKeyCount(ctx)
		_ = kv.MarkPreKeysAsUploaded(ctx, 3)
		pks, err := kv.GetOrGenPreKeys(ctx, 3)
		if err == nil && len(pks) != 3 {
			t.Fatalf("GetOrGenPreKeys(3) gave %d prekeys", len(pks))
		}
		if _, err := kv.GenOnePreKey(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzFilesCreds: creds.json with any content, loaded by both files
// variants and decoded: the in-place variant may read it as "none" (what
// Baileys does), the atomic one must refuse; neither may panic. (The
// device decodes them with endpoint.DecodeCreds: FuzzDecodeCreds there.)
func FuzzFilesCreds(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte) {
		ctx := context.Background()
		for _, atomic := range []bool{false, true} {
			st, _ := fuzzStore(t, atomic, credsFile, content)
			b, err := st.LoadCreds(ctx)
			if err == nil && b == nil && atomic {
				t.Fatalf("files-atomic read unreadable creds as none")
			}
		}
	})
}

// FuzzKV: any key and value in a backend, under every reader of the
// key-value layout (prekey values, the next prekey id, identities, prekey
// key names), as storage written by another version or another program
// would hold them.
func FuzzKV(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string, val []byte) {
		ctx := context.Background()
		m := NewMemory()
		if err := m.Quiet().Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
		kv := &KV{Backend: m.Quiet(), Lock: newLock()}
		_, _ = kv.IsTrustedIdentity(ctx, "alice:0", [32]byte{1})
		_, _ = kv.GetPreKey(ctx, 1)
		_, _ = kv.UploadedPreKeyCount(ctx)
		_ = kv.MarkPreKeysAsUploaded(ctx, 5)
		_, _ = kv.GetOrGenPreKeys(ctx, 2)
		_, _ = kv.GenOnePreKey(ctx)
		_, _ = kv.GetSession(ctx, "alice:0")
		_, _ = kv.GetSenderKey(ctx, "g1", "alice:0")
	})
}

// TestLibsignalRecordDecodersPanic pins a library trap the fuzz targets
// found: libsignal v0.2.1's record decoders, called by whatsmeow's
// store.Device.LoadSession and LoadSenderKey on the bytes a store returns,
// panic (nil dereference, index out of range) instead of returning an
// error when a record is well-formed JSON with a field missing. A store
// that hands back another program's or a truncated-then-repaired record
// crashes the decrypt, not a Bad MAC. When this test fails, the library
// returns errors now and the trap can be dropped from docs/design.md.
func TestLibsignalRecordDecodersPanic(t *testing.T) {
	s := store.SignalProtobufSerializer
	panics := func(name string, fn func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: libsignal no longer panics", name)
			}
		}()
		fn()
	}
	panics("session {}", func() { _, _ = record.NewSessionFromBytes([]byte(`{}`), s.Session, s.State) })
	panics("sender key with an empty state", func() {
		_, _ = groupRecord.NewSenderKeyFromBytes([]byte(`{"SenderKeyStates":[{}]}`), s.SenderKeyRecord, s.SenderKeyState)
	})
	// Truncated JSON is an error, as it should be.
	if _, err := record.NewSessionFromBytes([]byte(`{"SessionState":`), s.Session, s.State); err == nil {
		t.Errorf("truncated session record decoded")
	}
}
