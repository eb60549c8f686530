package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRevocationCheckCertUnderRevokedCA: after 'ca revoke', 'revocation check --cert' verifies the certificate's
// chain and refuses a certificate whose issuing CA the filter lists as revoked, though its own serial is not.
func TestRevocationCheckCertUnderRevokedCA(t *testing.T) {
	dir := initDir(t)
	certFile := filepath.Join(t.TempDir(), "device.pem")
	mustKW(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--csr",
		writePEMTemp(t, "d.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), "DEMO-00000201")), "--out", certFile)
	root := writeTemp(t, "root.pem", []byte(mustKW(t, "ca", "export", "--env", "dev", "--data", dir)))
	device, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	// The certificate followed by its issuing CA (ca export --product prints the issuing CA, then the root).
	withChain := writeTemp(t, "chain.pem", append(device, mustKW(t, "ca", "export", "--env", "dev", "--product", "demo-implant", "--data", dir)...))

	before := filepath.Join(t.TempDir(), "before.kwf")
	mustKW(t, "revocation", "filter", "--env", "dev", "--product", "demo-implant", "--out", before, "--data", dir)
	if out := mustKW(t, "revocation", "check", "--filter", before, "--trust", root, "--cert", withChain); !strings.Contains(out, ": not revoked") {
		t.Fatalf("before the CA is revoked: %s", out)
	}
	// Without its issuing CA the certificate does not chain: exit 3, naming the fix.
	if _, errs, code := kw(t, "revocation", "check", "--filter", before, "--trust", root, "--cert", certFile); code != ExitBadRequest || !strings.Contains(errs, "include its CA certificates") {
		t.Fatalf("certificate alone: exit %d %s", code, errs)
	}
	if _, errs, code := kw(t, "revocation", "check", "--filter", before, "--trust", root, "--cert", withChain, "--serial", "01"); code != ExitUsage {
		t.Fatalf("--cert and --serial: exit %d %s", code, errs)
	}

	mustKW(t, "ca", "revoke", "dev/demo-implant", "--reason", "keyCompromise", "--data", dir)

	after := filepath.Join(t.TempDir(), "after.kwf")
	if out := mustKW(t, "revocation", "filter", "--env", "dev", "--product", "demo-implant", "--out", after, "--data", dir); !strings.Contains(out, "revoked CAs listed (everything under them is refused): dev/demo-implant") {
		t.Fatalf("filter: %s", out)
	}
	out, _, code := kw(t, "revocation", "check", "--filter", after, "--trust", root, "--cert", withChain)
	if code != ExitRevoked || !strings.Contains(out, ": revoked") || !strings.Contains(out, `issuer revoked: CA "demo-implant dev CA"`) {
		t.Fatalf("certificate under the revoked CA: %s", out)
	}
	var res struct {
		Serial        string `json:"serial"`
		Revoked       bool   `json:"revoked"`
		IssuerRevoked bool   `json:"issuer_revoked"`
		Issuers       int    `json:"revoked_issuers"`
	}
	out, _, code = kw(t, "revocation", "check", "--filter", after, "--trust", root, "--cert", withChain, "--json")
	if code != ExitRevoked {
		t.Fatalf("--json: exit %d, want %d", code, ExitRevoked)
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Revoked || !res.IssuerRevoked || res.Issuers != 1 {
		t.Fatalf("--json: %+v", res)
	}
	// Its serial alone is not revoked; the answer says the serial cannot be checked against the CA list.
	if out := mustKW(t, "revocation", "check", "--filter", after, "--trust", root, "--serial", res.Serial); !strings.Contains(out, ": not revoked") || !strings.Contains(out, "use --cert") {
		t.Fatalf("serial alone: %s", out)
	}
}
