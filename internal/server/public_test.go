package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storetest"
)

type revEnv struct {
	n        *node.Node
	svc      *revocation.Service
	pub      *Public
	resp     *revocation.Responder
	base     string // http://127.0.0.1:port
	dir      string
	root     *x509.Certificate
	issuing  *x509.Certificate
	rootPEM  string
	issPEM   string
	certs    map[string]*x509.Certificate
	certPEMs map[string]string
}

var admin = ra.Principal{ID: "test:admin", Role: ra.RoleAdmin}

func issueGateway(t *testing.T, n *node.Node, cn string) *x509.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.RA.Issue(context.Background(), admin, ra.IssueRequest{Profile: "gateway-identity", CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func writePEMFile(t *testing.T, dir, name string, ders ...[]byte) string {
	t.Helper()
	var b bytes.Buffer
	for _, d := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startRevocation builds the scenario: gateway certificates good, revoked (keyCompromise, with invalidity
// date) before the complete CRL, and revoked (superseded) after it, so only the delta CRL lists it; then the
// public listener on loopback.
func startRevocation(t *testing.T) *revEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(dir, "data"), Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	svc := revocation.New(n.RA, n.CA, n.Store)
	e := &revEnv{n: n, svc: svc, dir: dir, certs: map[string]*x509.Certificate{}, certPEMs: map[string]string{}}
	for _, name := range []string{"good", "revoked", "late", "held"} {
		c := issueGateway(t, n, "GW-"+strings.ToUpper(name)+"-0001")
		e.certs[name] = c
		e.certPEMs[name] = writePEMFile(t, dir, name+".pem", c.Raw)
	}
	inv := time.Now().Add(-48 * time.Hour)
	if _, err := n.RA.Revoke(ctx, admin, ra.RevokeRequest{Serial: e.certs["revoked"].SerialNumber.Text(16), Reason: store.ReasonKeyCompromise, InvalidityDate: &inv}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.Revoke(ctx, admin, ra.RevokeRequest{Serial: e.certs["held"].SerialNumber.Text(16), Reason: store.ReasonCertificateHold}); err != nil {
		t.Fatal(err)
	}
	publisher := revocation.NewPublisher(svc, revocation.CRLConfig{})
	if ok, err := publisher.PublishOnce(ctx); err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
	if _, err := n.RA.Revoke(ctx, admin, ra.RevokeRequest{Serial: e.certs["late"].SerialNumber.Text(16), Reason: store.ReasonSuperseded}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.Unhold(ctx, admin, e.certs["held"].SerialNumber.Text(16)); err != nil {
		t.Fatal(err)
	}
	if _, err := publisher.PublishOnce(ctx); err != nil {
		t.Fatal(err)
	}
	rootCA, _ := n.Store.GetCA(ctx, "dev/root")
	issCA, _ := n.Store.GetCA(ctx, "dev/demo-implant")
	e.root, _ = x509.ParseCertificate(rootCA.CertDER)
	e.issuing, _ = x509.ParseCertificate(issCA.CertDER)
	e.rootPEM = writePEMFile(t, dir, "root.pem", rootCA.CertDER)
	e.issPEM = writePEMFile(t, dir, "issuing.pem", issCA.CertDER)

	e.resp = revocation.NewResponder(svc, revocation.OCSPConfig{})
	if err := e.resp.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	e.pub = NewPublic(n.Config, svc, e.resp, n.Logger)
	if err := e.pub.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.pub.ServePublic(sctx, ln, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("public listener: %v", err)
		}
	})
	e.base = "http://" + ln.Addr().String()
	return e
}

// fetch GETs the path of u (a URL from a certificate, naming 127.0.0.1:8080) from the test listener.
func (e *revEnv) fetch(t *testing.T, u string) []byte {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(e.base + pu.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", pu.Path, resp.StatusCode, b)
	}
	return b
}

func needOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		storetest.IntegrationUnavailable(t, "openssl not found: %v", err)
	}
}

func crlPEM(t *testing.T, dir, name string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCRLInteropOpenSSL(t *testing.T) {
	needOpenSSL(t)
	e := startRevocation(t)
	good := e.certs["good"]
	if len(good.CRLDistributionPoints) != 1 || !strings.HasSuffix(good.CRLDistributionPoints[0], revocation.CRLPath(e.issuing)) {
		t.Fatalf("certificate CRL DP %v does not name the published path %s", good.CRLDistributionPoints, revocation.CRLPath(e.issuing))
	}
	fullDER := e.fetch(t, good.CRLDistributionPoints[0])
	full, err := x509.ParseRevocationList(fullDER)
	if err != nil {
		t.Fatal(err)
	}
	// The published base names its delta in freshestCRL; fetch it through that URL.
	var fresh string
	for _, x := range full.Extensions {
		if x.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 46}) {
			fresh = string(x.Value)
		}
	}
	deltaURL := "http://127.0.0.1:8080" + revocation.DeltaCRLPath(e.issuing)
	if !strings.Contains(fresh, deltaURL) {
		t.Fatalf("freshestCRL %q does not name %s", fresh, deltaURL)
	}
	deltaDER := e.fetch(t, deltaURL)
	delta, err := x509.ParseRevocationList(deltaDER)
	if err != nil {
		t.Fatal(err)
	}
	if delta.Number.Cmp(full.Number) <= 0 {
		t.Fatalf("delta number %v not above base %v", delta.Number, full.Number)
	}
	rootCRL := e.fetch(t, "http://x"+revocation.CRLPath(e.root))
	if err := full.CheckSignatureFrom(e.issuing); err != nil {
		t.Fatal(err)
	}
	// Reason codes and the invalidity date made it in.
	var sawRevoked bool
	for _, rc := range full.RevokedCertificateEntries {
		if rc.SerialNumber.Cmp(e.certs["revoked"].SerialNumber) == 0 {
			sawRevoked = rc.ReasonCode == store.ReasonKeyCompromise && len(rc.Extensions) > 0
		}
		if rc.SerialNumber.Cmp(e.certs["late"].SerialNumber) == 0 {
			t.Fatal("the base CRL lists a certificate revoked after it")
		}
	}
	if !sawRevoked {
		t.Fatal("base CRL lacks the keyCompromise entry with its invalidity date")
	}

	d := e.dir
	fullF, deltaF, rootF := crlPEM(t, d, "full.crl", fullDER), crlPEM(t, d, "delta.crl", deltaDER), crlPEM(t, d, "root.crl", rootCRL)
	verify := func(cert string, extra ...string) (string, error) {
		args := append([]string{"verify", "-CAfile", e.rootPEM, "-untrusted", e.issPEM}, extra...)
		out, err := exec.Command("openssl", append(args, e.certPEMs[cert])...).CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		name, cert string
		args       []string
		revoked    bool
	}{
		{"crl_check good", "good", []string{"-crl_check", "-CRLfile", fullF}, false},
		{"crl_check revoked", "revoked", []string{"-crl_check", "-CRLfile", fullF}, true},
		{"crl_check_all good", "good", []string{"-crl_check_all", "-CRLfile", fullF, "-CRLfile", rootF}, false},
		{"crl_check_all revoked", "revoked", []string{"-crl_check_all", "-CRLfile", fullF, "-CRLfile", rootF}, true},
		{"base alone misses the late revocation", "late", []string{"-crl_check", "-CRLfile", fullF}, false},
		{"use_deltas merges the delta", "late", []string{"-crl_check", "-use_deltas", "-CRLfile", fullF, "-CRLfile", deltaF}, true},
		{"use_deltas good", "good", []string{"-crl_check", "-use_deltas", "-CRLfile", fullF, "-CRLfile", deltaF}, false},
		{"use_deltas removeFromCRL releases the hold", "held", []string{"-crl_check", "-use_deltas", "-CRLfile", fullF, "-CRLfile", deltaF}, false},
		{"base alone still holds", "held", []string{"-crl_check", "-CRLfile", fullF}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := verify(tc.cert, tc.args...)
			if tc.revoked {
				if err == nil || !strings.Contains(out, "certificate revoked") {
					t.Fatalf("want revoked; openssl: %v\n%s", err, out)
				}
			} else if err != nil || !strings.Contains(out, ": OK") {
				t.Fatalf("want OK; openssl: %v\n%s", err, out)
			}
		})
	}
	// A tampered CRL fails both OpenSSL and the Go verification path.
	bad := bytes.Clone(fullDER)
	bad[len(bad)-5] ^= 0x40
	badF := crlPEM(t, d, "bad.crl", bad)
	if out, err := verify("good", "-crl_check", "-CRLfile", badF); err == nil || !strings.Contains(out, "CRL signature failure") {
		t.Fatalf("tampered CRL accepted by openssl: %v\n%s", err, out)
	}
	if rl, err := x509.ParseRevocationList(bad); err == nil {
		if err := rl.CheckSignatureFrom(e.issuing); err == nil {
			t.Fatal("tampered CRL verifies in Go")
		}
	}
	tbsTampered := bytes.Clone(fullDER)
	tbsTampered[bytes.Index(tbsTampered, e.certs["revoked"].SerialNumber.Bytes())] ^= 1 // change a revoked serial
	if rl, err := x509.ParseRevocationList(tbsTampered); err == nil && rl.CheckSignatureFrom(e.issuing) == nil {
		t.Fatal("CRL with an altered entry verifies in Go")
	}
	// Never a delta without its base: every delta served names the complete CRL served beside it.
	if delta.Extensions == nil || !bytes.Contains(deltaDER, full.Number.Bytes()) {
		t.Fatal("delta does not name its base")
	}
}

func TestOCSPInteropOpenSSL(t *testing.T) {
	needOpenSSL(t)
	e := startRevocation(t)
	if !strings.HasSuffix(e.certs["good"].OCSPServer[0], "/ocsp") {
		t.Fatalf("certificate OCSP URL %v", e.certs["good"].OCSPServer)
	}
	run := func(args ...string) string {
		t.Helper()
		base := []string{"ocsp", "-issuer", e.issPEM, "-url", e.base + "/ocsp", "-CAfile", e.rootPEM, "-verify_other", e.issPEM}
		out, err := exec.Command("openssl", append(base, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl ocsp %v: %v\n%s", args, err, out)
		}
		s := string(out)
		if !strings.Contains(s, "Response verify OK") || strings.Contains(s, "WARNING") || strings.Contains(s, "nonce") && strings.Contains(s, "rror") {
			t.Fatalf("openssl ocsp %v: response not verified with its nonce:\n%s", args, s)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"good", []string{"-cert", e.certPEMs["good"]}, ": good"},
		{"revoked", []string{"-cert", e.certPEMs["revoked"]}, ": revoked"},
		{"released hold is good", []string{"-cert", e.certPEMs["held"]}, ": good"},
		{"unknown serial", []string{"-serial", "0x5eed5eed5eed"}, ": unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := run(tc.args...)
			if !strings.Contains(out, tc.want) {
				t.Fatalf("want %q:\n%s", tc.want, out)
			}
			if tc.want == ": revoked" && !strings.Contains(out, "Reason: keyCompromise") {
				t.Fatalf("revocation reason missing:\n%s", out)
			}
			if !strings.Contains(out, "This Update") || !strings.Contains(out, "Next Update") {
				t.Fatalf("thisUpdate/nextUpdate missing:\n%s", out)
			}
		})
	}
}

func TestOCSPGetCacheAndBadInput(t *testing.T) {
	e := startRevocation(t)
	good, revoked := e.certs["good"], e.certs["revoked"]
	reqDER, err := ocsp.CreateRequest(good, e.issuing, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(der []byte) *ocsp.Response {
		t.Helper()
		resp, err := http.Get(e.base + "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(der)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Content-Type") != "application/ocsp-response" {
			t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
		}
		r, err := ocsp.ParseResponseForCert(b, nil, e.issuing)
		if err != nil {
			t.Fatalf("parse response: %v", err)
		}
		return r
	}
	r := get(reqDER)
	if r.Status != ocsp.Good || r.Certificate == nil || !hasNoCheck(r.Certificate) || r.NextUpdate.Before(r.ThisUpdate.Add(time.Hour)) {
		t.Fatalf("GET good: %+v", r)
	}
	// From the cache: the same bytes until the certificate changes.
	first := e.resp.Respond(context.Background(), reqDER)
	if !bytes.Equal(first, e.resp.Respond(context.Background(), reqDER)) {
		t.Fatal("a repeated request was signed again instead of served from the cache")
	}
	if _, err := e.n.RA.Revoke(context.Background(), admin, ra.RevokeRequest{Serial: good.SerialNumber.Text(16), Reason: store.ReasonCessationOfOperation}); err != nil {
		t.Fatal(err)
	}
	if err := e.resp.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := get(reqDER); r.Status != ocsp.Revoked || r.RevocationReason != ocsp.CessationOfOperation {
		t.Fatalf("after revocation the cache still answers %d", r.Status)
	}

	post := func(body []byte) []byte {
		t.Helper()
		resp, err := http.Post(e.base+"/ocsp", "application/ocsp-request", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	// Malformed requests get malformedRequest (RFC 6960 2.3).
	for _, body := range [][]byte{nil, []byte("garbage"), reqDER[:len(reqDER)-3], append(bytes.Clone(reqDER), 0)} {
		if _, err := ocsp.ParseResponse(post(body), nil); err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Fatalf("malformed request %x: %v", body, err)
		}
	}
	// A certificate of this CA asked under another Keyward CA (the root): unknown, not good or revoked.
	otherIssuer, _ := ocsp.CreateRequest(revoked, e.root, nil)
	b := post(otherIssuer)
	r2, err := ocsp.ParseResponse(b, nil)
	if err != nil || r2.Status != ocsp.Unknown {
		t.Fatalf("certificate asked under the wrong Keyward CA: %v %+v", err, r2)
	}
	// An issuer this responder does not serve: unauthorized.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "foreign"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}, &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "foreign"}}, &k.PublicKey, k)
	fc, _ := x509.ParseCertificate(foreign)
	fr, _ := ocsp.CreateRequest(fc, fc, nil)
	if _, err := ocsp.ParseResponse(post(fr), nil); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("foreign issuer: %v", err)
	}
	// The public listener serves nothing else, and never a write.
	for _, p := range []string{"/api/v1/cas", "/healthz", "/crl/nope.crl"} {
		resp, err := http.Get(e.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s on the public listener: %d", p, resp.StatusCode)
		}
	}
	resp, err := http.Post(e.base+"/crl/x.crl", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST to an object path: %d", resp.StatusCode)
	}
	_ = sha1.Size
}

func hasNoCheck(c *x509.Certificate) bool {
	for _, x := range c.Extensions {
		if x.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}) {
			for _, eku := range c.ExtKeyUsage {
				if eku == x509.ExtKeyUsageOCSPSigning {
					return true
				}
			}
		}
	}
	return false
}

func TestRevocationAPI(t *testing.T) {
	ts := start(t)
	ctx := context.Background()
	body, _ := json.Marshal(IssueRequest{Profile: "implant-identity", CSR: csrPEM(t, "DEMO-00000500")})
	code, resp := ts.do(t, "POST", "/api/v1/certificates", ts.admin, body)
	if code != http.StatusCreated {
		t.Fatalf("issue: %d %s", code, resp)
	}
	var cv api.Certificate
	_ = json.Unmarshal(resp, &cv)
	auditor, err := ts.n.RA.CreateToken(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.TokenRequest{Name: "aud", Role: ra.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	officer, err := ts.n.RA.CreateToken(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.TokenRequest{Name: "off", Role: ra.RoleCAOfficer})
	if err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/certificates/" + cv.Serial + "/revoke"
	if code, _ := ts.do(t, "POST", path, auditor, []byte(`{"reason":"keyCompromise"}`)); code != http.StatusForbidden {
		t.Fatalf("auditor revoke: %d", code)
	}
	for _, tc := range []struct {
		path, tok, body string
		code            int
		want            string
	}{
		{path, officer, `{"reason":"nope"}`, 400, "not an RFC 5280 CRLReason"},
		{path, officer, `{}`, 400, "reason"},
		{"/api/v1/certificates/ffff/revoke", officer, `{"reason":"keyCompromise"}`, 404, "no certificate"},
		{"/api/v1/certificates/zz/revoke", officer, `{"reason":"keyCompromise"}`, 400, "hexadecimal"},
		{path, officer, `{"reason":"certificateHold"}`, 200, `"certificateHold"`},
		{path, officer, `{"reason":"certificateHold"}`, 409, "already revoked"},
		{"/api/v1/certificates/" + cv.Serial + "/unhold", officer, ``, 200, `"valid"`},
		{"/api/v1/certificates/" + cv.Serial + "/unhold", officer, ``, 409, "not on certificateHold"},
		{"/api/v1/revocations", officer, `{"reason":"superseded"}`, 400, "needs a selector"},
		{"/api/v1/revocations", officer, `{"profile":"implant-identity","reason":"superseded","dry_run":true}`, 200, `"matched": 1`},
		{"/api/v1/revocations", officer, `{"profile":"implant-identity","reason":"superseded"}`, 200, `"revoked": 1`},
		{path, officer, `{"reason":"keyCompromise"}`, 409, "already revoked"},
	} {
		code, resp := ts.do(t, "POST", tc.path, tc.tok, []byte(tc.body))
		if code != tc.code || !strings.Contains(string(resp), tc.want) {
			t.Fatalf("POST %s %s: %d %s; want %d with %q", tc.path, tc.body, code, resp, tc.code, tc.want)
		}
	}
	c, _ := ts.n.Store.GetCertificate(ctx, cv.Serial)
	if c.Status != store.CertStatusRevoked || c.RevocationReason != store.ReasonSuperseded {
		t.Fatalf("after bulk: %+v", c)
	}
	// Every change audited, the chain intact.
	var actions []string
	_ = ts.n.Store.WalkAudit(ctx, 0, func(ev *audit.Event) error {
		if strings.HasPrefix(ev.Action, "cert.") && ev.Action != "cert.issue" {
			actions = append(actions, ev.Action+":"+ev.Outcome)
		}
		return nil
	})
	want := "cert.revoke:success cert.unhold:success cert.revoke:success cert.revoke-bulk:success"
	if got := strings.Join(actions, " "); got != want {
		t.Fatalf("audited %q, want %q", got, want)
	}
	if _, err := store.VerifyAudit(ctx, ts.n.Store); err != nil {
		t.Fatal(err)
	}
}
