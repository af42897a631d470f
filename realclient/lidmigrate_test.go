package realclient

import (
	"context"
	"strings"
	"testing"

	"github.com/badmac/badmac/harness"
)

// inOrder reports the first of want that does not follow the one before
// it in text ("" when all do).
func inOrder(text string, want []string) string {
	at := 0
	for _, w := range want {
		i := strings.Index(text[at:], w)
		if i < 0 {
			return w
		}
		at += i + len(w)
	}
	return ""
}

// The account's LID migration through the real Client (docs/lid.md §1.4,
// §6.1): the bot's own phone sends the LID migration sync message, the
// pinned whatsmeow sets LIDMigrationTimestamp (message.go:786-806,
// 927-964), and its next sends to a PN go to the contact's LID
// (send.go:325-347). Before the switch a send to a PN device whose LID is
// known migrates the PN session and encrypts under the LID
// (encryptMessageForDevices, send.go:1256-1269); after it, a contact
// whose session was migrated gets a plain message on it, and one whose
// session never was gets a new session from a bundle fetched for its LID
// device, which the next PN stanza's MigratePNToLID overwrites with the
// PN session (the #475 class, noted). The same on sqlstore and on the
// reference store; without the migrate op every reply goes to the PN; a
// controlled run replays byte for byte.
func TestLIDMigrationSwitch(t *testing.T) {
	s := readSchedule(t, "testdata/lid/migration-switch.txt")
	ctx := context.Background()
	const want = "m1 delivered []; m2 delivered []; r1 delivered []; r2 delivered []; m3 delivered []; r3 delivered []; " +
		"r4 delivered []; r5 delivered []; m4 recovered [NoSession NoSession]; m5 delivered []"
	steps := []string{
		"op reply alice.0 r3", "step recv: MigratePNToLID", "step recv: GetManySessions 900001_1:0", "hold r3 for alice@s.whatsapp.net",
		"op migrate", "deliver lidsync1 pkmsg", `receipt lidsync1 type="peer_msg" (own phone)`,
		"op reply alice.0 r4", "step recv: GetManySessions 900001_1:0", "hold r4 for 900001@lid", "peer alice.0: r4 msg count=0 ok",
		"op reply bob.0 r5", "usync lid bob@s.whatsapp.net = 900002@lid", "prekey fetch 900002@lid", "hold r5 for 900002@lid",
		"peer bob.0: r5 pkmsg count=0 ok",
		"op deliver m4", "step recv: MigratePNToLID", "retry-receipt m4",
	}
	for _, store := range []string{"sqlite", "reference"} {
		s := s.Clone()
		s.Store = store
		dev := &Device{Reply: Inline}
		_, res, err := harness.RunOn(ctx, dev, s, harness.Serial, harness.Ops(s.Ops))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Verdicts(); got != want {
			t.Errorf("store %s: got %s\nwant %s", store, got, want)
		}
		if miss := inOrder(res.HistoryText(), steps); miss != "" {
			t.Errorf("store %s: the history lacks %q after the lines before it:\n%s", store, miss, res.HistoryText())
		}
		if n := noteOf(res, "m4"); !strings.Contains(n, "#475 class after the LID migration") {
			t.Errorf("store %s: m4 noted %q, want the #475 class after the migration", store, n)
		}
	}

	// Without migrate: the same conversation, every reply to the PN.
	no := s.Clone()
	no.Ops = nil
	for _, op := range s.Ops {
		if _, ok := op.(harness.MigrateOp); !ok {
			no.Ops = append(no.Ops, op)
		}
	}
	_, res, err := harness.RunOn(ctx, &Device{Reply: Inline}, no, harness.Serial, harness.Ops(no.Ops))
	if err != nil {
		t.Fatal(err)
	}
	if miss := inOrder(res.HistoryText(), []string{"hold r4 for alice@s.whatsapp.net", "hold r5 for bob@s.whatsapp.net"}); miss != "" {
		t.Errorf("without migrate: the history lacks %q:\n%s", miss, res.HistoryText())
	}
	if strings.Contains(res.HistoryText(), "lidsync") || strings.Contains(res.HistoryText(), "usync lid") {
		t.Errorf("without migrate: the server sent the migration or a usync LID")
	}

	// Controlled: the same schedule twice, byte for byte.
	res = replayExactly(t, &Device{Reply: Inline}, s, 2)
	if miss := inOrder(res.HistoryText(), []string{"hold r4 for 900001@lid", "hold r5 for 900002@lid"}); miss != "" {
		t.Errorf("controlled: the history lacks %q:\n%s", miss, res.HistoryText())
	}
}
