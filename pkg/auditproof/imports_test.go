package auditproof_test

import (
	"os/exec"
	"strings"
	"testing"
)

// allowedModules are the only non-standard-library module paths pkg/auditproof may depend on, directly or not:
// an inspector's tooling embeds it, and must not drag in Keyward's server.
var allowedModules = []string{
	"github.com/keyward/keyward/pkg/auditproof",
	"github.com/transparency-dev/merkle",
	"golang.org/x/mod/sumdb/note",
}

// TestImports enforces that pkg/auditproof depends on the standard library, the Merkle module and the signed
// note package only (ARCHITECTURE.md: public packages never import internal/ or other modules).
func TestImports(t *testing.T) {
	const pkg = "github.com/keyward/keyward/pkg/auditproof"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 3 {
		t.Fatalf("go list -deps %s listed %d non-standard packages; the test is not looking at what it should", pkg, len(deps))
	}
	for _, dep := range deps {
		ok := false
		for _, a := range allowedModules {
			ok = ok || dep == a || strings.HasPrefix(dep, a+"/")
		}
		if !ok {
			t.Errorf("%s depends on %s; pkg/auditproof may use only the standard library, transparency-dev/merkle and x/mod/sumdb/note", pkg, dep)
		}
	}
}
