package architecture

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sensitive is a call only some packages may make.
type sensitive struct {
	what string
	// match reports whether call is the sensitive call, given the file's import names.
	match func(call *ast.CallExpr, imports map[string]string) bool
	// allowed are the directories (relative to the module root) whose code may make it.
	allowed []string
}

// pkgCall matches pkgpath.fn(...), whatever name the file imports pkgpath under.
func pkgCall(pkgpath, fn string) func(*ast.CallExpr, map[string]string) bool {
	return func(call *ast.CallExpr, imports map[string]string) bool {
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != fn {
			return false
		}
		id, ok := sel.X.(*ast.Ident)
		return ok && imports[id.Name] == pkgpath
	}
}

// methodCall matches x.name(...) with nargs arguments, on any receiver.
func methodCall(name string, nargs int) func(*ast.CallExpr, map[string]string) bool {
	return func(call *ast.CallExpr, _ map[string]string) bool {
		sel, ok := call.Fun.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == name && len(call.Args) == nargs
	}
}

// benchmarks may sign with raw signers for the in-process limit they report against, and insert synthetic
// certificates and audit events (the million-event log 'bench audit' verifies, the enrolled devices of 'bench
// issue --prefill') as fixtures.
const bench = "internal/bench"

// pkitest makes CA chains for tests only.
const pkitest = "internal/pkitest"

// probe makes the certificates no Keyward key may sign (weak keys, SHA-1, an unknown CA, self-signed) under a
// throwaway CA generated in memory for one run of 'keyward probe tls'.
const probe = "internal/probe"

var sensitiveCalls = []sensitive{
	{"a keystore signer (Signer(ctx, uri, purpose))", methodCall("Signer", 3),
		[]string{"internal/ca", "internal/keystore", bench}},
	{"x509.CreateCertificate", pkgCall("crypto/x509", "CreateCertificate"), []string{"internal/ca", "internal/issuer", bench, pkitest, probe}},
	{"x509.CreateRevocationList", pkgCall("crypto/x509", "CreateRevocationList"), []string{"internal/ca", "internal/issuer", bench}},
	{"a store transaction (Tx(ctx, fn))", methodCall("Tx", 2), []string{"internal/ra", "internal/store", bench}},
	{"an audit append (AppendAudit)", methodCall("AppendAudit", 2), []string{"internal/ra", "internal/store", bench}},
	// The backends' bulk path checks no rule of the registration authority: fixtures only.
	{"a bulk load (store.BulkLoader's LoadEnrolled)", methodCall("LoadEnrolled", 3), []string{"internal/store", bench}},
}

// TestSensitiveCallSites: only the custodian (internal/ca, through internal/issuer) opens signers and signs
// certificates and CRLs; only the registration authority (internal/ra) opens transactions and appends audit
// events; only the benchmarks' fixtures load rows in bulk. Tests are not checked.
func TestSensitiveCallSites(t *testing.T) {
	root := repoRoot(t)
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		dir := filepath.ToSlash(filepath.Dir(rel))
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		imports := map[string]string{}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			name := p[strings.LastIndex(p, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			imports[name] = p
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			for _, s := range sensitiveCalls {
				if s.match(call, imports) && !within(dir, s.allowed) {
					t.Errorf("%s: %s outside %s", fset.Position(call.Pos()), s.what, strings.Join(s.allowed, ", "))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func within(dir string, allowed []string) bool {
	for _, a := range allowed {
		if dir == a || strings.HasPrefix(dir, a+"/") {
			return true
		}
	}
	return false
}
