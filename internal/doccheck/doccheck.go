// Package doccheck keeps the README short and the links between the docs
// whole: README.md at most MaxReadmeLines lines, and every relative link in
// README.md and docs/*.md naming a file or directory that exists.
package doccheck

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
)

// MaxReadmeLines is the README's budget: it routes, docs/ explains.
const MaxReadmeLines = 250

// link matches an inline Markdown link's target: [text](target).
var link = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// Check returns one line per problem found in fsys (a repository root):
// a README over max lines, or a relative link in README.md or docs/*.md
// whose target is missing. Links inside code fences and inline code are
// not links; absolute URLs and bare #anchors are not checked.
func Check(fsys fs.FS, max int) []string {
	var problems []string
	readme, err := fs.ReadFile(fsys, "README.md")
	if err != nil {
		return []string{"README.md: " + err.Error()}
	}
	if n := strings.Count(string(readme), "\n"); n > max {
		problems = append(problems, fmt.Sprintf("README.md: %d lines, more than %d: move the detail to docs/", n, max))
	}
	docs, err := fs.Glob(fsys, "docs/*.md")
	if err != nil {
		return append(problems, err.Error())
	}
	for _, name := range append([]string{"README.md"}, docs...) {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			problems = append(problems, name+": "+err.Error())
			continue
		}
		for _, l := range Links(string(b)) {
			target := l.Target
			if i := strings.IndexByte(target, '#'); i >= 0 {
				target = target[:i]
			}
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p := path.Clean(path.Join(path.Dir(name), target))
			if strings.HasPrefix(p, "../") || p == ".." {
				problems = append(problems, fmt.Sprintf("%s:%d: link %s leaves the repository", name, l.Line, l.Target))
				continue
			}
			if _, err := fs.Stat(fsys, p); err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: link %s: no file %s", name, l.Line, l.Target, p))
			}
		}
	}
	return problems
}

// A Link is a link target and the line it is on.
type Link struct {
	Line   int
	Target string
}

// Links returns the inline links of a Markdown text, outside code fences
// and inline code spans.
func Links(md string) []Link {
	var out []Link
	fence := false
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
			continue
		}
		if fence {
			continue
		}
		for _, m := range link.FindAllStringSubmatch(stripCode(line), -1) {
			out = append(out, Link{Line: i + 1, Target: m[1]})
		}
	}
	return out
}

// stripCode blanks inline code spans (`…`) in one line.
func stripCode(line string) string {
	parts := strings.Split(line, "`")
	for i := 1; i < len(parts); i += 2 {
		parts[i] = ""
	}
	return strings.Join(parts, "`")
}
