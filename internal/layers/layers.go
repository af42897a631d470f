// Package layers keeps badmac's package map honest: docs/design.md §2
// gives every package a floor, and a package may import only packages on
// a lower floor (its test files may import anything). Check compares that
// table with the import graph `go list` reports; the package's test runs
// it on the repository.
package layers

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Floors reads the package table of a design document: rows of the form
// "| `path` | floor | …" (module-relative paths). Other lines are ignored.
func Floors(r io.Reader) (map[string]int, error) {
	floors := map[string]int{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) < 4 || strings.TrimSpace(cells[0]) != "" {
			continue
		}
		name := strings.TrimSpace(cells[1])
		if !strings.HasPrefix(name, "`") || !strings.HasSuffix(name, "`") {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(cells[2]))
		if err != nil {
			continue // another table of package names, without floors
		}
		name = strings.Trim(name, "`")
		if _, dup := floors[name]; dup {
			return nil, fmt.Errorf("package %s listed twice", name)
		}
		floors[name] = n
	}
	return floors, sc.Err()
}

// Check reports every way imports (package → the module's packages it
// imports, module-relative) and floors disagree: a package missing from
// the table, a listed package that does not exist, an import of a package
// on the same floor or above. It returns the problems sorted, one a line.
func Check(imports map[string][]string, floors map[string]int) []string {
	var bad []string
	for p, deps := range imports {
		fp, ok := floors[p]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s is not in the package table", p))
			continue
		}
		for _, d := range deps {
			fd, ok := floors[d]
			if ok && fd >= fp {
				bad = append(bad, fmt.Sprintf("%s (floor %d) imports %s (floor %d): not below it", p, fp, d, fd))
			}
		}
	}
	for p := range floors {
		if _, ok := imports[p]; !ok {
			bad = append(bad, fmt.Sprintf("%s is in the package table but is not a package", p))
		}
	}
	sort.Strings(bad)
	return bad
}
