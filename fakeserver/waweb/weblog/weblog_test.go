package weblog

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sampleArgs are values for a format's fields, one set per call: named
// fields get a value of their kind, the rest one per verb; the second set
// has the awkward values (empty words and text, text with the format's
// own punctuation, quotes).
func sampleArgs(f *format, set int) []any {
	var out []any
	for i, name := range f.fields {
		switch {
		case name == "peer":
			out = append(out, []string{"alice.0", "bob.12"}[set])
		case name == "id":
			out = append(out, []string{"m1", "r3.2"}[set])
		case name == "type":
			out = append(out, messageTypes[1+set])
		case name == "class":
			out = append(out, []string{"BadMAC", "OldCounter"}[set])
		case f.verbs[i] == 's':
			out = append(out, []string{"pkmsg", ""}[set])
		case f.verbs[i] == 'v':
			out = append(out, []string{"x: y (z)", ""}[set])
		case f.verbs[i] == 'd':
			out = append(out, []int{3, -1}[set])
		case f.verbs[i] == 't':
			out = append(out, []bool{true, false}[set])
		case f.verbs[i] == 'q':
			out = append(out, []string{"retry", `a "b": c`}[set])
		}
	}
	return out
}

// Every format's line reads back as that format, with the fields it was
// written with, whatever the values (the formats that can write the same
// line are tried most specific first).
func TestLinesParseBack(t *testing.T) {
	for i := range formats {
		f := &formats[i]
		for set := range 2 {
			args := sampleArgs(f, set)
			line := Format(f.kind, args...)
			got, ok := Parse(line)
			if !ok || got.Kind != f.kind {
				t.Errorf("%s: %q read as %q, %t", f.kind, line, got.Kind, ok)
				continue
			}
			for j, a := range args {
				if want := fmt.Sprint(a); got.Args[j] != want {
					t.Errorf("%s: %q field %s = %q, want %q", f.kind, line, f.fields[j], got.Args[j], want)
				}
				read := map[string]any{"peer": got.Peer, "id": got.ID, "count": got.Count, "class": got.Class}
				if v, named := read[f.fields[j]]; named && v != a {
					t.Errorf("%s: %q: %s read as %v", f.kind, line, f.fields[j], v)
				}
			}
			if got.ByPeer != f.byPeer || got.Failed != f.failed {
				t.Errorf("%s: %q: by peer %t, failed %t", f.kind, line, got.ByPeer, got.Failed)
			}
		}
	}
}

// Lines other writers add to a history are not the server's: the
// harness's op, attempt, store-call and note lines (harness/history.go),
// the real client's and the socket device's own lines, a reworded server
// line.
func TestRejectsOtherFormats(t *testing.T) {
	for _, l := range []string{
		"", "deliver m1", "drain: deliver m4", "op send alice.0 m1", "step m1: GetSession alice:0",
		"m1: ok", "r2: BadMAC (no valid sessions)", "m1 GetSession alice:0", "m1@1 PutSession alice:0",
		"alice.0: retry 1 of r2 to the device, resent as r2.2", "m3: send failed: store: boom",
		"crash with nothing parked", `crash "": killed [m3], 2 pending writes hit`, "restart: credentials intact",
		"realclient: mode controlled", "crash: recv killed after storing the decrypt of m2, before its ack",
		"m1 get session alice.0", "r1: sent (msg)", "connection closed",
		"deliver m1 pkmsg count=one", "deliver m6 @1", "deliver m1 text", "peer alice.0: r1 msg count=0 decrypted", "peer alice.0: r1 msg count=0 failed: Bad MAC", "retry-receipt m1 count=1 keys=maybe",
		"receipt m1 type=inactive", "ack m1", "ack m1 err=<nil>", "ack m1 receipt", "logged in 1:2@s.whatsapp.net",
	} {
		if got, ok := Parse(l); ok {
			t.Errorf("%q read as a server line %+v", l, got)
		}
	}
}

// Every line the server (the parent package, waweb) writes goes through
// its logLine with a kind of formats and as many arguments as the kind's
// format has verbs; there is no other Logf call in waweb (a writer outside
// the table would have no reader), and every format has a writer (a
// reader without one reads nothing).
func TestEveryWriterUsesAFormat(t *testing.T) {
	fset := token.NewFileSet()
	kinds := map[string]Kind{} // constant name → kind
	own, err := parser.ParseFile(fset, "weblog.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(own, func(n ast.Node) bool {
		if v, ok := n.(*ast.ValueSpec); ok && len(v.Names) == 1 && len(v.Values) == 1 {
			if lit, ok := v.Values[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				k, _ := strconv.Unquote(lit.Value)
				kinds[v.Names[0].Name] = Kind(k)
			}
		}
		return true
	})
	files, err := filepath.Glob(filepath.Join("..", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var calls []*ast.CallExpr
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				return n.Name.Name != "logLine" // the one Logf call
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Logf" || sel.Sel.Name == "logLine") {
					calls = append(calls, n)
				}
			}
			return true
		})
	}
	written := map[Kind]int{}
	for _, c := range calls {
		pos := fset.Position(c.Pos())
		if c.Fun.(*ast.SelectorExpr).Sel.Name == "Logf" {
			t.Errorf("%s: a Logf call: write the line through logLine with a kind of weblog", pos)
			continue
		}
		var f *format
		if sel, ok := c.Args[0].(*ast.SelectorExpr); ok {
			f = formatOf[kinds[sel.Sel.Name]]
		}
		if f == nil {
			t.Errorf("%s: logLine's kind is not one of weblog's constants", pos)
			continue
		}
		if len(c.Args)-1 != len(f.fields) {
			t.Errorf("%s: %s with %d arguments, its format %q has %d verbs", pos, f.kind, len(c.Args)-1, f.format, len(f.fields))
		}
		written[f.kind]++
	}
	for _, f := range formats {
		if written[f.kind] == 0 {
			t.Errorf("format %s (%q) has no writer", f.kind, f.format)
		}
	}
	if len(kinds) != len(formats) {
		t.Errorf("%d kind constants, %d formats", len(kinds), len(formats))
	}
	t.Logf("%d writers of %d formats", len(calls), len(formats))
}
