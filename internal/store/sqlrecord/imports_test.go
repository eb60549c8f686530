package sqlrecord

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports holds this package to its doc comment: the standard library, internal/store and internal/audit,
// and no driver.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/keyward/keyward/internal/store": true,
		"github.com/keyward/keyward/internal/audit": true,
	}
	for _, imp := range strings.Fields(string(out)) {
		if first, _, _ := strings.Cut(imp, "/"); !strings.Contains(first, ".") || allowed[imp] {
			continue
		}
		t.Errorf("sqlrecord imports %s: only the standard library, internal/store and internal/audit are allowed", imp)
	}
}
