package sqlstores

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/stores"
)

// FuzzSQLiteCreds: the credentials reader and writer of the sqlstore
// variants (creds.go) on a real SQLite file. SaveCreds takes any bytes:
// what does not decode as credentials is an error, what does comes back
// from LoadCreds as the same device. Then one key column of the device row
// is overwritten with any bytes (another program, a bad migration; the
// schema's length checks refuse most): LoadCreds gives an error or
// credentials holding exactly those bytes, never a panic. The seed corpus holds real credentials and truncated
// copies.
func FuzzSQLiteCreds(f *testing.F) {
	var (
		once sync.Once
		sto  stores.Storage
		st   *dbStorage
		err  error
	)
	open := func() (*dbStorage, error) {
		once.Do(func() {
			if sto, err = stores.MustLookup("sqlite").Open(context.Background()); err == nil {
				st = &sto.(*sqliteStorage).dbStorage
			}
		})
		return st, err
	}
	f.Cleanup(func() {
		if sto != nil {
			sto.Close()
		}
	})
	cols := []string{"identity_key", "signed_pre_key", "signed_pre_key_sig"}
	f.Fuzz(func(t *testing.T, b []byte, col uint8, raw []byte) {
		ctx := context.Background()
		st, err := open()
		if err != nil {
			t.Fatal(err)
		}
		want, derr := endpoint.DecodeCreds(b)
		if err := st.SaveCreds(ctx, b); (err == nil) != (derr == nil) {
			t.Fatalf("SaveCreds: %v; DecodeCreds: %v", err, derr)
		}
		if derr == nil {
			got, err := st.LoadCreds(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c, err := endpoint.DecodeCreds(got)
			if err != nil || !c.Same(want) {
				t.Fatalf("saved creds load as other creds (%v)", err)
			}
		}
		c := cols[int(col)%len(cols)]
		if err := st.exec(ctx, `UPDATE whatsmeow_device SET `+c+`=$1 WHERE jid=$2`, raw, st.jid.String()); err != nil {
			return // whatsmeow's schema checks the key lengths itself
		}
		got, err := st.LoadCreds(ctx)
		if err != nil {
			return
		}
		creds, err := endpoint.DecodeCreds(got)
		if err != nil {
			t.Fatalf("LoadCreds returned creds that do not decode: %v", err)
		}
		var have []byte
		switch c {
		case "identity_key":
			have = creds.Identity.Priv[:]
		case "signed_pre_key":
			have = creds.SignedPreKey.Priv[:]
		default:
			have = creds.SignedPreKey.Signature[:]
		}
		if !bytes.Equal(have, raw) {
			t.Fatalf("%s holds %x, LoadCreds gave %x", c, raw, have)
		}
	})
}
