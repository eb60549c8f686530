package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// startSite makes a dev site CA site-a (software keys) with the given quota at a headquarters data directory,
// registers one station for site-a and one for site-z, packages site-a and serves it with NewSite. It returns
// the site server and the two stations' TLS credentials.
func startSite(t *testing.T, quota int64) (ts *testServer, siteA, siteZ tls.Certificate) {
	t.Helper()
	ctx := context.Background()
	hq, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "hq"), Warn: io.Discard}, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer hq.Close()
	admin := ra.Principal{ID: "test", Role: ra.RoleAdmin}
	if _, err := hq.RA.CreateSiteCA(ctx, admin, ra.SiteCARequest{Environment: "dev", ProductLine: "demo-implant", Site: "site-a", Quota: quota, ValidFor: 30 * 24 * time.Hour, Keys: hq.Soft}); err != nil {
		t.Fatal(err)
	}
	pair := func(site, name string) tls.Certificate {
		cred, err := hq.RA.AddStation(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.StationRequest{Environment: "dev", Site: site, Name: name, ProductLines: []string{"demo-implant"}})
		if err != nil {
			t.Fatal(err)
		}
		p, err := tls.X509KeyPair(cred.CertPEM, cred.KeyPEM())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	siteA, siteZ = pair("site-a", "site-a-01"), pair("site-z", "site-z-01")
	dir := filepath.Join(t.TempDir(), "site")
	if _, err := hq.PackageSite(ctx, node.SitePackageRequest{SiteCA: "dev/demo-implant/site-a", Out: dir, Principal: admin}); err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(ctx, node.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if n.Site == nil || n.Site.SiteCA != "dev/demo-implant/site-a" {
		t.Fatalf("site directory opened with site %+v", n.Site)
	}
	cert, caPEM, err := n.ServerTLS(ctx, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	s := NewSite(Deps{RA: n.RA})
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx, ln, cert, 5*time.Second) }()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	ts = &testServer{n: n, s: s, url: "https://" + ln.Addr().String(), pool: pool} // no t: a site serves no operator API, so nothing to check against the OpenAPI document
	ts.stop = func() error { cancel(); err := <-done; n.Close(); return err }
	t.Cleanup(func() { ts.stop() })
	return ts, siteA, siteZ
}

// TestSiteRoutes: a site serves health (healthz, livez, readyz) and EST only (cacerts is public, RFC 7030 4.1.1; the others
// authenticate by client certificate); there is no operator API.
func TestSiteRoutes(t *testing.T) {
	ts, _, _ := startSite(t, 10)
	for _, rt := range ts.s.Routes() {
		if rt.Pattern == "/healthz" || rt.Pattern == "/livez" || rt.Pattern == "/readyz" {
			continue
		}
		if len(rt.Pattern) < 17 || rt.Pattern[:17] != "/.well-known/est/" || (!rt.ClientCert && !rt.Public) {
			t.Errorf("site route %s %s is not an EST route", rt.Method, rt.Pattern)
		}
	}
	code, _ := ts.do(t, "GET", "/api/v1/cas", "", nil)
	if code != 404 {
		t.Fatalf("GET /api/v1/cas at a site: %d, want 404", code)
	}
	// A site is ready when its database answers and its site CA's key (on the site's token or keystore) signs.
	code, b := readyzOf(t, ts)
	if code != http.StatusOK || len(b.Checks) != 2 || checkNamed(b, "database") == nil || !strings.HasPrefix(b.Checks[1].Name, "ca-key:") {
		t.Fatalf("/readyz at a site: %d %+v", code, b)
	}
}

// TestSiteEnrollQuotaConcurrent: twelve concurrent enrollments against a site CA quota of five give exactly
// five certificates of the site CA, a gap-free site log 0..4, and the quota recorded as spent; refusals change
// nothing but the audit trail.
func TestSiteEnrollQuotaConcurrent(t *testing.T) {
	ts, siteA, siteZ := startSite(t, 5)
	ctx := context.Background()
	c := ts.mtls(&siteA)

	// Another site's station (which the site package does not hold), and another product line, are refused
	// before anything is stored.
	before := ts.snap(t)
	if code, body, _ := ts.post(t, ts.mtls(&siteZ), enrollPath("demo-implant"), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000999")), nil); code != 401 || !bytes.Contains([]byte(body), []byte("no registered factory station")) {
		t.Fatalf("station of site-z at site-a: %d %s", code, body)
	}
	if code, body, _ := ts.post(t, c, enrollPath("demo-pump"), "application/pkcs10", bytes.NewReader(csrB64(t, p256Key(t), "DEMO-00000998")), nil); code != 404 {
		t.Fatalf("another product line at the site: %d %s", code, body)
	}
	after := ts.snap(t)
	// The 401 is counted for the aggregated auth.refusals event; the 404 of an authenticated station is audited.
	if after.certs != before.certs || after.devices != before.devices || after.audit != before.audit+1 {
		t.Fatalf("refusals changed the site: %+v -> %+v", before, after)
	}

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[int]int{}
	)
	for i := range 12 {
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
	fs, err := ts.n.Store.GetFactorySite(ctx, "dev/demo-implant/site-a")
	if err != nil || fs.Reserved != 5 {
		t.Fatalf("site record %+v, %v; want 5 used", fs, err)
	}
	var idx []int64
	if err := ts.n.Store.WalkFactorySiteLog(ctx, "dev/demo-implant/site-a", 0, func(e *store.FactorySiteLogEntry) error {
		cert, err := x509.ParseCertificate(e.CertDER)
		if err != nil {
			return err
		}
		if cert.Subject.CommonName != e.Device || e.StationID != "site-a-01" || cert.Issuer.CommonName != "demo-implant site-a dev" {
			return fmt.Errorf("log entry %d: %+v for %s issued by %s", e.Index, e, cert.Subject.CommonName, cert.Issuer.CommonName)
		}
		idx = append(idx, e.Index)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(idx) != "[0 1 2 3 4]" {
		t.Fatalf("site log indexes %v", idx)
	}
	certs, err := ts.n.Store.ListCertificates(ctx, store.CertFilter{IssuerID: "dev/demo-implant/site-a"})
	if err != nil || len(certs) != 5 {
		t.Fatalf("site CA certificates: %d, %v", len(certs), err)
	}
}
