package sqlschema

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports holds this package to its doc comment: the standard library only.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("sqlschema imports %s: only the standard library is allowed", imp)
		}
	}
}
