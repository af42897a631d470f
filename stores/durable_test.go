package stores

import (
	"context"
	"testing"
)

func TestDebounceCrashLosesPending(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	d := NewDebounce(m.Quiet(), 3)
	d.Put(ctx, "a", []byte("1"))
	if v, _ := d.Get(ctx, "a"); string(v) != "1" {
		t.Fatalf("read own pending write: %q", v)
	}
	if v, _ := m.Get(ctx, "a"); v != nil {
		t.Fatalf("pending write reached the backend early: %q", v)
	}
	d.Get(ctx, "x")
	d.Get(ctx, "x") // third call since the write: flushed
	if v, _ := m.Get(ctx, "a"); string(v) != "1" {
		t.Fatalf("not flushed after k calls: %q", v)
	}
	d.Put(ctx, "a", []byte("2"))
	if d.PendingWrites() != 1 {
		t.Fatalf("pending %d", d.PendingWrites())
	}
	d.Crash("")
	if v, _ := d.Get(ctx, "a"); string(v) != "1" {
		t.Fatalf("after crash: %q, want the durable 1", v)
	}
}

func TestFilesTornAndAtomic(t *testing.T) {
	ctx := context.Background()
	for _, atomic := range []bool{false, true} {
		s := &fileStorage{disk: NewDisk(), atomic: atomic}
		s.disk.Writeback = 0
		f := s.files()
		if err := f.Put(ctx, "session/alice:0", []byte("old")); err != nil {
			t.Fatal(err)
		}
		s.disk.Fsync(f.path("session/alice:0"))
		f.Put(ctx, "session/alice:0", []byte("new record"))
		if err := s.SaveCreds(ctx, []byte("creds")); err != nil {
			t.Fatal(err)
		}
		s.Crash("gg") // tear every pending write
		got, _ := f.Get(ctx, "session/alice:0")
		creds, cerr := s.LoadCreds(ctx)
		if atomic {
			if string(got) != "new record" || string(creds) != "creds" || cerr != nil {
				t.Fatalf("atomic: session %q creds %q %v", got, creds, cerr)
			}
			continue
		}
		if got != nil || creds != nil || cerr != nil {
			t.Fatalf("in place: torn files should read as missing (Baileys): session %q creds %q %v", got, creds, cerr)
		}
	}
	s := &fileStorage{disk: NewDisk(), atomic: true}
	if _, err := s.LoadCreds(ctx); err != ErrCredsUnreadable {
		t.Fatalf("atomic store with no creds: %v, want refusal", err)
	}
}
