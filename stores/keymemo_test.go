package stores

import (
	"bytes"
	"testing"

	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/seeded"
)

// The memoised keys are whatsmeow's: the same stream gives the same key
// pairs through keys.NewPreKey and NewPreKey, the first time and from the
// memo.
func TestNewPreKeyIsWhatsmeows(t *testing.T) {
	for round := range 2 {
		unbind := seeded.Bind(seeded.NewStream(7, 0))
		var want []*keys.PreKey
		for i := range 5 {
			want = append(want, keys.NewPreKey(uint32(i)))
		}
		unbind()
		unbind = seeded.Bind(seeded.NewStream(7, 0))
		for i := range 5 {
			got := NewPreKey(uint32(i))
			if !bytes.Equal(got.Priv[:], want[i].Priv[:]) || !bytes.Equal(got.Pub[:], want[i].Pub[:]) || got.KeyID != want[i].KeyID {
				t.Fatalf("round %d key %d: got %x/%x, whatsmeow %x/%x", round, i, got.Priv[:4], got.Pub[:4], want[i].Priv[:4], want[i].Pub[:4])
			}
		}
		unbind()
	}
}
