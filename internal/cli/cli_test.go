package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/api"
)

// kw runs keyward in-process and returns stdout, stderr and the exit code.
func kw(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader("")})
	return out.String(), errb.String(), code
}

// mustKW runs keyward and fails the test unless it exits 0.
func mustKW(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := kw(t, args...)
	if code != 0 {
		t.Fatalf("keyward %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func initDir(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	mustKW(t, append([]string{"init", "--data", dir}, extra...)...)
	return dir
}

func newCSR(t *testing.T, key crypto.Signer, cn string, dns ...string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writePEMTemp(t *testing.T, name, typ string, der []byte) string {
	return writeTemp(t, name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func parsePEMCerts(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return certs
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
}

func listJSON[T any](t *testing.T, args ...string) []T {
	t.Helper()
	var v []T
	if err := json.Unmarshal([]byte(mustKW(t, args...)), &v); err != nil {
		t.Fatalf("keyward %v --json: %v", args, err)
	}
	return v
}

func countCerts(t *testing.T, dir string) int {
	return len(listJSON[certJSON](t, "cert", "list", "--data", dir, "--json", "--limit", "0"))
}

func lastEvent(t *testing.T, dir string) eventJSON {
	t.Helper()
	evs := listJSON[eventJSON](t, "audit", "list", "--data", dir, "--json", "--limit", "0")
	if len(evs) == 0 {
		t.Fatal("no audit events")
	}
	return evs[len(evs)-1]
}

func TestInitIssueExportVerify(t *testing.T) {
	dir := initDir(t)
	if fi, err := os.Stat(filepath.Join(dir, "passphrase")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev passphrase file: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "admin.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v", fi, err)
	}
	cas := listJSON[caJSON](t, "ca", "list", "--data", dir, "--json")
	if len(cas) != 2 {
		t.Fatalf("ca list = %+v, want the dev root and dev/demo-implant", cas)
	}
	for _, ca := range cas {
		if ca.Environment != "dev" || ca.Status != "active" || !strings.HasPrefix(ca.KeyURI, "soft:") {
			t.Errorf("CA %+v", ca)
		}
	}
	// init is idempotent.
	if out := mustKW(t, "init", "--data", dir); !strings.Contains(out, "nothing to create") {
		t.Errorf("second init: %s", out)
	}

	root := parsePEMCerts(t, mustKW(t, "ca", "export", "--data", dir, "--env", "dev"))
	chain := parsePEMCerts(t, mustKW(t, "ca", "export", "--data", dir, "--env", "dev", "--product", "demo-implant"))
	if len(root) != 1 || len(chain) != 2 || !chain[1].Equal(root[0]) || chain[0].Subject.CommonName != "demo-implant dev CA" {
		t.Fatalf("export: root %d certs, chain %d certs", len(root), len(chain))
	}

	key := p256(t)
	csr := writePEMTemp(t, "dev.csr", "CERTIFICATE REQUEST", newCSR(t, key, "DEMO-00000001"))
	outFile := filepath.Join(t.TempDir(), "dev.pem")
	mustKW(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--csr", csr, "--out", outFile)
	pemData, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEMCerts(t, string(pemData))[0]
	if len(leaf.Raw) > 400 {
		t.Errorf("implant-identity certificate is %d bytes DER, limit 400", len(leaf.Raw))
	}
	if leaf.Subject.CommonName != "DEMO-00000001" || leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() < 64 {
		t.Errorf("leaf subject %s serial %x", leaf.Subject, leaf.SerialNumber)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root[0])
	inter := x509.NewCertPool()
	inter.AddCert(chain[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify: %v", err)
	}

	serial := leaf.SerialNumber.Text(16)
	var shown certJSON
	if err := json.Unmarshal([]byte(mustKW(t, "cert", "show", serial, "--data", dir, "--json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Serial != serial || shown.Profile != "implant-identity" || shown.Status != "valid" || shown.Issuer != "dev/demo-implant" {
		t.Errorf("cert show = %+v", shown)
	}
	if countCerts(t, dir) != 1 {
		t.Errorf("cert list: want 1 certificate")
	}

	keys := listJSON[keyJSON](t, "key", "list", "--data", dir, "--json")
	purposes := map[string]string{}
	for _, k := range keys {
		purposes[k.Purpose] = k.Location
	}
	if purposes["root-signing"] != "software" || purposes["ca-signing"] != "software" || purposes["device-identity"] != "device" {
		t.Errorf("key glossary purposes/locations = %v", purposes)
	}
	if out := mustKW(t, "audit", "verify", "--data", dir); !strings.Contains(out, "audit chain intact") {
		t.Errorf("audit verify: %s", out)
	}
	ev := lastEvent(t, dir)
	if ev.Action != "cert.issue" || ev.Outcome != "success" || ev.Subject != serial {
		t.Errorf("last audit event = %+v", ev)
	}
	// implant-identity omits the SKI on purpose; zlint's warning about it is kept with the issuance record.
	if !strings.Contains(ev.Details["lint_warnings"], "subject_key_identifier") {
		t.Errorf("lint warnings not audited: %v", ev.Details)
	}

	// openssl, as an independent peer, accepts the chain.
	if _, err := exec.LookPath("openssl"); err == nil {
		rootFile := writeTemp(t, "root.pem", []byte(mustKW(t, "ca", "export", "--data", dir, "--env", "dev")))
		interFile := writePEMTemp(t, "inter.pem", "CERTIFICATE", chain[0].Raw)
		if out, err := exec.Command("openssl", "verify", "-CAfile", rootFile, "-untrusted", interFile, outFile).CombinedOutput(); err != nil {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
	} else if os.Getenv("KEYWARD_REQUIRE_INTEGRATION") == "1" {
		t.Fatal("openssl not found")
	}
}

func TestIssueBadInput(t *testing.T) {
	dir := initDir(t)
	good := p256(t)
	mustKW(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--csr", writePEMTemp(t, "a.csr", "CERTIFICATE REQUEST", newCSR(t, good, "DEMO-00000001")))

	badSig := newCSR(t, p256(t), "DEMO-00000002")
	badSig[len(badSig)-3] ^= 0xff
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	valid := newCSR(t, p256(t), "DEMO-00000009")

	tests := []struct {
		name    string
		profile string
		csr     []byte
		code    int
		want    string
	}{
		{"bad signature", "implant-identity", badSig, ExitBadRequest, "proof of possession"},
		{"RSA-1024", "implant-identity", newCSR(t, rsa1024, "DEMO-00000003"), ExitBadRequest, "1024"},
		{"P-384 not allowed by profile", "implant-identity", newCSR(t, p384, "DEMO-00000003"), ExitBadRequest, "ecdsa-p256"},
		{"subject not matching", "implant-identity", newCSR(t, p256(t), "PX1-123"), ExitBadRequest, "^DEMO-[0-9]{8}$"},
		{"forbidden SAN", "implant-identity", newCSR(t, p256(t), "DEMO-00000004", "evil.example.com"), ExitBadRequest, "SAN"},
		{"key of another device", "implant-identity", newCSR(t, good, "DEMO-00000005"), ExitConflict, "already certified"},
		{"unknown profile", "no-such-profile", valid, ExitBadRequest, `unknown profile "no-such-profile"`},
		{"truncated", "implant-identity", valid[:len(valid)/2], ExitBadRequest, "CSR"},
		{"oversized", "implant-identity", append(bytes.Repeat([]byte{0x30}, 70000), valid...), ExitBadRequest, "65536"},
		{"empty", "implant-identity", []byte{}, ExitBadRequest, "CSR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := countCerts(t, dir)
			_, errs, code := kw(t, "cert", "issue", "--data", dir, "--profile", tt.profile, "--csr", writeTemp(t, "x.csr", tt.csr))
			if code != tt.code || !strings.Contains(errs, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errs, tt.code, tt.want)
			}
			if after := countCerts(t, dir); after != before {
				t.Fatalf("certificates %d -> %d: a refusal stored a certificate", before, after)
			}
			ev := lastEvent(t, dir)
			if ev.Action != "cert.issue" || ev.Outcome != "refused" || ev.Details["reason"] == "" {
				t.Fatalf("last audit event = %+v, want the refusal", ev)
			}
		})
	}
	mustKW(t, "audit", "verify", "--data", dir)

	// P-192: Go cannot create such a CSR; openssl can.
	if _, err := exec.LookPath("openssl"); err == nil {
		tmp := t.TempDir()
		cmd := exec.Command("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime192v1", "-nodes",
			"-keyout", filepath.Join(tmp, "k"), "-subj", "/CN=DEMO-00000006", "-out", filepath.Join(tmp, "p192.csr"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		_, errs, code := kw(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--csr", filepath.Join(tmp, "p192.csr"))
		if code != ExitBadRequest || !strings.Contains(errs, "P-192") {
			t.Fatalf("P-192 CSR: exit %d, %q", code, errs)
		}
	}
}

func TestWrongPassphrase(t *testing.T) {
	dir := initDir(t)
	t.Setenv("KEYWARD_PASSPHRASE", "not-the-passphrase-0123456789")
	_, errs, code := kw(t, "ca", "list", "--data", dir)
	if code != ExitUnavailable || !strings.Contains(errs, "cannot unseal keystore") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if strings.Contains(errs, "not-the-passphrase") {
		t.Fatal("the passphrase appears in the error")
	}
}

func TestAuditVerifyDetectsTampering(t *testing.T) {
	dir := initDir(t)
	mustKW(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--csr", writePEMTemp(t, "a.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), "DEMO-00000001")))
	tamperSQLite(t, filepath.Join(dir, "keyward.db"), `UPDATE audit_events SET actor = 'mallory' WHERE seq = 3`)
	out, errs, code := kw(t, "audit", "verify", "--data", dir)
	if code != ExitAuditBroken || !strings.Contains(errs, "event 3") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 8 naming event 3", code, out, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"cert", "issue", "--no-such-flag"}, {"ca", "list", "extra-arg"}, {"cert", "isue"}, {"no-such-command"}} {
		if _, errs, code := kw(t, args...); code != ExitUsage {
			t.Errorf("keyward %v: exit %d, want %d; stderr %q", args, code, ExitUsage, errs)
		}
	}
	dir := filepath.Join(t.TempDir(), "empty")
	if _, errs, code := kw(t, "ca", "list", "--data", dir); code != ExitNotFound || !strings.Contains(errs, "keyward init") {
		t.Errorf("uninitialised: exit %d %q", code, errs)
	}
	out, _, code := kw(t, "--help")
	if code != 0 || !strings.Contains(out, "Exit codes") {
		t.Errorf("--help: exit %d", code)
	}
}

// Names the tests use for the JSON records the CLI prints.
type (
	caJSON    = api.CA
	certJSON  = api.Certificate
	keyJSON   = api.Key
	eventJSON = api.Event
)
