package procs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/procs"
	"github.com/badmac/badmac/stores"
)

// forgetfulPreKeys never finds a one-time prekey, so every pkmsg to the
// device fails, however many retries the contact answers.
type forgetfulPreKeys struct{ store.PreKeyStore }

func (forgetfulPreKeys) GetPreKey(context.Context, uint32) (*keys.PreKey, error) { return nil, nil }

// Converse's driver sends the device's retry receipts as whatsmeow's
// sendRetryReceipt does (retry.go 388–399, 428 at 11cf47c62d32): counted
// per message, <keys> from count 2, none from count 5, so a message that
// never decrypts is tried five times (the first copy and four resends).
// Before, the driver attached keys to every receipt and sent five.
func TestConverseRetryReceiptsAsWhatsmeow(t *testing.T) {
	ctx := context.Background()
	st, err := stores.MustLookup("reference").Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := procs.Converse(ctx, procs.Config{Seed: 1, Messages: 1}, procs.Local(wrapped{st, func(set *stores.Set) { set.PreKeys = forgetfulPreKeys{set.PreKeys} }}, false), 0)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Messages[0]
	if m.ID != "m1" || len(m.Attempts) != 5 {
		t.Fatalf("%s: %d attempts, want the first copy and 4 resends:\n%s", m.ID, len(m.Attempts), strings.Join(res.History, "\n"))
	}
	for _, a := range m.Attempts {
		if a.OK {
			t.Fatalf("%s: attempt %s decrypted with no prekey to be found", m.ID, a.Delivery)
		}
	}
	var got []string
	for _, l := range res.History {
		if strings.Contains(l, "retry receipt") {
			got = append(got, l[strings.Index(l, ": ")+2:])
		}
	}
	var want []string
	for n := 1; n <= 4; n++ {
		with := ""
		if n >= 2 {
			with = " with keys"
		}
		want = append(want, fmt.Sprintf("retry receipt %d to alice.0%s", n, with))
	}
	want = append(want, "no retry receipt (count 5)")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("receipts:\n%s\nwant:\n%s\nhistory:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), strings.Join(res.History, "\n"))
	}
}
