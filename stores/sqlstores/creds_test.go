package sqlstores_test

import (
	"context"
	"testing"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/stores"
)

func TestSQLiteCreds(t *testing.T)   { testCreds(t, "sqlite") }
func TestPostgresCreds(t *testing.T) { testCreds(t, "postgres") }

// Credentials saved in the device row come back from a fresh container (a
// restarted process), and a second save replaces the first.
func testCreds(t *testing.T, name string) {
	ctx := context.Background()
	st := openVariant(t, name)
	defer st.Close()
	cs, ok := st.(stores.CredsStore)
	if !ok {
		t.Fatalf("%T is not a stores.CredsStore", st)
	}
	for range 2 {
		want := endpoint.NewCreds()
		if err := cs.SaveCreds(ctx, want.Encode()); err != nil {
			t.Fatal(err)
		}
		b, err := cs.LoadCreds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := endpoint.DecodeCreds(b)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Same(want) || *got.SignedPreKey.Signature != *want.SignedPreKey.Signature {
			t.Fatalf("loaded creds differ from saved")
		}
	}
}
