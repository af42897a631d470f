package doccheck

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

// TestRepository checks this repository's README.md and docs/*.md.
func TestRepository(t *testing.T) {
	for _, p := range Check(os.DirFS("../.."), MaxReadmeLines) {
		t.Error(p)
	}
}

// TestCheck shows the checker both ways on synthetic trees: a short README
// with whole links passes; a long one, a broken link from the README or
// between docs, and a link out of the repository each fail.
func TestCheck(t *testing.T) {
	lines := func(n int) string { return strings.Repeat("x\n", n) }
	tests := []struct {
		name  string
		files fstest.MapFS
		want  []string // substrings, one per expected problem; none: passes
	}{
		{"short, links whole", fstest.MapFS{
			"README.md":   {Data: []byte("# r\n[a](docs/a.md) [b](docs/b.md#sec) [web](https://x.org/y) [top](#x) [dir](cmd/)\n" + lines(10))},
			"docs/a.md":   {Data: []byte("[b](b.md) [back](../README.md) [code](../cmd/main.go)\n")},
			"docs/b.md":   {Data: []byte("`[not](a link)` and\n```\n[not](either)\n```\n")},
			"cmd/main.go": {Data: []byte("package main\n")},
		}, nil},
		{"exactly 250 lines", fstest.MapFS{"README.md": {Data: []byte(lines(250))}}, nil},
		{"251 lines", fstest.MapFS{"README.md": {Data: []byte(lines(251))}}, []string{"251 lines, more than 250"}},
		{"broken link in README", fstest.MapFS{
			"README.md": {Data: []byte("see [rates](docs/rates.md)\n")},
		}, []string{"README.md:1: link docs/rates.md: no file docs/rates.md"}},
		{"broken link between docs", fstest.MapFS{
			"README.md": {Data: []byte("[a](docs/a.md)\n")},
			"docs/a.md": {Data: []byte("line\n[b](docs/b.md)\n")},
			"docs/b.md": {Data: []byte("\n")},
		}, []string{"docs/a.md:2: link docs/b.md: no file docs/docs/b.md"}},
		{"link out of the repository", fstest.MapFS{
			"README.md": {Data: []byte("[x](../other/x.md)\n")},
		}, []string{"leaves the repository"}},
		{"no README", fstest.MapFS{}, []string{"README.md:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(tt.files, 250)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems %q, want %d %q", len(got), got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
