package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/store/storetest"
)

// TestPostgresEndToEnd runs init, issuance, a refusal and audit verification against PostgreSQL.
func TestPostgresEndToEnd(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	dir := filepath.Join(t.TempDir(), "data")
	mustKW(t, "init", "--data", dir, "--db", dsn)
	mustKW(t, "cert", "issue", "--data", dir, "--db", dsn, "--profile", "implant-identity",
		"--csr", writePEMTemp(t, "a.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), "DEMO-00000001")))
	_, errs, code := kw(t, "cert", "issue", "--data", dir, "--db", dsn, "--profile", "implant-identity",
		"--csr", writePEMTemp(t, "b.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), "BAD")))
	if code != ExitBadRequest || !strings.Contains(errs, "does not match") {
		t.Fatalf("refusal: exit %d %q", code, errs)
	}
	if n := len(listJSON[certJSON](t, "cert", "list", "--data", dir, "--db", dsn, "--json")); n != 1 {
		t.Fatalf("%d certificates in PostgreSQL, want 1", n)
	}
	if out := mustKW(t, "audit", "verify", "--data", dir, "--db", dsn); !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %s", out)
	}
}
