package harness

import (
	"fmt"
	"strings"
)

// Discipline is how the client under test calls its store (docs/design.md §4).
type Discipline string

// The client disciplines.
const (
	// Concurrent: deliveries and replies run at once, nothing held across
	// load→decrypt→store.
	Concurrent Discipline = "concurrent"
	// Whatsmeow: receives one at a time; sends take only a send lock and
	// retry handling takes none, so both run alongside receives.
	Whatsmeow Discipline = "whatsmeow"
	// Locked: one lock per Signal address across load→decrypt/encrypt→store.
	Locked Discipline = "locked"
	// Txn: whatsmeow with EnableDecryptedEventBuffer: the locks of
	// Whatsmeow, plus each receive's decrypt and the plaintext it buffers
	// committed in one store transaction (store.EventBuffer.DoDecryptionTxn,
	// which takes no lock and serialises no send); a redelivered
	// ciphertext is answered from the buffer. Stores without
	// DoDecryptionTxn are refused.
	Txn Discipline = "txn"
)

// Disciplines lists every discipline in report order.
var Disciplines = []Discipline{Concurrent, Whatsmeow, Locked, Txn}

// ParseDiscipline checks a discipline name.
func ParseDiscipline(s string) (Discipline, error) {
	for _, d := range Disciplines {
		if string(d) == s {
			return d, nil
		}
	}
	var names []string
	for _, d := range Disciplines {
		names = append(names, string(d))
	}
	return "", fmt.Errorf("unknown discipline %q (known: %s)", s, strings.Join(names, ", "))
}
