package profile

import (
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/pkitest"
)

// shortLived is base turned into a valid short-lived profile: 7 days, no revocation pointers, a CA-issuers URL
// (which is not a revocation pointer and stays allowed).
var shortLived = strings.Replace(base, "validity: 90d", "validity: 7d\nshort_lived: true\nissuing_certificate_urls: ['http://ca.example/{issuer}.crt']", 1)

func TestShortLivedProfile(t *testing.T) {
	p, err := Parse("test-profile", []byte(shortLived))
	if err != nil {
		t.Fatal(err)
	}
	if !p.ShortLived || p.Validity != MaxShortLivedValidity || len(p.CRLDistributionPoints)+len(p.OCSPServers) != 0 {
		t.Fatalf("short_lived %v, validity %v, CRL %v, OCSP %v", p.ShortLived, p.Validity, p.CRLDistributionPoints, p.OCSPServers)
	}
	ca := testCA(t, "Keyward Dev Gateway CA", testNow.AddDate(5, 0, 0), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	key := pkitest.ECKey(t, elliptic.P256())
	csr, err := ParseCSR(pkitest.CSRFor(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEV-1"}}))
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, p *Profile) {
		t.Helper()
		tmpl, err := p.Template(&Request{CSR: csr, Role: "admin"}, big.NewInt(1<<40), testNow, ca)
		if err != nil {
			t.Fatal(err)
		}
		if len(tmpl.CRLDistributionPoints)+len(tmpl.OCSPServer) != 0 {
			t.Errorf("short-lived template has revocation pointers: CRL %v, OCSP %v", tmpl.CRLDistributionPoints, tmpl.OCSPServer)
		}
		if len(tmpl.IssuingCertificateURL) != 1 {
			t.Errorf("CA-issuers URL dropped: %v", tmpl.IssuingCertificateURL)
		}
		if got := tmpl.NotAfter.Sub(tmpl.NotBefore) + time.Second; got != 7*24*time.Hour {
			t.Errorf("lifetime %v, want 7 days", got)
		}
		// RFC 9608 section 2: id-ce-noRevAvail, non-critical, NULL.
		if len(tmpl.ExtraExtensions) != 1 || !tmpl.ExtraExtensions[0].Id.Equal(OIDNoRevAvail) || tmpl.ExtraExtensions[0].Critical ||
			string(tmpl.ExtraExtensions[0].Value) != "\x05\x00" {
			t.Errorf("extensions %+v, want noRevAvail (2.5.29.56) non-critical NULL", tmpl.ExtraExtensions)
		}
	}
	t.Run("parsed", func(t *testing.T) { check(t, p) })
	t.Run("built by hand with pointers", func(t *testing.T) {
		q := *p
		q.CRLDistributionPoints = []string{"http://x.example/{issuer}.crl"}
		q.OCSPServers = []string{"http://x.example/ocsp"}
		check(t, &q)
	})
	t.Run("not short-lived", func(t *testing.T) {
		q := *p
		q.ShortLived = false
		q.CRLDistributionPoints = []string{"http://x.example/{issuer}.crl"}
		tmpl, err := q.Template(&Request{CSR: csr, Role: "admin"}, big.NewInt(1<<40), testNow, ca)
		if err != nil {
			t.Fatal(err)
		}
		if len(tmpl.ExtraExtensions) != 0 || len(tmpl.CRLDistributionPoints) != 1 {
			t.Errorf("long-lived template: extensions %+v, CRL %v", tmpl.ExtraExtensions, tmpl.CRLDistributionPoints)
		}
	})
}
