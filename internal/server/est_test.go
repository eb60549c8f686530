package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/est"
)

// estConfig declares demo-implant in dev and staging (so its label needs the environment) and demo-pump in
// dev only.
const estConfig = `organization: Keyward Test
environments:
  dev:
    root: {algorithm: ecdsa-p256, validity: 25y}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity]}
      demo-pump: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity]}
  staging:
    root: {algorithm: ecdsa-p256, validity: 25y}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity]}
`

func writeConfig(cfg string) func(dir string) {
	return func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), []byte(cfg), 0o600); err != nil {
			panic(err)
		}
	}
}

func addStation(t *testing.T, ts *testServer, env string, products []string, quota int64) (*store.Station, tls.Certificate) {
	t.Helper()
	cred, err := ts.n.RA.AddStation(context.Background(), ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.StationRequest{Environment: env, Site: "site-a", ProductLines: products, Quota: quota})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cred.CertPEM, cred.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	return cred.Station, pair
}

func (ts *testServer) mtls(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: ts.pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func (ts *testServer) post(t *testing.T, c *http.Client, path, ctype string, body io.Reader, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", ts.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func p256Key(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrB64(t testing.TB, key crypto.Signer, cn string) []byte {
	der, err := est.NewCSR(key, cn)
	if err != nil {
		t.Fatal(err)
	}
	return est.EncodeBase64(der)
}

// snapshot is everything an EST refusal must leave alone.
type snapshot struct {
	certs, devices int
	used           map[string]int64
	audit          int
}

func (ts *testServer) snap(t *testing.T) snapshot {
	t.Helper()
	ctx := context.Background()
	certs, err := ts.n.Store.ListCertificates(ctx, store.CertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := ts.n.Store.ListDevices(ctx, store.DeviceFilter{})
	sts, _ := ts.n.Store.ListStations(ctx)
	s := snapshot{certs: len(certs), devices: len(devs), used: map[string]int64{}}
	for _, st := range sts {
		s.used[st.ID] = st.Used
	}
	for _, d := range devs {
		s.used["device:"+d.Serial] = int64(len(d.CertSerial)) // any change of current certificate shows
	}
	s.audit = len(ts.events(t))
	return s
}

func (ts *testServer) events(t *testing.T) []*audit.Event {
	var out []*audit.Event
	if err := ts.n.Store.WalkAudit(context.Background(), 0, func(e *audit.Event) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func enrollPath(label string) string   { return "/.well-known/est/" + label + "/simpleenroll" }
func reenrollPath(label string) string { return "/.well-known/est/" + label + "/simplereenroll" }

// countingReader yields n bytes of 'A' and counts what was read.
type countingReader struct {
	mu   sync.Mutex
	n    int64
	read int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.read >= r.n {
		return 0, io.EOF
	}
	k := int64(len(p))
	if k > r.n-r.read {
		k = r.n - r.read
	}
	for i := range p[:k] {
		p[i] = 'A'
	}
	r.read += k
	return int(k), nil
}

func TestESTRefusals(t *testing.T) {
	ts := startWith(t, writeConfig(estConfig))
	ctx := context.Background()
	const label = "demo-implant.dev"
	_, station := addStation(t, ts, "dev", []string{"demo-implant"}, 0)
	_, staging := addStation(t, ts, "staging", []string{"demo-implant"}, 0)
	_, pump := addStation(t, ts, "dev", []string{"demo-pump"}, 0)
	suspended, suspCert := addStation(t, ts, "dev", []string{"demo-implant"}, 0)
	if _, err := ts.n.RA.SetStationState(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, suspended.ID, store.StationSuspended); err != nil {
		t.Fatal(err)
	}
	_, quota1 := addStation(t, ts, "dev", []string{"demo-implant"}, 1)
	sc := ts.mtls(&station)

	// A device enrolled properly, for the device-side cases and the duplicate key.
	devKey := p256Key(t)
	code, body, hdr := ts.post(t, sc, enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, devKey, "DEMO-00000001")), nil)
	if code != 200 || hdr.Get("Content-Type") != "application/pkcs7-mime; smime-type=certs-only" {
		t.Fatalf("enroll: %d %s (%s)", code, body, hdr.Get("Content-Type"))
	}
	certs, err := est.ParseCertsOnly([]byte(body))
	if err != nil || len(certs) != 1 || certs[0].Subject.CommonName != "DEMO-00000001" {
		t.Fatalf("enroll response: %v, %d certs", err, len(certs))
	}
	devCert := tls.Certificate{Certificate: [][]byte{certs[0].Raw}, PrivateKey: devKey}
	// Use up quota1's single enrollment.
	if code, body, _ := ts.post(t, ts.mtls(&quota1), enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000002")), nil); code != 200 {
		t.Fatalf("first enrollment of quota-1 station: %d %s", code, body)
	}

	// Someone else's CA: a self-signed client certificate.
	strangerKey := p256Key(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: station.Leaf.Subject.CommonName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	strangerDER, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &strangerKey.PublicKey, strangerKey)
	stranger := tls.Certificate{Certificate: [][]byte{strangerDER}, PrivateKey: strangerKey}

	badSig, _ := est.NewCSR(p256Key(t), "DEMO-00000003")
	badSig[len(badSig)-3] ^= 0xff
	rsa1024, err := os.ReadFile("../profile/testdata/rsa1024.csr.der")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		client *http.Client
		path   string
		ctype  string
		body   io.Reader
		status int
		reason string
	}{
		{"no client certificate", ts.mtls(nil), enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000010")), 401, "no client certificate"},
		{"unknown client certificate", ts.mtls(&stranger), enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000010")), 401, "not a valid certificate of a Keyward"},
		{"station of another environment", ts.mtls(&staging), enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000011")), 403, `belongs to environment "staging"`},
		{"station of another product line", ts.mtls(&pump), enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000012")), 403, "may enroll only product lines demo-pump"},
		{"suspended station", ts.mtls(&suspCert), enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000013")), 403, "is suspended"},
		{"quota exhausted", ts.mtls(&quota1), enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000014")), 403, "used its quota of 1"},
		{"device enrolls another serial", ts.mtls(&devCert), enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000015")), 403, "may not enroll another device"},
		{"station uses simplereenroll", sc, reenrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, devKey, "DEMO-00000001")), 403, "may not use simplereenroll"},
		{"reenroll outside the window", ts.mtls(&devCert), reenrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, devKey, "DEMO-00000001")), 403, "may be renewed from"},
		{"reenroll for another subject", ts.mtls(&devCert), reenrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, devKey, "DEMO-00000016")), 403, "may be renewed from"},
		{"bad CSR signature", sc, enrollPath(label), "application/pkcs10", bytes.NewReader(est.EncodeBase64(badSig)), 400, "proof of possession failed"},
		{"weak key", sc, enrollPath(label), "application/pkcs10", bytes.NewReader(est.EncodeBase64(rsa1024)), 400, "RSA"},
		{"serial not matching the rule", sc, enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "PUMP-1")), 400, "does not match"},
		{"duplicate key", sc, enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, devKey, "DEMO-00000017")), 409, "already certified"},
		{"already enrolled serial", sc, enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000001")), 409, "allow-reprovision"},
		{"body not base64", sc, enrollPath(label), "application/pkcs10", strings.NewReader("this is not base64!"), 400, "not base64"},
		{"wrong content type", sc, enrollPath(label), "application/json", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000018")), 415, "application/pkcs10"},
		{"unknown label", sc, enrollPath("no-such-line"), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000019")), 404, "no environment declares"},
		{"ambiguous label", sc, enrollPath("demo-implant"), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000020")), 400, "name the environment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.snap(t)
			code, body, hdr := ts.post(t, tc.client, tc.path, tc.ctype, tc.body, nil)
			if code != tc.status || !strings.Contains(body, tc.reason) {
				t.Fatalf("status %d %q, want %d containing %q", code, body, tc.status, tc.reason)
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
				t.Errorf("content type %q, want text/plain", hdr.Get("Content-Type"))
			}
			after := ts.snap(t)
			if after.certs != before.certs || after.devices != before.devices || fmt.Sprint(after.used) != fmt.Sprint(before.used) {
				t.Fatalf("refusal changed state: before %+v after %+v", before, after)
			}
			if tc.status == http.StatusUnauthorized {
				// Refused before authentication: counted for the aggregated auth.refusals event, not audited alone.
				if after.audit != before.audit {
					t.Fatalf("%d audit events for one unauthenticated request, want 0 until the aggregated event", after.audit-before.audit)
				}
				return
			}
			if after.audit != before.audit+1 {
				t.Fatalf("%d audit events for one refusal, want 1", after.audit-before.audit)
			}
			ev := ts.events(t)[after.audit-1]
			if ev.Outcome != audit.OutcomeRefused || !strings.HasPrefix(ev.Action, "est.") || ev.Details["reason"] == "" {
				t.Fatalf("audit event %+v, want an est.* refusal with a reason", ev)
			}
		})
	}

	t.Run("refusal names station, site and device", func(t *testing.T) {
		ts.post(t, ts.mtls(&pump), enrollPath(label), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000021")), nil)
		evs := ts.events(t)
		ev := evs[len(evs)-1]
		if ev.Subject != "DEMO-00000021" || ev.Details["site"] != "site-a" || ev.Details["station"] == "" {
			t.Fatalf("refusal audit %+v does not name device, station and site", ev)
		}
	})

	t.Run("10 MB body refused before it is read whole", func(t *testing.T) {
		for _, chunked := range []bool{false, true} {
			before := ts.snap(t)
			r := &countingReader{n: 10 << 20}
			req, _ := http.NewRequest("POST", ts.url+enrollPath(label), r)
			req.Header.Set("Content-Type", "application/pkcs10")
			if !chunked {
				req.ContentLength = r.n
			}
			resp, err := sc.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "over") {
					t.Fatalf("chunked=%v: status %d %s, want 413", chunked, resp.StatusCode, b)
				}
			} // a reset while the client still writes is also a refusal; what matters is how much was read
			if r.read >= r.n {
				t.Fatalf("chunked=%v: the client sent the whole 10 MB", chunked)
			}
			after := ts.snap(t)
			if after.certs != before.certs || after.audit != before.audit+1 {
				t.Fatalf("chunked=%v: state changed or refusal not audited: %+v -> %+v", chunked, before, after)
			}
		}
	})

	t.Run("TLS 1.2 client refused", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.pool, Certificates: []tls.Certificate{station}, MaxVersion: tls.VersionTLS12}}}
		resp, err := c.Get(ts.url + "/.well-known/est/" + label + "/cacerts")
		if err == nil {
			resp.Body.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("TLS 1.2 handshake: %v, want a protocol version alert", err)
		}
	})
}

func TestESTEnrollRenewReprovision(t *testing.T) {
	ts := startWith(t, nil)
	ctx := context.Background()
	st, stationCert := addStation(t, ts, "dev", []string{"demo-implant"}, 0)
	trust, _ := os.ReadFile(ts.caFile)
	cfg, _ := est.TLSConfig(trust, &stationCert)
	cl, err := est.NewClient(ts.url, "demo-implant", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	chain, err := cl.CACerts(ctx)
	if err != nil || len(chain) != 2 || chain[0].Subject.CommonName != "demo-implant dev CA" {
		t.Fatalf("cacerts: %v, %d certs", err, len(chain))
	}
	attrs, err := cl.CSRAttrs(ctx)
	if err != nil || !bytes.Contains(attrs, []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}) {
		t.Fatalf("csrattrs: %v %x, want the P-256 curve OID", err, attrs)
	}

	key := p256Key(t)
	csr, _ := est.NewCSR(key, "DEMO-00000042")
	cert, err := cl.SimpleEnroll(ctx, csr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: certPool(chain[1]), Intermediates: certPool(chain[0]), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify under cacerts: %v", err)
	}
	dev, err := ts.n.Store.GetDevice(ctx, "dev", "demo-implant", "DEMO-00000042")
	if err != nil || dev.StationID != st.ID || dev.Site != "site-a" || dev.CertSerial != ra.SerialString(cert) || dev.State != store.DeviceActive {
		t.Fatalf("registry: %+v %v", dev, err)
	}
	if got, _ := ts.n.Store.GetStation(ctx, st.ID); got.Used != 1 {
		t.Fatalf("station used %d, want 1", got.Used)
	}

	// Renewal outside the window is refused; forced by the operator it passes, with a new key.
	dcfg, _ := est.TLSConfig(trust, &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key})
	dc, _ := est.NewClient(ts.url, "demo-implant", dcfg)
	defer dc.Close()
	var ee *est.Error
	if _, err := dc.SimpleReenroll(ctx, csr, nil); !errors.As(err, &ee) || ee.StatusCode != 403 {
		t.Fatalf("renewal outside the window: %v", err)
	}
	if _, err := ts.n.RA.ApplyDeviceAction(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.DeviceRef{Serial: "DEMO-00000042"}, ra.ForceRenew); err != nil {
		t.Fatal(err)
	}
	newKey := p256Key(t)
	csr2, _ := est.NewCSR(newKey, "DEMO-00000042")
	renewed, err := dc.SimpleReenroll(ctx, csr2, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := ts.n.Store.GetCertificate(ctx, ra.SerialString(cert))
	if old.Status != store.CertStatusSuperseded {
		t.Fatalf("old certificate is %s, want superseded", old.Status)
	}
	dev, _ = ts.n.Store.GetDevice(ctx, "dev", "demo-implant", "DEMO-00000042")
	if dev.CertSerial != ra.SerialString(renewed) || dev.ForceRenew {
		t.Fatalf("registry after renewal: %+v", dev)
	}
	evs := ts.events(t)
	last := evs[len(evs)-1]
	if last.Action != ra.ActionReenroll || last.Details["rekey"] != "true" || last.Details["superseded"] != old.Serial || last.Details["station"] != st.ID {
		t.Fatalf("renewal audit: %+v", last)
	}
	// The superseded certificate stays valid until it expires, but renews nothing.
	if _, err := dc.SimpleReenroll(ctx, csr2, nil); !errors.As(err, &ee) || ee.StatusCode != 403 || !strings.Contains(ee.Reason, "superseded") {
		t.Fatalf("renewal with the superseded certificate: %v", err)
	}

	// Re-provisioning: refused until the operator allows it, then allowed once.
	csr3, _ := est.NewCSR(p256Key(t), "DEMO-00000042")
	if _, err := cl.SimpleEnroll(ctx, csr3, nil); !errors.As(err, &ee) || ee.StatusCode != 409 {
		t.Fatalf("second initial enrollment: %v", err)
	}
	if _, err := ts.n.RA.ApplyDeviceAction(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.DeviceRef{Serial: "DEMO-00000042"}, ra.AllowReprovision); err != nil {
		t.Fatal(err)
	}
	again, err := cl.SimpleEnroll(ctx, csr3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ts.n.Store.GetCertificate(ctx, ra.SerialString(renewed)); r.Status != store.CertStatusSuperseded {
		t.Fatalf("re-provisioning left the previous identity %s", r.Status)
	}
	dev, _ = ts.n.Store.GetDevice(ctx, "dev", "demo-implant", "DEMO-00000042")
	if dev.CertSerial != ra.SerialString(again) || dev.ReprovisionAllowed {
		t.Fatalf("registry after re-provisioning: %+v", dev)
	}
	csr4, _ := est.NewCSR(p256Key(t), "DEMO-00000042")
	if _, err := cl.SimpleEnroll(ctx, csr4, nil); !errors.As(err, &ee) || ee.StatusCode != 409 {
		t.Fatalf("allow-reprovision was not used up: %v", err)
	}

	// Revoking the station takes effect on its next request, on the open connection.
	if _, err := ts.n.RA.SetStationState(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, st.ID, store.StationRevoked); err != nil {
		t.Fatal(err)
	}
	// Its certificate is revoked in the same transaction, so CRLs and OCSP answer for it.
	if sc, err := ts.n.Store.GetCertificate(ctx, st.CertSerial); err != nil || sc.Status != store.CertStatusRevoked || sc.RevocationReason != 5 {
		t.Fatalf("station certificate after station revoke: %+v %v; want revoked, cessationOfOperation", sc, err)
	}
	csr5, _ := est.NewCSR(p256Key(t), "DEMO-00000043")
	if _, err := cl.SimpleEnroll(ctx, csr5, nil); !errors.As(err, &ee) || ee.StatusCode != 403 || !strings.Contains(ee.Reason, "revoked") {
		t.Fatalf("revoked station: %v", err)
	}
	if n, err := store.VerifyAudit(ctx, ts.n.Store); err != nil {
		t.Fatalf("audit chain after %d events: %v", n, err)
	}
}

func certPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// TestESTQuotaConcurrent sends more concurrent enrollments than a station's quota: exactly the quota pass.
func TestESTQuotaConcurrent(t *testing.T) {
	ts := startWith(t, nil)
	st, cert := addStation(t, ts, "dev", []string{"demo-implant"}, 5)
	c := ts.mtls(&cert)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[int]int{}
	)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := ts.post(t, c, enrollPath("demo-implant"), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), fmt.Sprintf("DEMO-%08d", 100+i))), nil)
			mu.Lock()
			counts[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if counts[200] != 5 || counts[403] != 7 {
		t.Fatalf("statuses %v, want 5×200 and 7×403", counts)
	}
	if got, _ := ts.n.Store.GetStation(context.Background(), st.ID); got.Used != 5 {
		t.Fatalf("station used %d, want 5", got.Used)
	}
}

// TestESTAttestation configures a secure-element vendor root for implant-identity: enrollments must carry an
// attestation certificate from that vendor for the CSR's own key.
func TestESTAttestation(t *testing.T) {
	vendorKey := p256Key(t)
	vendorTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "SE Vendor Attestation Root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	vendorDER, _ := x509.CreateCertificate(rand.Reader, vendorTmpl, vendorTmpl, &vendorKey.PublicKey, vendorKey)
	vendor, _ := x509.ParseCertificate(vendorDER)
	otherKey := p256Key(t)
	otherDER, _ := x509.CreateCertificate(rand.Reader, vendorTmpl, vendorTmpl, &otherKey.PublicKey, otherKey)
	other, _ := x509.ParseCertificate(otherDER)
	attest := func(pub crypto.PublicKey, ca *x509.Certificate, caKey crypto.Signer) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "SE 0042"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	ts := startWith(t, func(dir string) {
		os.MkdirAll(filepath.Join(dir, node.AttestationDir), 0o700)
		os.WriteFile(filepath.Join(dir, node.AttestationDir, "implant-identity.pem"), est.CertPEM(vendor), 0o644)
	})
	_, cert := addStation(t, ts, "dev", []string{"demo-implant"}, 0)
	c := ts.mtls(&cert)
	key, stray := p256Key(t), p256Key(t)
	hdr := func(ders ...[]byte) map[string]string {
		var parts []string
		for _, d := range ders {
			parts = append(parts, base64.StdEncoding.EncodeToString(d))
		}
		return map[string]string{ra.AttestationHeader: strings.Join(parts, ", ")}
	}
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
		reason string
	}{
		{"missing", nil, 400, "requires the secure element's attestation"},
		{"other vendor", hdr(attest(&key.PublicKey, other, otherKey)), 400, "does not chain"},
		{"other key", hdr(attest(&stray.PublicKey, vendor, vendorKey)), 400, "another public key"},
		{"garbage", map[string]string{ra.AttestationHeader: "!!"}, 400, "not base64"},
		{"good", hdr(attest(&key.PublicKey, vendor, vendorKey)), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := ts.post(t, c, enrollPath("demo-implant"), "application/pkcs10", bytes.NewReader(csrB64(t, key, "DEMO-00000042")), tc.hdr)
			if code != tc.status || !strings.Contains(body, tc.reason) {
				t.Fatalf("status %d %q, want %d %q", code, body, tc.status, tc.reason)
			}
		})
	}
}

// TestCertRoutesAuthenticatedAndAuthorised extends TestEveryRouteIsAuthenticatedAndAuthorised to the routes
// that authenticate by client certificate: no certificate and operator tokens get 401, and each of the two
// certificate roles is let through exactly where the route table allows it.
func TestCertRoutesAuthenticatedAndAuthorised(t *testing.T) {
	ts := startWith(t, nil)
	_, station := addStation(t, ts, "dev", []string{"demo-implant"}, 0)
	key := p256Key(t)
	code, body, _ := ts.post(t, ts.mtls(&station), enrollPath("demo-implant"), "application/pkcs10", bytes.NewReader(csrB64(t, key, "DEMO-00000005")), nil)
	if code != 200 {
		t.Fatalf("enroll: %d %s", code, body)
	}
	certs, _ := est.ParseCertsOnly([]byte(body))
	device := tls.Certificate{Certificate: [][]byte{certs[0].Raw}, PrivateKey: key}
	tok, err := ts.n.RA.CreateToken(context.Background(), ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.TokenRequest{Name: "t-admin", Role: ra.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rt := range ts.s.Routes() {
		if !rt.ClientCert {
			continue
		}
		n++
		path := strings.NewReplacer("{label}", "demo-implant").Replace(rt.Pattern)
		t.Run(rt.Method+" "+rt.Pattern, func(t *testing.T) {
			if rt.Public || len(rt.Roles) == 0 {
				t.Fatal("client-certificate route without roles")
			}
			for _, c := range []*http.Client{ts.mtls(nil)} {
				req, _ := http.NewRequest(rt.Method, ts.url+path, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("operator token, no certificate: %d, want 401", resp.StatusCode)
				}
			}
			for role, cert := range map[string]*tls.Certificate{ra.RoleFactoryStation: &station, ra.RoleDevice: &device} {
				req, _ := http.NewRequest(rt.Method, ts.url+path, strings.NewReader("MA=="))
				req.Header.Set("Content-Type", "application/pkcs10")
				resp, err := ts.mtls(cert).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				allowed := contains(rt.Roles, role)
				if !allowed && resp.StatusCode != http.StatusForbidden {
					t.Errorf("role %s: %d, want 403", role, resp.StatusCode)
				}
				if allowed && (resp.StatusCode == http.StatusUnauthorized || strings.Contains(string(b), "may not "+rt.Method)) {
					t.Errorf("role %s: %d %s; the role is allowed", role, resp.StatusCode, b)
				}
			}
		})
	}
	if n != 3 {
		t.Fatalf("%d client-certificate routes, want 3 (csrattrs, simpleenroll, simplereenroll)", n)
	}
}
