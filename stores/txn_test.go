package stores_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mau.fi/whatsmeow/store"

	"github.com/badmac/badmac/stores"
)

func openTxn(t *testing.T) (stores.Set, store.EventBuffer) {
	t.Helper()
	st, err := stores.ReferenceTxn().Open(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	set, err := st.Instance(context.Background())
	require.NoError(t, err)
	buf, ok := set.Sessions.(store.EventBuffer)
	require.True(t, ok, "the reference store with transactions is an EventBuffer")
	return set, buf
}

// A transaction's writes are its own until it commits, all of them land when
// fn succeeds, and none when fn fails or its context dies (a crash).
func TestReferenceTxn(t *testing.T) {
	ctx := context.Background()
	hash := [32]byte{7}
	t.Run("commit", func(t *testing.T) {
		set, buf := openTxn(t)
		require.NoError(t, buf.DoDecryptionTxn(ctx, func(ctx context.Context) error {
			require.NoError(t, set.Sessions.PutSession(ctx, "alice:0", []byte("s1")))
			require.NoError(t, set.PreKeys.RemovePreKey(ctx, 1))
			require.NoError(t, buf.PutBufferedEvent(ctx, hash, []byte("pt"), time.Time{}))
			got, err := set.Sessions.GetSession(ctx, "alice:0")
			require.NoError(t, err)
			require.Equal(t, "s1", string(got), "a transaction reads its own write")
			outside, err := set.Sessions.GetSession(context.Background(), "alice:0")
			require.NoError(t, err)
			require.Nil(t, outside, "nobody else sees it before the commit")
			// A nested call joins the outer transaction.
			return buf.DoDecryptionTxn(ctx, func(ctx context.Context) error {
				return set.Sessions.PutSession(ctx, "bob:0", []byte("s2"))
			})
		}))
		for addr, want := range map[string]string{"alice:0": "s1", "bob:0": "s2"} {
			got, err := set.Sessions.GetSession(ctx, addr)
			require.NoError(t, err)
			require.Equal(t, want, string(got))
		}
		ev, err := buf.GetBufferedEvent(ctx, hash)
		require.NoError(t, err)
		require.Equal(t, "pt", string(ev.Plaintext))
		require.NoError(t, buf.ClearBufferedEventPlaintext(ctx, hash))
		ev, err = buf.GetBufferedEvent(ctx, hash)
		require.NoError(t, err)
		require.NotNil(t, ev, "the hash stays")
		require.Nil(t, ev.Plaintext)
	})
	for name, end := range map[string]func(cancel func()) error{
		"fn fails": func(func()) error { return errors.New("decrypt failed") },
		"killed":   func(cancel func()) error { cancel(); return nil },
	} {
		t.Run(name, func(t *testing.T) {
			set, buf := openTxn(t)
			require.NoError(t, set.Sessions.PutSession(ctx, "alice:0", []byte("old")))
			tctx, cancel := context.WithCancel(ctx)
			defer cancel()
			err := buf.DoDecryptionTxn(tctx, func(ctx context.Context) error {
				require.NoError(t, set.Sessions.PutSession(ctx, "alice:0", []byte("new")))
				require.NoError(t, set.Sessions.DeleteSession(ctx, "alice:0"))
				require.NoError(t, buf.PutBufferedEvent(ctx, hash, []byte("pt"), time.Time{}))
				return end(cancel)
			})
			require.Error(t, err)
			got, err := set.Sessions.GetSession(ctx, "alice:0")
			require.NoError(t, err)
			require.Equal(t, "old", string(got), "rolled back")
			ev, err := buf.GetBufferedEvent(ctx, hash)
			require.NoError(t, err)
			require.Nil(t, ev)
		})
	}
}
