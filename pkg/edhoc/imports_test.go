package edhoc_test

import (
	"os/exec"
	"strings"
	"testing"
)

// allowedModules are the only non-standard-library module paths pkg/edhoc may depend on, directly or not:
// device, gateway and app software embeds it, and must not drag in Keyward's server.
var allowedModules = []string{
	"github.com/keyward/keyward/pkg/edhoc",
	"github.com/keyward/keyward/pkg/trust",
	"github.com/keyward/keyward/pkg/certpolicy",
	"github.com/keyward/keyward/pkg/revocation/filter",
	"github.com/pion/dtls/v4/pkg/crypto/ccm", // AES-CCM, which the standard library lacks
	"github.com/pion/dtls/v4/internal/errors",
	"golang.org/x/crypto",
	"github.com/fxamacker/cbor/v2",
	"github.com/x448/float16",
	"github.com/veraison/go-cose", // through pkg/trust
}

// TestImports enforces the dependency rule of ARCHITECTURE.md for public packages.
func TestImports(t *testing.T) {
	const pkg = "github.com/keyward/keyward/pkg/edhoc"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 4 {
		t.Fatalf("go list -deps %s listed %d non-standard packages; the test is not looking at what it should", pkg, len(deps))
	}
	for _, dep := range deps {
		ok := false
		for _, a := range allowedModules {
			ok = ok || dep == a || strings.HasPrefix(dep, a+"/")
		}
		if !ok {
			t.Errorf("%s depends on %s; pkg/edhoc may use only the standard library, golang.org/x/crypto, CBOR, the CCM package and Keyward's pkg/", pkg, dep)
		}
	}
}
