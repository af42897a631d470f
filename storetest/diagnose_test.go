package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func put(key, val string) call {
	return call{method: "PutSession", key: key, val: []byte(val), ok: true}
}
func putMany(key, val string) call {
	return call{method: "PutManySessions", key: key, val: []byte(val), ok: true}
}
func get(key, val string) call {
	return call{method: "GetSession", key: key, val: []byte(val), ok: true}
}
func ev(name string) call { return call{event: name} }

// Each way a store can answer wrongly gets its own plain words; a store
// that answers right gets none.
func TestDiagnose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		calls []call
		want  string
	}{
		{"right", []call{put("a:0", "1"), put("a:0", "2"), get("a:0", "2"), get("b:0", "")}, ""},
		{"other key", []call{put("a:0", "1"), put("a:1", "2"), get("a:0", "2")},
			"GetSession a:0 returned the record PutSession wrote for a:1"},
		{"older", []call{put("a:0", "1"), put("a:0", "2"), put("a:0", "3"), get("a:0", "1")},
			"GetSession a:0 returned an older record than the last PutSession (write 1 of 3; writes 2 to 3 lost)"},
		{"lost", []call{put("a:0", "1"), get("a:0", "")},
			"GetSession a:0 returned nothing after PutSession wrote it (write 1 of 1 lost)"},
		{"batch", []call{putMany("c:0", "1"), get("c:0", "")},
			"PutManySessions dropped c:0 (GetSession then returned nothing)"},
		{"crash", []call{put("a:0", "1"), put("a:0", "2"), ev("crash"), get("a:0", "1")},
			"after reopen, PutSession a:0 from before the crash is missing (GetSession returned write 1 of 2)"},
		{"close", []call{put("a:0", "1"), ev("close"), get("a:0", "")},
			"after reopen, PutSession a:0 from before Close is missing (GetSession returned nothing)"},
		{"rollback restores", []call{put("a:0", "1"), ev("snapshot"), put("a:0", "2"), ev("crash"), ev("rollback"), get("a:0", "1")}, ""},
		{"rollback not restored", []call{put("a:0", "1"), ev("snapshot"), put("a:0", "2"), ev("crash"), ev("rollback"), get("a:0", "2")},
			"GetSession a:0 returned write 2 of 2, which the restored backup did not hold"},
		{"deleted", []call{put("a:0", "1"), {method: "DeleteSession", key: "a:0", ok: true}, get("a:0", "1")},
			"GetSession a:0 returned a record after DeleteSession removed it"},
		{"torn", []call{put("a:0", "12345"), get("a:0", "123")},
			"GetSession a:0 returned 3 bytes no call wrote (a torn or corrupted record; the last PutSession wrote 5 bytes)"},
	} {
		for i := range tc.calls {
			tc.calls[i].begin, tc.calls[i].seq = 2*i+1, 2*i+2
		}
		got := diagnose(tc.calls, 5, 1)
		if tc.want == "" {
			require.Empty(t, got, tc.name)
			continue
		}
		require.NotEmpty(t, got, tc.name)
		require.Equal(t, tc.want, got[0], tc.name)
	}
}

// A GetPreKey that overlaps a RemovePreKey of the same id (two receives of
// prekey messages carrying it, on real goroutines) may find nothing: a
// correct answer. The same read after the removal began only later, or
// with no removal at all, is the store's.
func TestDiagnosePreKeyReadOverlappingRemove(t *testing.T) {
	key := [32]byte{1}
	gen := call{method: "GetOrGenPreKeys", ok: true, prekeys: []pk{{id: 1, priv: &key}}, begin: 1, seq: 2}
	read := call{method: "GetPreKey", ok: true, prekeys: []pk{{id: 1}}, begin: 3, seq: 6}
	remove := func(begin, seq int) call {
		return call{method: "RemovePreKey", ok: true, prekeys: []pk{{id: 1}}, begin: begin, seq: seq}
	}
	require.Empty(t, diagnose([]call{gen, remove(4, 7), read}, 5, 1), "removal began during the read")
	require.Empty(t, diagnose([]call{gen, remove(2, 5), read}, 5, 1), "removal returned during the read")
	got := diagnose([]call{gen, read, remove(7, 8)}, 5, 1)
	require.NotEmpty(t, got, "removal began after the read returned")
	require.Contains(t, got[0], "GetPreKey 1 returned nothing, though GetOrGenPreKeys handed it out")
	require.NotEmpty(t, diagnose([]call{gen, read}, 5, 1), "no removal")
}

// A snapshot is a span (processes stopped, dir copied, processes resumed):
// a call that overlapped it may or may not be in the backup, so after a
// rollback either answer is right. A call that returned before the span
// began is in the backup for certain.
func TestDiagnoseSnapshotSpan(t *testing.T) {
	key := [32]byte{1}
	gen := call{method: "GetOrGenPreKeys", ok: true, prekeys: []pk{{id: 1, priv: &key}}, begin: 1, seq: 2}
	remove := func(begin, seq int) call {
		return call{method: "RemovePreKey", ok: true, prekeys: []pk{{id: 1}}, begin: begin, seq: seq}
	}
	snap := func(begin, seq int) call { return call{event: "snapshot", begin: begin, seq: seq} }
	at := func(c call, b, s int) call { c.begin, c.seq = b, s; return c }
	readKey := call{method: "GetPreKey", ok: true, prekeys: []pk{{id: 1, priv: &key}}}

	// RemovePreKey returned inside the span: the copy may still hold the key.
	require.Empty(t, diagnose([]call{gen, snap(3, 6), remove(4, 5), at(ev("crash"), 7, 7), at(ev("rollback"), 8, 8), at(readKey, 9, 10)}, 5, 1))
	// RemovePreKey returned before the span began: the backup cannot hold it.
	got := diagnose([]call{gen, remove(3, 4), snap(5, 8), at(ev("crash"), 9, 9), at(ev("rollback"), 10, 10), at(readKey, 11, 12)}, 5, 1)
	require.NotEmpty(t, got)
	require.Contains(t, got[0], "GetPreKey 1 returned the prekey after RemovePreKey removed it")

	// The same for a session write: one inside the span may be in the
	// backup; one that began after the span cannot be.
	require.Empty(t, diagnose([]call{at(put("a:0", "1"), 1, 2), snap(3, 6), at(put("a:0", "2"), 4, 5),
		at(ev("crash"), 7, 7), at(ev("rollback"), 8, 8), at(get("a:0", "2"), 9, 10)}, 5, 1))
	got = diagnose([]call{at(put("a:0", "1"), 1, 2), snap(3, 6), at(put("a:0", "2"), 7, 8),
		at(ev("crash"), 9, 9), at(ev("rollback"), 10, 10), at(get("a:0", "2"), 11, 12)}, 5, 1)
	require.NotEmpty(t, got)
	require.Contains(t, got[0], "which the restored backup did not hold")
}
