package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/ra"
)

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("KEYWARD_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("%s not found (KEYWARD_REQUIRE_INTEGRATION=1)", name)
		}
		t.Skipf("%s not found", name)
	}
}

// TestESTCurlOpenSSLInterop drives EST with curl and openssl as the peers: openssl makes the key and CSR,
// curl posts it base64-encoded with the station's certificate, openssl reads the certs-only response; then
// cacerts the same way.
func TestESTCurlOpenSSLInterop(t *testing.T) {
	needTool(t, "curl")
	needTool(t, "openssl")
	ts := startWith(t, nil)
	cred, err := ts.n.RA.AddStation(context.Background(), ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.StationRequest{Environment: "dev", Site: "site-b", ProductLines: []string{"demo-implant"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	os.WriteFile(file("station.pem"), cred.CertPEM, 0o644)
	os.WriteFile(file("station.key"), cred.KeyPEM(), 0o600)
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", file("dev.key"),
		"-subj", "/CN=DEMO-00000077", "-outform", "DER", "-out", file("dev.csr"))
	run("openssl", "base64", "-in", file("dev.csr"), "-out", file("dev.b64")) // 64-column lines
	run("curl", "-sS", "--fail-with-body", "--cacert", ts.caFile, "--cert", file("station.pem"), "--key", file("station.key"),
		"-H", "Content-Type: application/pkcs10", "-H", "Content-Transfer-Encoding: base64", "--data-binary", "@"+file("dev.b64"),
		"-D", file("headers"), "-o", file("resp.b64"), ts.url+"/.well-known/est/demo-implant/simpleenroll")
	if h, _ := os.ReadFile(file("headers")); !strings.Contains(strings.ToLower(string(h)), "content-type: application/pkcs7-mime; smime-type=certs-only") {
		t.Fatalf("response headers:\n%s", h)
	}
	run("openssl", "base64", "-d", "-in", file("resp.b64"), "-out", file("resp.p7"))
	certs := run("openssl", "pkcs7", "-inform", "DER", "-in", file("resp.p7"), "-print_certs")
	if !strings.Contains(certs, "subject=CN = DEMO-00000077") || !strings.Contains(certs, "issuer=CN = demo-implant dev CA") {
		t.Fatalf("openssl pkcs7 -print_certs:\n%s", certs)
	}
	if d, err := ts.n.Store.GetDevice(context.Background(), "dev", "demo-implant", "DEMO-00000077"); err != nil || d.Site != "site-b" {
		t.Fatalf("registry: %+v %v", d, err)
	}
	run("curl", "-sS", "--fail-with-body", "--cacert", ts.caFile, "-o", file("ca.b64"), ts.url+"/.well-known/est/demo-implant/cacerts")
	run("openssl", "base64", "-d", "-in", file("ca.b64"), "-out", file("ca.p7"))
	chain := run("openssl", "pkcs7", "-inform", "DER", "-in", file("ca.p7"), "-print_certs")
	if !strings.Contains(chain, "subject=CN = demo-implant dev CA") || !strings.Contains(chain, "Root CA") {
		t.Fatalf("cacerts:\n%s", chain)
	}
	// Without a client certificate: 401 with a text reason; with TLS 1.2: no handshake.
	out, err := exec.Command("curl", "-sS", "--cacert", ts.caFile, "-H", "Content-Type: application/pkcs10", "--data-binary", "@"+file("dev.b64"),
		"-w", "\n%{http_code}", ts.url+"/.well-known/est/demo-implant/simpleenroll").CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "401") || !strings.Contains(string(out), "no client certificate") {
		t.Fatalf("curl without client certificate: %v\n%s", err, out)
	}
	if out, err := exec.Command("curl", "-sS", "--tlsv1.2", "--tls-max", "1.2", "--cacert", ts.caFile, "--cert", file("station.pem"), "--key", file("station.key"),
		ts.url+"/.well-known/est/demo-implant/cacerts").CombinedOutput(); err == nil {
		t.Fatalf("curl with TLS 1.2 succeeded: %s", out)
	}
}
