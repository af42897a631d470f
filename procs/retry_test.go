package procs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/stores"
)

// forgetfulPreKeys never finds a one-time prekey, so every pkmsg to the
// device fails, however many retries the contact answers.
type forgetfulPreKeys struct{ store.PreKeyStore }

func (forgetfulPreKeys) GetPreKey(context.Context, uint32) (*keys.PreKey, error) { return nil, nil }

// The device sends its retry receipts as whatsmeow's sendRetryReceipt
// does (retry.go 388–399, 428 at 11cf47c62d32): counted per message,
// <keys> from count 2, none from count 5, so a message that never
// decrypts is tried five times (the first copy and four resends).
func TestRetryReceiptsAsWhatsmeow(t *testing.T) {
	res := runWrapped(t, "reference", func(set *stores.Set) { set.PreKeys = forgetfulPreKeys{set.PreKeys} }, `badmac schedule v1
seed 1
scenario reply
discipline locked
store reference
contacts alice:1
ops
send alice.0 m1
deliver m1
`)
	m := res.Messages[0]
	if m.ID != "m1" || len(m.Attempts) != 5 {
		t.Fatalf("%s: %d attempts, want the first copy and 4 resends:\n%s", m.ID, len(m.Attempts), res.HistoryText())
	}
	for _, a := range m.Attempts {
		if a.OK {
			t.Fatalf("%s: attempt %s decrypted with no prekey to be found", m.ID, a.Delivery)
		}
	}
	var got []string
	for _, l := range res.History {
		if strings.Contains(l, "retry receipt") || strings.Contains(l, ": retry ") {
			got = append(got, l)
		}
	}
	var want []string
	for n := 1; n <= 4; n++ {
		with := ""
		if n >= 2 {
			with = ", rebuilt from the receipt's keys"
		}
		want = append(want, fmt.Sprintf("alice.0: retry %d of m1 queued as m1.%d (pkmsg%s)", n, n+1, with))
	}
	want = append(want, "m1.5: no retry receipt (count 5)")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("receipts:\n%s\nwant:\n%s\nhistory:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), res.HistoryText())
	}
}
