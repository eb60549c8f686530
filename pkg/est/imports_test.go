package est

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports enforces that this public package depends on the standard library and the PKCS #7 library
// only (ARCHITECTURE.md: public packages never import internal/ or other modules).
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := map[string]bool{"github.com/keyward/keyward/pkg/est": true}
	for _, dep := range strings.Fields(string(out)) {
		if allowed[dep] || strings.HasPrefix(dep, "github.com/smallstep/pkcs7") {
			continue
		}
		t.Errorf("pkg/est depends on %s: only the standard library and github.com/smallstep/pkcs7 are allowed", dep)
	}
}
