package cli

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/revocation"
)

// TestRevocationBesideServerIsPublished: a certificate revoked by a CLI command beside a running server (another
// opener of the same SQLite store, as another process would be) is in the server's published delta CRL within
// moments, though the server's own publication check runs only every hour: the publisher follows the change
// feed.
func TestRevocationBesideServerIsPublished(t *testing.T) {
	dir := initDir(t)
	common := []string{"--data", dir}
	key := filepath.Join(t.TempDir(), "d.csr")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: newCSR(t, p256(t), "DEMO-00000077")}), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "d.pem")
	mustKW(t, append([]string{"cert", "issue", "--profile", "implant-identity", "--csr", key, "--out", out}, common...)...)
	pemData, _ := os.ReadFile(out)
	b, _ := pem.Decode(pemData)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	public := freeAddr(t)
	serveInProcess(t, append([]string{"--public-listen", public, "--public-url", "http://" + public, "--publish-check", "1h"}, common...)...)
	chain := []byte(mustKW(t, append([]string{"ca", "export", "--env", "dev", "--product", "demo-implant"}, common...)...))
	cb, _ := pem.Decode(chain)
	caCert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	delta := "http://" + public + revocation.DeltaCRLPath(caCert)
	if revoked(t, delta, cert.SerialNumber) {
		t.Fatal("the certificate is on the delta CRL before it was revoked")
	}
	mustKW(t, append([]string{"cert", "revoke", cert.SerialNumber.Text(16), "--reason", "keyCompromise"}, common...)...)
	deadline := time.Now().Add(10 * time.Second)
	for !revoked(t, delta, cert.SerialNumber) {
		if time.Now().After(deadline) {
			t.Fatal("the revocation is not on the delta CRL 10 s after it was committed (the next publication check is an hour away)")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// revoked fetches the CRL at url and reports whether it lists serial.
func revoked(t *testing.T, url string, serial *big.Int) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, der)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}
