package cli

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/fleet"
	"github.com/keyward/keyward/internal/pkitest"
)

var reSeconds = regexp.MustCompile(`"seconds": [0-9.e-]+`)

// TestFleetScanCLI plants a key on two devices (one certificate issued here, one imported from another system),
// and walks the commands: import-certs with a malformed certificate (named, skipped, counted; --strict imports
// nothing), scan --json (exit 10, golden), scan --revoke, a clean environment (exit 0), usage mistakes (exit 2).
func TestFleetScanCLI(t *testing.T) {
	dir := initDir(t)
	common := []string{"--data", dir}
	key := pkitest.Key(t)
	csr := filepath.Join(dir, "dev.csr")
	if err := os.WriteFile(csr, pkitest.PEM("CERTIFICATE REQUEST", newCSR(t, key, "DEMO-00000042")), 0o600); err != nil {
		t.Fatal(err)
	}
	mustKW(t, append([]string{"cert", "issue", "--profile", "implant-identity", "--csr", csr}, common...)...)

	legacy := pkitest.NewRoot(t, "Legacy device CA", pkitest.Key(t))
	other := legacy.Leaf(t, &x509.Certificate{SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: "DEMO-00000043"}}, key.Public())
	honest := legacy.Leaf(t, &x509.Certificate{SerialNumber: big.NewInt(4243), Subject: pkix.Name{CommonName: "DEMO-00000044"}}, pkitest.Key(t).Public())
	good := filepath.Join(dir, "legacy.pem")
	if err := os.WriteFile(good, append(pkitest.PEM("CERTIFICATE", other.Raw), pkitest.PEM("CERTIFICATE", honest.Raw)...), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "broken.der")
	if err := os.WriteFile(bad, append(append([]byte(nil), honest.Raw...), 0x30, 0x03, 0x02, 0x01, 0x01), 0o600); err != nil {
		t.Fatal(err)
	}
	// --strict: one malformed certificate, nothing imported.
	out := kwCode(t, ExitBadRequest, append([]string{"fleet", "import-certs", "--env", "dev", "--strict", good, bad}, common...)...)
	if !strings.Contains(out, "broken.der#2") || !strings.Contains(out, "nothing imported (--strict)") {
		t.Fatalf("import --strict: %s", out)
	}
	var imp ImportCertsOutput
	if err := json.Unmarshal([]byte(mustKW(t, append([]string{"fleet", "import-certs", "--env", "dev", "--product", "demo-implant", "--json", good, bad}, common...)...)), &imp); err != nil {
		t.Fatal(err)
	}
	if imp.Imported != 2 || imp.Already != 1 || len(imp.Malformed) != 1 || imp.Malformed[0].Source != bad+"#2" {
		t.Fatalf("import: %+v, want legacy.pem#1 and #2 imported, broken.der#1 (legacy.pem#2 again) already, broken.der#2 skipped", imp)
	}
	if err := json.Unmarshal([]byte(mustKW(t, append([]string{"fleet", "import-certs", "--env", "dev", "--json", good}, common...)...)), &imp); err != nil || imp.Imported != 0 || imp.Already != 2 {
		t.Fatalf("import again: %+v %v, want 2 already imported", imp, err)
	}

	scanOut := kwCode(t, ExitFindings, append([]string{"fleet", "scan", "--env", "dev", "--json"}, common...)...)
	js := scanOut[:strings.LastIndex(scanOut, "}")+1] // stdout, before the "report saved" line
	golden(t, "fleet_scan.golden", []byte(reSeconds.ReplaceAllString(normalise(js, dir), `"seconds": <s>`)+"\n"))
	var rep fleet.Report
	if err := json.Unmarshal([]byte(js), &rep); err != nil || len(rep.Findings) != 1 || rep.Findings[0].Kind != fleet.KindDuplicateKey {
		t.Fatalf("scan: %v %+v", err, rep)
	}
	saved, err := filepath.Glob(filepath.Join(dir, "reports", "fleet-scan", "*-dev.json"))
	if err != nil || len(saved) != 1 {
		t.Fatalf("saved reports %v %v, want one", saved, err)
	}

	out = kwCode(t, ExitFindings, append([]string{"fleet", "scan", "--env", "dev", "--revoke"}, common...)...)
	if !strings.Contains(out, "revoked (keyCompromise)") || !strings.Contains(out, "1 revoked (keyCompromise), 0 already revoked, 1 imported") {
		t.Fatalf("scan --revoke:\n%s", out)
	}
	certs := mustKW(t, append([]string{"cert", "list", "--status", "revoked", "--json"}, common...)...)
	if !strings.Contains(certs, "DEMO-00000042") {
		t.Fatalf("the duplicate key's certificate is not revoked: %s", certs)
	}

	clean := initDir(t)
	if out := mustKW(t, "fleet", "scan", "--env", "dev", "--data", clean); !strings.Contains(out, "no findings") {
		t.Fatalf("clean scan: %s", out)
	}
	kwCode(t, ExitUsage, "fleet", "scan", "--data", clean)
	kwCode(t, ExitUsage, "fleet", "import-certs", "--env", "dev", "--data", clean)
	kwCode(t, ExitNotFound, "fleet", "scan", "--env", "dev", "--product", "no-such-product", "--data", clean)
}
