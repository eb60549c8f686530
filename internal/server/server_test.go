package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
)

type testServer struct {
	t      testing.TB
	n      *node.Node
	s      *Server
	url    string
	caFile string
	pool   *x509.CertPool
	admin  string
	stop   func() error
	// shutdown stops the server but keeps the node open, for reading what it stored.
	shutdown func() error
}

func start(t *testing.T) *testServer { return startWith(t, nil) }

// startWith starts a server on a data directory that setup (if not nil) prepares before initialisation.
func startWith(t *testing.T, setup func(dir string)) *testServer { return startDeps(t, setup, Deps{}) }

// startDeps is startWith with the server's dependencies other than the RA (its rate limit) set by d.
func startDeps(t *testing.T, setup func(dir string), d Deps) *testServer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: dir, Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	cert, caPEM, err := n.ServerTLS(ctx, []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.RA = n.RA
	s := New(d)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, cert, 5*time.Second) }()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tok, err := os.ReadFile(filepath.Join(dir, node.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, n: n, s: s, url: "https://" + ln.Addr().String(), caFile: filepath.Join(dir, node.TLSDir, "ca.pem"), pool: pool, admin: strings.TrimSpace(string(tok))}
	stopped, closed := false, false
	var stopErr error
	ts.shutdown = func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	ts.stop = func() error {
		err := ts.shutdown()
		if !closed {
			closed = true
			n.Close()
		}
		return err
	}
	t.Cleanup(func() { ts.stop() })
	return ts
}

func (ts *testServer) client(maxVersion uint16) *http.Client {
	// Every request and response is checked against the OpenAPI document (openapi_test.go).
	return &http.Client{Timeout: 10 * time.Second, Transport: &validating{t: ts.t, base: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.pool, MaxVersion: maxVersion}}}}
}

func (ts *testServer) do(t *testing.T, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := ts.client(0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func csrPEM(t *testing.T, cn string) string {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestTLS13Only(t *testing.T) {
	ts := start(t)
	resp, err := ts.client(0).Get(ts.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS.Version != tls.VersionTLS13 || resp.StatusCode != 200 {
		t.Fatalf("TLS version %x status %d", resp.TLS.Version, resp.StatusCode)
	}
	if resp, err := ts.client(tls.VersionTLS12).Get(ts.url + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a TLS 1.2 client completed a handshake")
	}
}

// TestEveryRouteIsAuthenticatedAndAuthorised walks the route table: every non-public route refuses a request
// without a token and with an unknown token (401), and refuses a role not in its list (403).
func TestEveryRouteIsAuthenticatedAndAuthorised(t *testing.T) {
	ts := start(t)
	ctx := context.Background()
	tokens := map[string]string{}
	for _, role := range []string{ra.RoleAdmin, ra.RoleCAOfficer, ra.RoleAuditor, ra.RoleReleaseSigner} {
		tok, err := ts.n.RA.CreateToken(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.TokenRequest{Name: "t-" + role, Role: role})
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok
	}
	for _, rt := range ts.s.Routes() {
		path := strings.NewReplacer("{env}", "dev", "{serial}", "1").Replace(rt.Pattern)
		t.Run(rt.Method+" "+rt.Pattern, func(t *testing.T) {
			if rt.Public {
				if code, _ := ts.do(t, rt.Method, path, "", nil); code == http.StatusUnauthorized || code == http.StatusForbidden {
					t.Fatalf("public route answered %d", code)
				}
				return
			}
			if len(rt.Roles) == 0 {
				t.Fatal("non-public route with no roles")
			}
			for _, tok := range []string{"", "kwt_not-a-real-token", "garbage"} {
				if code, body := ts.do(t, rt.Method, path, tok, nil); code != http.StatusUnauthorized {
					t.Fatalf("token %q: status %d %s, want 401", tok, code, body)
				}
			}
			if rt.ClientCert {
				return // operator tokens never pass; the roles are walked in TestCertRoutesAuthenticatedAndAuthorised
			}
			for role, tok := range tokens {
				code, body := ts.do(t, rt.Method, path, tok, []byte("{}"))
				allowed := contains(rt.Roles, role)
				if !allowed && code != http.StatusForbidden {
					t.Errorf("role %s: status %d, want 403", role, code)
				}
				if allowed && (code == http.StatusForbidden || code == http.StatusUnauthorized) {
					t.Errorf("role %s: status %d %s; the role is allowed", role, code, body)
				}
			}
		})
	}
}

func TestIssueOverAPI(t *testing.T) {
	ts := start(t)
	body, _ := json.Marshal(IssueRequest{Profile: "implant-identity", CSR: csrPEM(t, "DEMO-00000042")})
	code, resp := ts.do(t, "POST", "/api/v1/certificates", ts.admin, body)
	if code != http.StatusCreated {
		t.Fatalf("issue: %d %s", code, resp)
	}
	var cv api.Certificate
	if err := json.Unmarshal(resp, &cv); err != nil {
		t.Fatal(err)
	}
	if cv.Subject != "CN=DEMO-00000042" || cv.Status != "valid" {
		t.Fatalf("issued %+v", cv)
	}
	code, resp = ts.do(t, "GET", "/api/v1/certificates/"+cv.Serial, ts.admin, nil)
	if code != 200 || !strings.Contains(string(resp), cv.Serial) {
		t.Fatalf("lookup: %d %s", code, resp)
	}
	if code, _ := ts.do(t, "GET", "/api/v1/certificates/ffff", ts.admin, nil); code != http.StatusNotFound {
		t.Fatalf("unknown serial: %d", code)
	}
	if code, _ := ts.do(t, "GET", "/api/v1/certificates/zz", ts.admin, nil); code != http.StatusBadRequest {
		t.Fatalf("malformed serial: %d", code)
	}

	bad := []struct {
		name string
		body string
		code int
		want string
	}{
		{"not json", "{", 400, "not valid JSON"},
		{"unknown field", `{"profile":"implant-identity","csr":"","x":1}`, 400, "unknown field"},
		{"bad csr", `{"profile":"implant-identity","csr":"AAAA"}`, 400, "CSR"},
		{"subject", fmt.Sprintf(`{"profile":"implant-identity","csr":%q}`, csrPEM(t, "NOPE")), 400, "^DEMO-[0-9]{8}$"},
		{"unknown profile", fmt.Sprintf(`{"profile":"nope","csr":%q}`, csrPEM(t, "DEMO-00000001")), 400, "unknown profile"},
		{"oversized", `{"profile":"implant-identity","csr":"` + strings.Repeat("A", 200<<10) + `"}`, 400, "larger than"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, resp := ts.do(t, "POST", "/api/v1/certificates", ts.admin, []byte(tt.body))
			if code != tt.code || !strings.Contains(string(resp), tt.want) {
				t.Fatalf("status %d %s; want %d containing %q", code, resp, tt.code, tt.want)
			}
		})
	}
}

// TestCurlInterop drives the API with curl as an independent TLS 1.3 client, and checks that curl forced to
// TLS 1.2 is refused.
func TestCurlInterop(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("KEYWARD_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("curl not found")
		}
		t.Skip("curl not found")
	}
	ts := start(t)
	body, _ := json.Marshal(IssueRequest{Profile: "implant-identity", CSR: csrPEM(t, "DEMO-00000077")})
	out, err := exec.Command("curl", "-sS", "--fail-with-body", "--cacert", ts.caFile, "-H", "Authorization: Bearer "+ts.admin,
		"-H", "Content-Type: application/json", "--data-binary", string(body), ts.url+"/api/v1/certificates").CombinedOutput()
	if err != nil {
		t.Fatalf("curl issue: %v\n%s", err, out)
	}
	var cv api.Certificate
	if err := json.Unmarshal(out, &cv); err != nil || cv.Subject != "CN=DEMO-00000077" {
		t.Fatalf("curl issue: %v %s", err, out)
	}
	if out, err := exec.Command("curl", "-sS", "--cacert", ts.caFile, "--tlsv1.2", "--tls-max", "1.2", ts.url+"/healthz").CombinedOutput(); err == nil {
		t.Fatalf("curl with TLS 1.2 succeeded: %s", out)
	}
	if out, err := exec.Command("curl", "-sS", "--fail", "--cacert", ts.caFile, ts.url+"/api/v1/cas").CombinedOutput(); err == nil {
		t.Fatalf("curl without token succeeded: %s", out)
	}
}

func TestGracefulShutdown(t *testing.T) {
	ts := start(t)
	if code, _ := ts.do(t, "GET", "/healthz", "", nil); code != 200 {
		t.Fatalf("health %d", code)
	}
	if err := ts.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	resp, err := ts.client(0).Get(ts.url + "/healthz")
	if err == nil {
		resp.Body.Close()
	}
	var opErr *net.OpError
	if err == nil || !errors.As(err, &opErr) {
		t.Fatalf("server still answers after shutdown: %v", err)
	}
}

// TestTokenRefusalsLeaveATrace: a request with an unknown token (401), with a revoked token (401) and with a
// role its route does not allow (403) each leave an audited refusal; a revoked token is refused at once, and the
// token routes list and revoke with the CLI's JSON names.
func TestTokenRefusalsLeaveATrace(t *testing.T) {
	ts := start(t)
	ctx := context.Background()
	tok, err := ts.n.RA.CreateToken(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.TokenRequest{Name: "dana", Role: ra.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := ts.do(t, "GET", "/api/v1/tokens", tok, nil); code != http.StatusOK || !strings.Contains(string(body), `"last_used_at"`) {
		t.Fatalf("auditor lists tokens: %d %s", code, body)
	}
	if code, _ := ts.do(t, "POST", "/api/v1/tokens/dana/revoke", tok, []byte(`{"reason":"x"}`)); code != http.StatusForbidden {
		t.Fatalf("auditor revokes: %d, want 403", code)
	}
	if code, body := ts.do(t, "POST", "/api/v1/tokens/dana/revoke", ts.admin, []byte(`{"reason":"rotated"}`)); code != http.StatusOK || !strings.Contains(string(body), `"state": "revoked"`) {
		t.Fatalf("admin revokes: %d %s", code, body)
	}
	if code, _ := ts.do(t, "POST", "/api/v1/tokens/dana/revoke", ts.admin, []byte(`{"reason":"rotated"}`)); code != http.StatusConflict {
		t.Fatalf("revoke twice: %d, want 409", code)
	}
	if code, _ := ts.do(t, "POST", "/api/v1/tokens/nobody/revoke", ts.admin, []byte(`{"reason":"x"}`)); code != http.StatusNotFound {
		t.Fatalf("revoke unknown: %d, want 404", code)
	}
	if code, body := ts.do(t, "GET", "/api/v1/cas", tok, nil); code != http.StatusUnauthorized || !strings.Contains(string(body), "revoked") {
		t.Fatalf("revoked token: %d %s, want 401", code, body)
	}
	ts.do(t, "GET", "/api/v1/cas", "kwt_unknown", nil)
	// Refusals over the network are counted, then audited once per reason (ra.FlushRefusals, every minute).
	if _, err := ts.n.RA.FlushRefusals(ctx); err != nil {
		t.Fatal(err)
	}
	refusals := map[string]int{}
	err = ts.n.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
		if e.Action == audit.ActionAuthRefusals {
			n, _ := strconv.Atoi(e.Details["requests"])
			refusals[e.Subject] += n
			if !strings.HasPrefix(e.Details["top_sources"], "127.0.0.1") {
				t.Errorf("refusal %d: sources %q", e.Seq, e.Details["top_sources"])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if refusals[ra.AuthForbiddenRole] != 1 || refusals[ra.AuthRevokedToken] != 1 || refusals[ra.AuthUnknownToken] != 1 {
		t.Fatalf("audited refusals: %v", refusals)
	}
}
