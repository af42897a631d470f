package layers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The repository: every package is in docs/design.md §2 and imports only
// packages on a lower floor.
func TestRepositoryLayers(t *testing.T) {
	root := filepath.Join("..", "..")
	f, err := os.Open(filepath.Join(root, "docs", "design.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	floors, err := Floors(f)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/badmac/badmac/"
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		p := strings.TrimPrefix(fields[0], module)
		imports[p] = nil
		for _, d := range fields[1:] {
			if strings.HasPrefix(d, module) {
				imports[p] = append(imports[p], strings.TrimPrefix(d, module))
			}
		}
	}
	if len(imports) < 10 {
		t.Fatalf("go list found %d packages: wrong directory?", len(imports))
	}
	for _, problem := range Check(imports, floors) {
		t.Error(problem)
	}
}

func TestCheck(t *testing.T) {
	floors := map[string]int{"stores": 2, "harness": 6, "fakeserver": 4}
	for _, c := range []struct {
		name    string
		imports map[string][]string
		floors  map[string]int
		want    string
	}{
		{"downward", map[string][]string{"stores": nil, "fakeserver": {"stores"}, "harness": {"stores", "fakeserver"}}, floors, ""},
		{"upward", map[string][]string{"stores": {"harness"}, "fakeserver": nil, "harness": nil}, floors, "stores (floor 2) imports harness (floor 6): not below it"},
		{"level", map[string][]string{"stores": nil, "fakeserver": {"waweb"}, "harness": nil, "waweb": nil},
			map[string]int{"stores": 2, "harness": 6, "fakeserver": 4, "waweb": 4}, "fakeserver (floor 4) imports waweb (floor 4): not below it"},
		{"missing from table", map[string][]string{"stores": nil, "fakeserver": nil, "harness": nil, "bench": {"harness"}}, floors, "bench is not in the package table"},
		{"gone", map[string][]string{"stores": nil, "harness": nil}, floors, "fakeserver is in the package table but is not a package"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := strings.Join(Check(c.imports, c.floors), "\n")
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestFloors(t *testing.T) {
	doc := "| package | floor | what |\n|---|---|---|\n| `sim` | 1 | scheduler |\n| `stores` | 2 | stores |\n" +
		"| `x` | what | no floor: another table |\ntext | `y` | 3 |\n"
	got, err := Floors(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["sim"] != 1 || got["stores"] != 2 {
		t.Errorf("floors = %v", got)
	}
	if _, err := Floors(strings.NewReader("| `sim` | 1 | a |\n| `sim` | 2 | b |\n")); err == nil {
		t.Error("a package listed twice was accepted")
	}
}
