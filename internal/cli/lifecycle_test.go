package cli

import (
	"crypto/x509"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
)

func TestMain(m *testing.M) { pkcs11test.Main(m) }

func tamperSQLite(t *testing.T, path, query string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query); err != nil {
		t.Fatalf("tamper: %v", err)
	}
}

const twoEnvConfig = `organization: Keyward Test
environments:
  dev:
    root: {algorithm: ecdsa-p256, validity: 25y}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity, gateway-identity]}
  staging:
    root: {algorithm: ecdsa-p256, validity: 25y}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity]}
  production:
    root: {algorithm: ecdsa-p384, validity: 25y, offline: true}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity]}
`

func TestEnvironmentsStayApart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keyward.yaml"), []byte(twoEnvConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	mustKW(t, "init", "--data", dir)
	cas := listJSON[caJSON](t, "ca", "list", "--data", dir, "--json")
	if len(cas) != 4 {
		t.Fatalf("want dev and staging roots and issuing CAs (production is offline), got %+v", cas)
	}
	// Production CAs only through the ceremony.
	if _, errs, code := kw(t, "ca", "create", "--data", dir, "--env", "production"); code == 0 || !strings.Contains(errs, "offline") {
		t.Fatalf("ca create production: exit %d %q", code, errs)
	}

	csr := writePEMTemp(t, "d.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), "DEMO-00000001"))
	leafFile := filepath.Join(t.TempDir(), "leaf.pem")
	mustKW(t, "cert", "issue", "--data", dir, "--env", "dev", "--profile", "implant-identity", "--csr", csr, "--out", leafFile)
	leafPEM, _ := os.ReadFile(leafFile)
	leaf := parsePEMCerts(t, string(leafPEM))[0]

	chain := func(env string) (root, inter *x509.Certificate, rootFile, interFile string) {
		certs := parsePEMCerts(t, mustKW(t, "ca", "export", "--data", dir, "--env", env, "--product", "demo-implant"))
		return certs[1], certs[0], writePEMTemp(t, env+"-root.pem", "CERTIFICATE", certs[1].Raw), writePEMTemp(t, env+"-inter.pem", "CERTIFICATE", certs[0].Raw)
	}
	devRoot, devInter, devRootFile, devInterFile := chain("dev")
	stRoot, stInter, stRootFile, stInterFile := chain("staging")

	verify := func(root, inter *x509.Certificate) error {
		rp, ip := x509.NewCertPool(), x509.NewCertPool()
		rp.AddCert(root)
		ip.AddCert(inter)
		_, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	if err := verify(devRoot, devInter); err != nil {
		t.Fatalf("dev leaf under dev root: %v", err)
	}
	if err := verify(stRoot, stInter); err == nil {
		t.Fatal("dev leaf verifies under the staging root")
	}
	if err := verify(stRoot, devInter); err == nil {
		t.Fatal("dev leaf verifies under the staging root with the dev intermediate")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("KEYWARD_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("openssl not found")
		}
		return
	}
	if out, err := exec.Command("openssl", "verify", "-CAfile", devRootFile, "-untrusted", devInterFile, leafFile).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify under dev: %v\n%s", err, out)
	}
	for _, inter := range []string{stInterFile, devInterFile} {
		out, err := exec.Command("openssl", "verify", "-CAfile", stRootFile, "-untrusted", inter, leafFile).CombinedOutput()
		if err == nil {
			t.Fatalf("openssl accepted a dev certificate under the staging root:\n%s", out)
		}
	}
}

func TestProductionCeremony(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keyward.yaml"), []byte(twoEnvConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	mustKW(t, "init", "--data", dir)
	work := t.TempDir()
	ceremony := filepath.Join(work, "ceremony")
	rootPEM, csrPEM, issuingPEM := filepath.Join(work, "root.pem"), filepath.Join(work, "issuing.csr"), filepath.Join(work, "issuing.pem")

	// A ceremony never invents its passphrase.
	if _, errs, code := kw(t, "ca", "ceremony", "root", "--dir", ceremony, "--env", "production", "--out", rootPEM); code != ExitUsage || !strings.Contains(errs, "passphrase") {
		t.Fatalf("ceremony without passphrase: exit %d %q", code, errs)
	}
	passFile := writeTemp(t, "ceremony-pass", []byte("correct horse battery staple ceremony\n"))
	// A production ceremony is never one person's act.
	if _, errs, code := kw(t, "ca", "ceremony", "root", "--dir", ceremony, "--passphrase-file", passFile, "--env", "production", "--out", rootPEM,
		"--witness", "alice", "--witness", "ALICE"); code != ExitBadRequest || !strings.Contains(errs, "two distinct witnesses") {
		t.Fatalf("ceremony with one witness: exit %d %q", code, errs)
	}
	witnesses := []string{"--witness", "alice", "--witness", "bob"}
	mustKW(t, append([]string{"ca", "ceremony", "root", "--dir", ceremony, "--passphrase-file", passFile, "--env", "production", "--out", rootPEM}, witnesses...)...)
	mustKW(t, "ca", "csr", "--data", dir, "--env", "production", "--product", "demo-implant", "--out", csrPEM)
	// The pending key is in the glossary before the CA exists.
	pending := false
	for _, k := range listJSON[keyJSON](t, "key", "list", "--data", dir, "--json") {
		pending = pending || (k.Owner == "production/demo-implant" && k.State == "pre-activation")
	}
	if !pending {
		t.Fatal("no pre-activation key for production/demo-implant")
	}
	// From the first enrolled witness on, each witness of a production ceremony names themselves with their
	// own credential.
	creds := map[string]string{}
	for _, w := range []string{"alice", "bob"} {
		creds[w] = filepath.Join(work, w+".witness")
		mustKW(t, "ca", "ceremony", "witness", "add", "--dir", ceremony, "--passphrase-file", passFile, "--name", w, "--out", creds[w])
	}
	signArgs := []string{"ca", "ceremony", "sign", "--dir", ceremony, "--passphrase-file", passFile, "--env", "production", "--csr", csrPEM, "--out", issuingPEM}
	if _, errs, code := kw(t, append(signArgs, witnesses...)...); code != ExitDenied || !strings.Contains(errs, "--witness alice:TOKENFILE") {
		t.Fatalf("plain witness names once witnesses are enrolled: exit %d %q", code, errs)
	}
	if _, errs, code := kw(t, append(signArgs, "--witness", "alice:"+creds["alice"], "--witness", "bob:"+creds["alice"])...); code != ExitDenied || !strings.Contains(errs, "own witness credential") {
		t.Fatalf("one credential for two witnesses: exit %d %q", code, errs)
	}
	mustKW(t, append(signArgs, "--witness", "alice:"+creds["alice"], "--witness", "bob:"+creds["bob"])...)
	// Importing against the wrong root is refused.
	if _, errs, code := kw(t, "ca", "import", "--data", dir, "--env", "production", "--product", "demo-implant", "--cert", issuingPEM,
		"--root", writeTemp(t, "dev-root.pem", []byte(mustKW(t, "ca", "export", "--data", dir, "--env", "dev")))); code == 0 || !strings.Contains(errs, "not signed by the given root") {
		t.Fatalf("import under the dev root: exit %d %q", code, errs)
	}
	mustKW(t, "ca", "import", "--data", dir, "--env", "production", "--product", "demo-implant", "--cert", issuingPEM, "--root", rootPEM)

	var prodRoot caJSON
	for _, ca := range listJSON[caJSON](t, "ca", "list", "--data", dir, "--json") {
		if ca.ID == "production/root" {
			prodRoot = ca
		}
	}
	if prodRoot.KeyURI != "offline" {
		t.Fatalf("production root as recorded by the server: %+v; want its key offline", prodRoot)
	}
	leafFile := filepath.Join(work, "leaf.pem")
	mustKW(t, "cert", "issue", "--data", dir, "--env", "production", "--profile", "implant-identity",
		"--csr", writePEMTemp(t, "p.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), "DEMO-10000001")), "--out", leafFile)
	if _, err := exec.LookPath("openssl"); err == nil {
		if out, err := exec.Command("openssl", "verify", "-CAfile", rootPEM, "-untrusted", issuingPEM, leafFile).CombinedOutput(); err != nil {
			t.Fatalf("openssl verify production chain: %v\n%s", err, out)
		}
	}
	// The ceremony's own audit trail is intact, and the server never held a root-signing key for production.
	mustKW(t, "audit", "verify", "--data", ceremony, "--passphrase-file", passFile)
	for _, k := range listJSON[keyJSON](t, "key", "list", "--data", dir, "--json") {
		if k.Purpose == "root-signing" && strings.HasPrefix(k.Owner, "production") {
			t.Fatalf("server data directory holds the production root key %s", k.URI)
		}
	}
}

func TestPKCS11IssuingCA(t *testing.T) {
	cfg := pkcs11test.NewToken(t)
	dir := initDir(t, "--keystore", cfg)
	t.Setenv("KEYWARD_PKCS11_PIN", pkcs11test.PIN)
	if data, _ := os.ReadFile(filepath.Join(dir, "keystores.yaml")); strings.Contains(string(data), "pin-value") {
		t.Fatalf("keystores.yaml holds a PIN: %s", data)
	}
	for _, ca := range listJSON[caJSON](t, "ca", "list", "--data", dir, "--json") {
		if !strings.HasPrefix(ca.KeyURI, "pkcs11:") || strings.Contains(ca.KeyURI, "pin") {
			t.Errorf("CA %s key %s: want a pkcs11 URI without PIN", ca.ID, ca.KeyURI)
		}
	}
	out := filepath.Join(t.TempDir(), "leaf.pem")
	mustKW(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--csr", writePEMTemp(t, "a.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), "DEMO-00000001")), "--out", out)
	for _, k := range listJSON[keyJSON](t, "key", "list", "--data", dir, "--json") {
		if k.Purpose == "ca-signing" && k.Location != "pkcs11" {
			t.Errorf("ca-signing key location %s, want pkcs11", k.Location)
		}
	}

	t.Setenv("KEYWARD_PKCS11_PIN", "9999")
	if _, errs, code := kw(t, "ca", "list", "--data", dir); code != ExitUnavailable || strings.Contains(errs, "9999") {
		t.Fatalf("wrong PIN: exit %d %q", code, errs)
	}
	if _, errs, code := kw(t, "init", "--data", filepath.Join(t.TempDir(), "d2"), "--keystore", "pkcs11:token=x?module-path=/nonexistent/libnothing.so&pin-value=1234"); code != ExitUnavailable || !strings.Contains(errs, "/nonexistent/libnothing.so") {
		t.Fatalf("missing module: exit %d %q", code, errs)
	}
}

func TestKeyDestroy(t *testing.T) {
	dir := initDir(t)
	mustKW(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--csr", writePEMTemp(t, "a.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), "DEMO-00000001")))
	var caKey, devKey string
	for _, k := range listJSON[keyJSON](t, "key", "list", "--data", dir, "--json") {
		switch k.Purpose {
		case "ca-signing":
			caKey = k.URI
		case "device-identity":
			devKey = k.URI
		}
	}
	if _, _, code := kw(t, "key", "destroy", caKey, "--data", dir); code != ExitUsage {
		t.Fatalf("destroy without --reason: exit %d", code)
	}
	mustKW(t, "key", "destroy", devKey, "--data", dir, "--reason", "device decommissioned, key erased by secure element")
	mustKW(t, "key", "destroy", caKey, "--data", dir, "--reason", "product line retired")
	if _, _, code := kw(t, "key", "destroy", caKey, "--data", dir, "--reason", "again"); code != ExitConflict {
		t.Fatalf("destroy twice: exit %d, want %d", code, ExitConflict)
	}
	for _, k := range listJSON[keyJSON](t, "key", "list", "--data", dir, "--json") {
		if (k.URI == caKey || k.URI == devKey) && (k.State != "destroyed" || k.DestroyedAt == nil) {
			t.Errorf("key %s state %s destroyed_at %v", k.URI, k.State, k.DestroyedAt)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", strings.TrimPrefix(caKey, "soft:")+".key")); !os.IsNotExist(err) {
		t.Errorf("sealed key file still exists: %v", err)
	}
	for _, ca := range listJSON[caJSON](t, "ca", "list", "--data", dir, "--json") {
		if ca.ID == "dev/demo-implant" && ca.Status != "retired" {
			t.Errorf("CA with destroyed key is %s", ca.Status)
		}
	}
	if _, errs, code := kw(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--csr", writePEMTemp(t, "b.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), "DEMO-00000002"))); code == 0 {
		t.Fatal("issued under a CA whose key was destroyed")
	} else if !strings.Contains(errs, "retired") {
		t.Errorf("stderr %q", errs)
	}
	mustKW(t, "audit", "verify", "--data", dir)
}
