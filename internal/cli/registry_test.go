package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCertIssueConsultsRegistry: 'keyward cert issue' refuses a serial the registry retired with
// 'device decommission' (exit 6, the reason on stderr) and stores nothing; an unregistered serial is issued.
func TestCertIssueConsultsRegistry(t *testing.T) {
	dir := initDir(t)
	common := []string{"--data", dir}
	st := filepath.Join(t.TempDir(), "st")
	mustKW(t, append([]string{"station", "add", "--site", "line-r", "--product", "demo-implant", "--out", st}, common...)...)
	url := serveInProcess(t, common...)
	tmp := t.TempDir()
	mustKW(t, "device", "enroll", "--serial", "DEMO-00000601", "--key-out", filepath.Join(tmp, "d.key"), "--out", filepath.Join(tmp, "d.pem"),
		"--server", url, "--product", "demo-implant", "--trust", filepath.Join(st, "trust.pem"),
		"--station", filepath.Join(st, "station.pem"), "--station-key", filepath.Join(st, "station.key"))
	mustKW(t, append([]string{"device", "decommission", "DEMO-00000601", "--attested-by", "QA"}, common...)...)

	writeCSR := func(cn string) string {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		path := filepath.Join(t.TempDir(), cn+".csr")
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: newCSR(t, k, cn)}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	before := mustKW(t, append([]string{"cert", "list", "--json"}, common...)...)
	_, stderr, code := kw(t, append([]string{"cert", "issue", "--profile", "implant-identity", "--csr", writeCSR("DEMO-00000601")}, common...)...)
	if code != ExitConflict || !strings.Contains(stderr, "decommissioned") {
		t.Fatalf("cert issue for a decommissioned serial: exit %d, %s; want %d naming decommissioned", code, stderr, ExitConflict)
	}
	if after := mustKW(t, append([]string{"cert", "list", "--json"}, common...)...); after != before {
		t.Fatal("a refused issuance changed the certificate list")
	}
	audit := mustKW(t, append([]string{"audit", "list", "--json"}, common...)...)
	if !strings.Contains(audit, `"refused"`) || !strings.Contains(audit, "was decommissioned") {
		t.Fatal("the refusal is not in the audit trail")
	}
	mustKW(t, append([]string{"cert", "issue", "--profile", "implant-identity", "--csr", writeCSR("DEMO-00000602")}, common...)...)
}
