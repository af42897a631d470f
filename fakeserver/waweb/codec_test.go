package waweb

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/binary/token"
	"go.mau.fi/whatsmeow/types"

	"github.com/badmac/badmac/internal/testenv"
)

// sampleNodes are nodes of every shape the server and Baileys exchange:
// tokens of both pages, raw strings, packed nibbles and hex, JIDs of each
// kind, binary content of each length class, nested lists.
func sampleNodes() []waBinary.Node {
	big := make([]byte, 300)
	huge := make([]byte, 1<<20+5)
	for i := range big {
		big[i] = byte(i)
	}
	return []waBinary.Node{
		{Tag: "iq", Attrs: waBinary.Attrs{"id": "1234.5678-9", "type": "result", "from": types.ServerJID}},
		{Tag: "message", Attrs: waBinary.Attrs{"from": types.NewJID("alice", types.DefaultUserServer), "id": "m1", "t": 1767225600, "type": "text"},
			Content: []waBinary.Node{{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": "pkmsg", "count": 2}, Content: []byte{1, 2, 3}}}},
		{Tag: "receipt", Attrs: waBinary.Attrs{"to": types.JID{User: "10000000042", Device: 3, Server: types.DefaultUserServer}, "id": "ABCDEF0123", "type": "retry"},
			Content: []waBinary.Node{{Tag: "retry", Attrs: waBinary.Attrs{"count": "1", "v": "1"}}, {Tag: "registration", Content: []byte{0, 0, 0, 25}}}},
		{Tag: "ack", Attrs: waBinary.Attrs{"class": "message", "id": "r1", "from": types.NewJID("123-456", types.GroupServer), "lid": types.NewJID("99", types.HiddenUserServer)}},
		{Tag: "iq", Content: []waBinary.Node{{Tag: "list", Content: []waBinary.Node{{Tag: "value", Content: big}, {Tag: "x", Content: huge}}}}},
		{Tag: "presence", Attrs: waBinary.Attrs{"name": "a name with spaces", "flag": true, "n": uint32(7)}},
		{Tag: "notification", Attrs: waBinary.Attrs{"from": types.NewJID("", types.DefaultUserServer), "hex": "0123ABC", "nib": "12-34.5"}, Content: "text content"},
	}
}

// whatsmeow decodes a node we encode, and we decode what it encodes,
// with its own dictionary (3): the grammar is the same.
func TestCodecMatchesWhatsmeow(t *testing.T) {
	d3 := newDict(token.SingleByteTokens[:], slices.Collect(func(yield func([]string) bool) {
		for _, p := range token.DoubleByteTokens {
			if !yield(p) {
				return
			}
		}
	}))
	for _, n := range sampleNodes() {
		ours, err := d3.marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := waBinary.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		want, err := waBinary.Unmarshal(theirs[1:])
		if err != nil {
			t.Fatal(err)
		}
		got, err := waBinary.Unmarshal(ours[1:])
		if err != nil {
			t.Fatalf("<%s>: whatsmeow cannot decode ours: %v", n.Tag, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("<%s>: whatsmeow decodes ours as\n%s\nwant\n%s", n.Tag, got.XMLString(), want.XMLString())
		}
		back, err := d3.unmarshal(theirs[1:])
		if err != nil {
			t.Fatalf("<%s>: we cannot decode whatsmeow's: %v", n.Tag, err)
		}
		if !reflect.DeepEqual(back, want) {
			t.Errorf("<%s>: we decode whatsmeow's as\n%s\nwant\n%s", n.Tag, back.XMLString(), want.XMLString())
		}
	}
}

// Dictionary 2 round-trips, and differs from 3 on the wire (a token of
// one is not the other's).
func TestDict2RoundTrip(t *testing.T) {
	for _, n := range sampleNodes() {
		b, err := dict2.marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dict2.unmarshal(b[1:])
		if err != nil {
			t.Fatal(err)
		}
		want, _ := waBinary.Unmarshal(mustMarshal(t, n)[1:])
		if !reflect.DeepEqual(got, want) {
			t.Errorf("<%s>: round trip gives\n%s\nwant\n%s", n.Tag, got.XMLString(), want.XMLString())
		}
	}
	if _, err := dict2.unmarshal([]byte{248, 1, 240}); err == nil {
		t.Error("a node whose tag is no token (240) decoded")
	}
	if _, err := dict2.unmarshal([]byte{248}); err == nil {
		t.Error("a truncated node decoded")
	}
}

func mustMarshal(t *testing.T, n waBinary.Node) []byte {
	b, err := waBinary.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dict2 is Baileys 6.17.16's token lists (lib/WABinary/constants.js),
// read from the installed package with node.
func TestDict2MatchesBaileys6(t *testing.T) {
	testenv.NeedBaileys(t) // installs the adapter's packages on first use
	pkg, _ := filepath.Abs("../../adapters/baileys/node_modules/baileys6/lib/WABinary/constants.js")
	if _, err := os.Stat(pkg); err != nil {
		testenv.Missing(t, "Baileys 6 (npm ci --ignore-scripts --prefix adapters/baileys)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Missing(t, "node (Node 20)")
	}
	out, err := exec.Command("node", "-e", `const c=require(process.argv[1]);process.stdout.write(JSON.stringify([c.SINGLE_BYTE_TOKENS,c.DOUBLE_BYTE_TOKENS]))`, pkg).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got []json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	var single []string
	var double [][]string
	if json.Unmarshal(got[0], &single) != nil || json.Unmarshal(got[1], &double) != nil {
		t.Fatal("unexpected token lists")
	}
	if !slices.Equal(single, dict2.single) || !reflect.DeepEqual(double, dict2.double) {
		t.Fatal("fakeserver/waweb/dict2.go differs from Baileys 6.17.16's lib/WABinary/constants.js: regenerate it (see its header)")
	}
}
