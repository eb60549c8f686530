package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsOnlyStdlib: operators' tools import this package without Keyward's server or any module.
func TestImportsOnlyStdlib(t *testing.T) {
	const pkg = "github.com/keyward/keyward/pkg/client"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) != 1 || deps[0] != pkg {
		t.Fatalf("%s depends on %v beyond the standard library; it may use only the standard library", pkg, deps)
	}
	// The listing itself must see the standard library, or the check above proves nothing.
	std, err := exec.Command("go", "list", "-deps", "-f", "{{if .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil || !strings.Contains(string(std), "net/http") {
		t.Fatalf("go list -deps %s did not list net/http among the standard packages: %v\n%s", pkg, err, std)
	}
}
