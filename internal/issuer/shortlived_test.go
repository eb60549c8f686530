package issuer

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/profile"
)

// TestShortLivedNoRevAvail issues a certificate under a short-lived profile: zlint's RFC 5280 lints accept the
// RFC 9608 noRevAvail extension with no error and no warning, and the certificate carries it, non-critical,
// with no CRL distribution point or OCSP responder.
func TestShortLivedNoRevAvail(t *testing.T) {
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	gw := string(profile.Defaults()["gateway-identity"])
	for _, cut := range []string{"crl_distribution_points:", "ocsp_servers:"} {
		i := strings.Index(gw, "\n"+cut)
		j := strings.Index(gw[i+1:], "\n")
		gw = gw[:i] + gw[i+1+j:]
	}
	gw = strings.Replace(gw, "short_lived: false", "short_lived: true", 1)
	gw = replaceLine(gw, "validity:", "validity: 26h")
	gw = replaceLine(gw, "renewal_window:", "renewal_window: 0.5")
	p, err := profile.Parse("gateway-identity", []byte(gw))
	if err != nil {
		t.Fatalf("short-lived gateway profile: %v", err)
	}
	key := pkitest.ECKey(t, elliptic.P256())
	tmpl := leafTemplate(t, p, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "GW-WARD-7"}, DNSNames: []string{"ward-7.gateways.example.com"}}, pki.inter)
	prep, err := pki.iss.Prepare(tmpl, &key.PublicKey, MaxDERSize(p.MaxDERSize))
	if err != nil {
		t.Fatalf("Prepare (lint): %v", err)
	}
	if w := prep.Warnings(); len(w) != 0 {
		t.Errorf("lint warnings on a short-lived certificate: %v", w)
	}
	der, err := pki.iss.Issue(context.Background(), prep)
	if err != nil {
		t.Fatal(err)
	}
	cert := mustParse(t, der)
	found := false
	for _, e := range cert.Extensions {
		if e.Id.Equal(profile.OIDNoRevAvail) {
			found = !e.Critical && string(e.Value) == "\x05\x00"
		}
	}
	if !found {
		t.Errorf("no non-critical NULL noRevAvail extension in %x", der)
	}
	if len(cert.CRLDistributionPoints)+len(cert.OCSPServer) != 0 {
		t.Errorf("revocation pointers in a short-lived certificate: %v %v", cert.CRLDistributionPoints, cert.OCSPServer)
	}
	pki.verify(t, cert, x509.ExtKeyUsageServerAuth)
}

func replaceLine(s, prefix, line string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = line
		}
	}
	return strings.Join(lines, "\n")
}
