package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store/storetest"
)

// propagation is how soon every running server must stop issuing with a key destroyed by another process.
const propagation = 2 * time.Second

// apiClient posts issuance requests to one server.
type apiClient struct {
	url, token string
	http       *http.Client
}

func newAPIClient(t *testing.T, url, dataDir string) *apiClient {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &apiClient{url: url, token: strings.TrimSpace(string(token)),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

// issue posts a CSR for a new key and serial; it returns the status and body.
func (c *apiClient) issue(t *testing.T, serial int) (int, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("DEMO-%08d", serial)}}, k)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"profile": "implant-identity", "csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	req, _ := http.NewRequest("POST", c.url+"/api/v1/certificates", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// issuingKey returns the key URI of the dev/demo-implant issuing CA.
func issuingKey(t *testing.T, r runner, args ...string) string {
	t.Helper()
	var cas []struct {
		ID     string `json:"id"`
		KeyURI string `json:"key_uri"`
	}
	r.json(&cas, append([]string{"ca", "list", "--json"}, args...)...)
	for _, c := range cas {
		if c.ID == "dev/demo-implant" {
			return c.KeyURI
		}
	}
	t.Fatal("no dev/demo-implant CA")
	return ""
}

// destroyAndWatch destroys the issuing CA's key with a CLI process and checks that each server refuses the next
// issuance (409, naming why) within the propagation time, without a restart.
func destroyAndWatch(t *testing.T, r runner, clients []*apiClient, args ...string) {
	t.Helper()
	for i, c := range clients {
		if status, body := c.issue(t, 100+i); status != 201 {
			t.Fatalf("server %d before the destruction: %d %s", i, status, body)
		}
	}
	r.run(append([]string{"key", "destroy", issuingKey(t, r, args...), "--reason", "compromise drill"}, args...)...)
	destroyed := time.Now()
	for i, c := range clients {
		for serial := 200 + 100*i; ; serial++ {
			status, body := c.issue(t, serial)
			if status == 201 {
				if time.Since(destroyed) > propagation {
					t.Fatalf("server %d still issues %s after the key was destroyed", i, time.Since(destroyed).Round(time.Millisecond))
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if status != 409 || !strings.Contains(body, "cannot issue") {
				t.Fatalf("server %d after the destruction: %d %s, want 409 (the CA can no longer sign)", i, status, body)
			}
			t.Logf("server %d refused %s after the destruction", i, time.Since(destroyed).Round(time.Millisecond))
			break
		}
	}
}

var servingRe = regexp.MustCompile(`serving https://(\S+) `)

// TestKeyDestroyReachesRunningServerSQLite: a CLI process beside a running server on one SQLite data
// directory destroys the issuing CA's key; the server, which holds the key's signer in memory, stops issuing.
func TestKeyDestroyReachesRunningServerSQLite(t *testing.T) {
	bin := buildKeyward(t)
	r := runner{t, bin}
	data := filepath.Join(t.TempDir(), "data")
	r.run("init", "--data", data)
	s := startServer(t, bin, servingRe, "serve", "--data", data, "--listen", "127.0.0.1:0")
	destroyAndWatch(t, r, []*apiClient{newAPIClient(t, s.url, data)}, "--data", data)
	s.stop(t)
}

// TestKeyDestroyReachesEveryNodePostgres: two servers share one PostgreSQL database and each holds the issuing
// CA's key (a copy of the keystore, as nodes sharing a network HSM would); a CLI process destroys the key
// through the first node's data directory; both servers stop issuing, the second on the shared state alone,
// since its own copy of the key still exists.
func TestKeyDestroyReachesEveryNodePostgres(t *testing.T) {
	bin := buildKeyward(t)
	r := runner{t, bin}
	dsn := storetest.PostgresDSN(t)
	d1 := filepath.Join(t.TempDir(), "node1")
	r.run("init", "--data", d1, "--db", dsn)
	s1 := startServer(t, bin, servingRe, "serve", "--data", d1, "--db", dsn, "--listen", "127.0.0.1:0")
	// The second node's keystore is a copy of the first's once the first has made the service TLS CA.
	d2 := filepath.Join(t.TempDir(), "node2")
	if out, err := exec.Command("cp", "-a", d1, d2).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v %s", err, out)
	}
	s2 := startServer(t, bin, servingRe, "serve", "--data", d2, "--db", dsn, "--listen", "127.0.0.1:0")
	destroyAndWatch(t, r, []*apiClient{newAPIClient(t, s1.url, d1), newAPIClient(t, s2.url, d2)}, "--data", d1, "--db", dsn)
	s1.stop(t)
	s2.stop(t)
}
