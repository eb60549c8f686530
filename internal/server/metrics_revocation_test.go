package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/keyward/keyward/internal/metrics"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
)

// TestRevocationAndRenewalMetrics scrapes /metrics after real work on a SQLite node: certificates issued and
// one revoked, read as the count in their profile's renewal window on a clock moved into that window (and
// cached for a minute); an OCSP response signed and one served from the responder's cache; a revocation
// filter built and loaded by the public listener.
func TestRevocationAndRenewalMetrics(t *testing.T) {
	ctx := context.Background()
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "data"), Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	gw := n.Profiles["gateway-identity"]
	window := time.Duration(gw.RenewalWindow * float64(gw.Validity))
	// A clock past the start of the gateway certificates' renewal window and before their notAfter.
	offset := gw.Validity - window/2
	var clock time.Duration
	now := func() time.Time { return n.Now().Add(offset + clock) }
	m := metrics.New()
	st := m.NewState(n.Store, nil, now)
	windows := map[string]time.Duration{}
	for name, p := range n.Profiles {
		windows[name] = time.Duration(p.RenewalWindow * float64(p.Validity))
	}
	st.SetRenewalWindows(windows)
	m.Register(st)
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	value := func(text, series string) float64 {
		t.Helper()
		v, ok := metricValue(text, series)
		if !ok {
			t.Fatalf("/metrics lacks %s (or its value is not a number):\n%s", series, text)
		}
		return v
	}

	var certs []*x509.Certificate
	for i := range 3 {
		certs = append(certs, issueGateway(t, n, fmt.Sprintf("GW-METRICS-%04d", i)))
	}
	if _, err := n.RA.Revoke(ctx, admin, ra.RevokeRequest{Serial: certs[2].SerialNumber.Text(16), Reason: store.ReasonKeyCompromise}); err != nil {
		t.Fatal(err)
	}
	text := scrape()
	if got := value(text, `keyward_certificates_in_renewal_window{profile="gateway-identity"}`); got != 2 {
		t.Errorf("gateway-identity certificates in their renewal window: %v, want the 2 not revoked", got)
	}
	if got := value(text, `keyward_certificates_in_renewal_window{profile="implant-identity"}`); got != 0 {
		t.Errorf("implant-identity certificates in their renewal window: %v, want 0", got)
	}
	// One more: the count is cached for a minute, then counted again.
	issueGateway(t, n, "GW-METRICS-0003")
	if got := value(scrape(), `keyward_certificates_in_renewal_window{profile="gateway-identity"}`); got != 2 {
		t.Errorf("within a minute of the last count: %v, want the cached 2", got)
	}
	clock = metrics.RenewalCacheTTL + time.Second
	if got := value(scrape(), `keyward_certificates_in_renewal_window{profile="gateway-identity"}`); got != 3 {
		t.Errorf("a minute later: %v, want 3", got)
	}
	// Past notAfter they are no longer due for renewal: they have expired.
	clock = window
	if got := value(scrape(), `keyward_certificates_in_renewal_window{profile="gateway-identity"}`); got != 0 {
		t.Errorf("after notAfter: %v, want 0", got)
	}
	clock = -offset // the node's own clock for the OCSP and filter part below
	st.SetRenewalWindows(windows)

	// OCSP: one response signed, the same request again answered from the cache.
	svc := revocation.New(n.RA, n.CA, n.Store)
	resp := revocation.NewResponder(svc, revocation.OCSPConfig{})
	resp.Observe = m.OCSP
	if err := resp.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	issCA, err := n.Store.GetCA(ctx, "dev/demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := x509.ParseCertificate(issCA.CertDER)
	req, err := ocsp.CreateRequest(certs[0], issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	der := resp.Respond(ctx, req)
	if r, err := ocsp.ParseResponse(der, issuer); err != nil || r.Status != ocsp.Good {
		t.Fatalf("OCSP response: %v %+v", err, r)
	}
	resp.Respond(ctx, req)

	// A filter built for dev/demo-implant, loaded by the public listener.
	built, err := svc.BuildFilter(ctx, admin, revocation.FilterRequest{Environment: "dev", Product: "demo-implant"})
	if err != nil {
		t.Fatal(err)
	}
	pub := NewPublic(n.Config, svc, resp, n.Logger)
	pub.ObserveFilter = func(f *store.PublishedFilter) {
		m.Filter(f.Scope, metrics.FilterState{Version: f.Version, IssuedAt: f.IssuedAt, NextUpdate: f.NextUpdate, Bytes: len(f.Data)})
	}
	if err := pub.Reload(ctx); err != nil {
		t.Fatal(err)
	}

	text = scrape()
	ca := `{ca="dev/demo-implant"}`
	if got := value(text, `keyward_ocsp_responses_signed_total`+ca); got != 1 {
		t.Errorf("OCSP responses signed: %v, want 1 (the second was cached)", got)
	}
	if got := value(text, `keyward_ocsp_response_bytes`+ca); got != float64(len(der)) {
		t.Errorf("OCSP response bytes: %v, want %d", got, len(der))
	}
	if got := value(text, `keyward_ocsp_response_age_seconds`+ca); got < 0 || got > 60 {
		t.Errorf("OCSP response age: %v s, want the seconds since it was signed", got)
	}
	scope := `{scope="dev/demo-implant"}`
	if got := value(text, `keyward_filter_bytes`+scope); got != float64(len(built.Data)) || got == 0 {
		t.Errorf("filter bytes: %v, want %d", got, len(built.Data))
	}
	if got := value(text, `keyward_filter_version`+scope); got != float64(built.Version) || got < 1 {
		t.Errorf("filter version: %v, want %d", got, built.Version)
	}
	if got := value(text, `keyward_filter_age_seconds`+scope); got < 0 || got > 60 {
		t.Errorf("filter age: %v s, want the seconds since it was built", got)
	}
	if got := value(text, `keyward_filter_next_update_seconds`+scope); got <= 0 {
		t.Errorf("filter next update in %v s, want a fresh filter's positive time", got)
	}
}
