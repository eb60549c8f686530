package architecture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/keyward/keyward/"

// repoRoot is the module's root directory (this package is internal/architecture).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// allowedGraph reads the fenced "layers" block of docs/ARCHITECTURE.md: one line per package, "pkg: imports...".
func allowedGraph(t *testing.T) map[string][]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	graph := map[string][]string{}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "```layers":
			in = true
		case in && line == "```":
			in = false
		case in && line != "":
			pkg, deps, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("docs/ARCHITECTURE.md layers block: %q is not \"package: imports...\"", line)
			}
			if _, dup := graph[pkg]; dup {
				t.Fatalf("docs/ARCHITECTURE.md layers block lists %s twice", pkg)
			}
			graph[pkg] = strings.Fields(deps)
		}
	}
	if len(graph) == 0 {
		t.Fatal("docs/ARCHITECTURE.md has no ```layers block")
	}
	return graph
}

type listedPackage struct {
	ImportPath string
	Imports    []string
}

// modulePackages lists every package of the module with its direct imports (tests excluded).
func modulePackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestLayering fails on an import between Keyward's packages that docs/ARCHITECTURE.md does not allow, and on a
// package the document does not place at all: a new edge is a design decision, made in the document first.
func TestLayering(t *testing.T) {
	graph := allowedGraph(t)
	seen := map[string]bool{}
	for _, p := range modulePackages(t) {
		name := strings.TrimPrefix(p.ImportPath, module)
		seen[name] = true
		allowed, ok := graph[name]
		if !ok {
			t.Errorf("package %s is not in the import graph of docs/ARCHITECTURE.md: place it there", name)
			continue
		}
		for _, imp := range p.Imports {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			if !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which docs/ARCHITECTURE.md does not allow", name, dep)
			}
		}
	}
	for name := range graph {
		if !seen[name] {
			t.Errorf("docs/ARCHITECTURE.md places %s, which no longer exists", name)
		}
	}
}
