package endpoint

import "testing"

// FuzzDecodeCreds: any bytes a store returns as credentials (creds.json,
// the creds of a database row re-encoded) give credentials or an error,
// never a panic, and credentials that decode encode back to the same
// device. The seed corpus holds a real creds.json value and truncated
// copies.
func FuzzDecodeCreds(f *testing.F) {
	f.Add(NewCreds().Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCreds(b)
		if err != nil {
			return
		}
		again, err := DecodeCreds(c.Encode())
		if err != nil || !again.Same(c) || *again.SignedPreKey.Signature != *c.SignedPreKey.Signature {
			t.Fatalf("decoded creds do not survive Encode: %v", err)
		}
	})
}
