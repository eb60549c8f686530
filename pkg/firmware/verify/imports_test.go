package verify_test

import (
	"os/exec"
	"strings"
	"testing"
)

// allowedModules are the only non-standard-library module paths the public firmware packages may depend on,
// directly or not: device and gateway software imports them, and must not drag in Keyward's server.
var allowedModules = []string{
	"github.com/keyward/keyward/pkg/firmware/",
	"github.com/fxamacker/cbor/v2",
	"github.com/x448/float16", // fxamacker/cbor's half-precision floats
	"github.com/veraison/go-cose",
	"filippo.io/mldsa",
}

func TestImportsOnlyStdlibCBORCOSE(t *testing.T) {
	for _, pkg := range []string{"github.com/keyward/keyward/pkg/firmware/verify", "github.com/keyward/keyward/pkg/firmware/manifest"} {
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
				ok = ok || dep == strings.TrimSuffix(a, "/") || strings.HasPrefix(dep, strings.TrimSuffix(a, "/")+"/")
			}
			if !ok || strings.Contains(dep, "/internal/") && strings.HasPrefix(dep, "github.com/keyward/") {
				t.Errorf("%s depends on %s; public firmware packages may use only the standard library, CBOR, COSE and ML-DSA", pkg, dep)
			}
		}
	}
}
