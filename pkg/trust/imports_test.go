package trust_test

import (
	"os/exec"
	"strings"
	"testing"
)

// allowedModules are the only non-standard-library module paths pkg/trust may depend on, directly or not: device
// and gateway software embeds it, and must not drag in Keyward's server.
var allowedModules = []string{
	"github.com/keyward/keyward/pkg/trust",
	"github.com/fxamacker/cbor/v2",
	"github.com/x448/float16", // fxamacker/cbor's half-precision floats
	"github.com/veraison/go-cose",
}

// TestImports enforces that pkg/trust depends on the standard library, CBOR and COSE only (ARCHITECTURE.md:
// public packages never import internal/ or other modules).
func TestImports(t *testing.T) {
	const pkg = "github.com/keyward/keyward/pkg/trust"
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
			t.Errorf("%s depends on %s; pkg/trust may use only the standard library, CBOR and COSE", pkg, dep)
		}
	}
}
