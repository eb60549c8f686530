package verify

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/keyward/keyward/pkg/certpolicy"
)

func (p *testPKI) crl(t testing.TB, signer *x509.Certificate, key crypto.Signer, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
		RevokedCertificateEntries: entries}, signer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ocspResponse answers for leaf with golang.org/x/crypto/ocsp, an implementation independent of CheckOCSP's.
func (p *testPKI) ocspResponse(t testing.TB, leaf, responder *x509.Certificate, key crypto.Signer, status int, nextUpdate time.Time) []byte {
	t.Helper()
	tmpl := ocsp.Response{Status: status, SerialNumber: leaf.SerialNumber, ThisUpdate: p.now.Add(-time.Minute), NextUpdate: nextUpdate, RevokedAt: p.now.Add(-time.Hour)}
	if responder != p.issuing {
		tmpl.Certificate = responder
	}
	der, err := ocsp.CreateResponse(p.issuing, responder, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCheckCRL(t *testing.T) {
	p := newTestPKI(t)
	good, _ := p.leaf(t, "DEMO-00000001", certpolicy.Device)
	bad, _ := p.leaf(t, "DEMO-00000002", certpolicy.Device)
	crl := p.crl(t, p.issuing, p.issKey, p.now.Add(-time.Hour), p.now.Add(time.Hour), bad)
	if r, err := CheckCRL(crl, good, p.issuing, p.now, 0); err != nil || r {
		t.Errorf("good: %v, %v", r, err)
	}
	if r, err := CheckCRL(crl, bad, p.issuing, p.now, 0); err != nil || !r {
		t.Errorf("revoked: %v, %v", r, err)
	}
	if _, err := CheckCRL(crl, good, p.issuing, p.now.Add(2*time.Hour), 0); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("stale: %v", err)
	}
	if _, err := CheckCRL(crl, good, p.issuing, p.now.Add(2*time.Hour), 2*time.Hour); err != nil {
		t.Errorf("stale within skew: %v", err)
	}
	other := p.crl(t, p.station, p.stKey, p.now.Add(-time.Hour), p.now.Add(time.Hour))
	if _, err := CheckCRL(other, bad, p.issuing, p.now, 0); err == nil || !strings.Contains(err.Error(), "not signed by") {
		t.Errorf("another CA's CRL: %v", err)
	}
	if _, err := CheckCRL([]byte("junk"), good, p.issuing, p.now, 0); err == nil || !strings.Contains(err.Error(), "parse") {
		t.Errorf("junk: %v", err)
	}
}

func TestCheckOCSP(t *testing.T) {
	p := newTestPKI(t)
	leaf, _ := p.leaf(t, "DEMO-00000001", certpolicy.Device)
	rk := key(t)
	delegate := p.sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "OCSP responder"}, NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}}, p.issuing, &rk.PublicKey, p.issKey)
	nk := key(t)
	notDelegate := p.sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "not a responder"}, NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, p.issuing, &nk.PublicKey, p.issKey)
	later := p.now.Add(time.Hour)
	tests := []struct {
		name    string
		der     []byte
		revoked bool
		err     string
	}{
		{"good by the issuer", p.ocspResponse(t, leaf, p.issuing, p.issKey, ocsp.Good, later), false, ""},
		{"revoked by a delegate", p.ocspResponse(t, leaf, delegate, rk, ocsp.Revoked, later), true, ""},
		{"unknown", p.ocspResponse(t, leaf, delegate, rk, ocsp.Unknown, later), false, "does not know"},
		{"no nextUpdate", p.ocspResponse(t, leaf, delegate, rk, ocsp.Good, time.Time{}), false, "stale"},
		{"stale", p.ocspResponse(t, leaf, delegate, rk, ocsp.Good, p.now.Add(-time.Second)), false, "stale"},
		{"signed by a certificate without OCSPSigning", p.ocspResponse(t, leaf, notDelegate, nk, ocsp.Revoked, later), false, "not authorised"},
		{"about another certificate", p.ocspResponse(t, p.issuing, p.issuing, p.issKey, ocsp.Good, later), false, "not about this certificate"},
		{"unauthorised status", []byte{0x30, 0x03, 0x0a, 0x01, 0x06}, false, "status 6"},
		{"junk", []byte("junk"), false, "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := CheckOCSP(tc.der, leaf, p.issuing, p.now, 0)
			if tc.err == "" && (err != nil || r != tc.revoked) {
				t.Fatalf("CheckOCSP = %v, %v; want %v", r, err, tc.revoked)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("CheckOCSP = %v, %v; want an error saying %q", r, err, tc.err)
			}
		})
	}
	// A response forged by flipping the status is refused by the signature.
	der := p.ocspResponse(t, leaf, delegate, rk, ocsp.Good, later)
	i := strings.Index(string(der), "\x80\x00\x18\x0f") // good [0] IMPLICIT NULL, then thisUpdate
	if i < 0 {
		t.Fatal("no good status in the response")
	}
	forged := append([]byte(nil), der...)
	forged[i] = 0x82 // unknown
	if _, err := CheckOCSP(forged, leaf, p.issuing, p.now, 0); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("forged status: %v", err)
	}
}

// TestOnlineRevocation: the Verifier asks the OCSP responder first, the CRL when OCSP cannot answer, and the
// policy when neither can.
func TestOnlineRevocation(t *testing.T) {
	p := newTestPKI(t)
	var ocspBody []byte
	ocspURL, ocspHits := serve(t, func() []byte { return ocspBody })
	var crlBody []byte
	crlURL, crlHits := serve(t, func() []byte { return crlBody })
	leaf, _ := p.leaf(t, "DEMO-00000001", certpolicy.Device, withURLs(ocspURL, crlURL))
	online := func(policy RevocationPolicy) *Verifier {
		return p.verifier(t, func(o *Options) { o.Revocation = Revocation{Policy: policy, Online: true} })
	}
	ctx := context.Background()
	chain := []*x509.Certificate{leaf, p.issuing}

	ocspBody = p.ocspResponse(t, leaf, p.issuing, p.issKey, ocsp.Good, p.now.Add(time.Hour))
	if res, err := online(FailClosed).Verify(ctx, chain); err != nil || res.Revocation != "ocsp" || *ocspHits != 1 {
		t.Errorf("OCSP good: %+v, %v, %d requests", res, err, *ocspHits)
	}
	ocspBody = p.ocspResponse(t, leaf, p.issuing, p.issKey, ocsp.Revoked, p.now.Add(time.Hour))
	if _, err := online(FailOpen).Verify(ctx, chain); !errors.Is(err, ErrRevoked) {
		t.Errorf("OCSP revoked: %v", err)
	}
	ocspBody = []byte("not OCSP")
	crlBody = p.crl(t, p.issuing, p.issKey, p.now.Add(-time.Hour), p.now.Add(time.Hour))
	if res, err := online(FailClosed).Verify(ctx, chain); err != nil || res.Revocation != "crl" || *crlHits != 1 {
		t.Errorf("CRL good after a bad OCSP answer: %+v, %v", res, err)
	}
	crlBody = p.crl(t, p.issuing, p.issKey, p.now.Add(-time.Hour), p.now.Add(time.Hour), leaf)
	if _, err := online(FailOpen).Verify(ctx, chain); !errors.Is(err, ErrRevoked) {
		t.Errorf("CRL revoked: %v", err)
	}
	crlBody = []byte("not a CRL")
	_, err := online(FailClosed).Verify(ctx, chain)
	if !errors.Is(err, ErrRevocationUnknown) || !strings.Contains(err.Error(), "OCSP") || !strings.Contains(err.Error(), "CRL") {
		t.Errorf("nothing answers, fail-closed: %v", err)
	}
	if res, err := online(FailOpen).Verify(ctx, chain); err != nil || res.RevocationUnknown == "" {
		t.Errorf("nothing answers, fail-open: %+v, %v", res, err)
	}
	// A short-lived certificate (noRevAvail, RFC 9608) needs no source.
	short, _ := p.leaf(t, "DEMO-00000002", certpolicy.Device, func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{{Id: oidNoRevAvail, Value: []byte{0x05, 0x00}}}
	})
	if res, err := online(FailClosed).Verify(ctx, []*x509.Certificate{short, p.issuing}); err != nil || res.Revocation != "none" {
		t.Errorf("short-lived: %+v, %v", res, err)
	}
}

func FuzzCheckOCSP(f *testing.F) {
	p := newTestPKI(f)
	leaf, _ := p.leaf(f, "DEMO-00000001", certpolicy.Device)
	f.Add(p.ocspResponse(f, leaf, p.issuing, p.issKey, ocsp.Good, p.now.Add(time.Hour)))
	f.Add(p.ocspResponse(f, leaf, p.issuing, p.issKey, ocsp.Revoked, p.now.Add(time.Hour)))
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x06})
	f.Fuzz(func(t *testing.T, der []byte) {
		revoked, err := CheckOCSP(der, leaf, p.issuing, p.now, 0)
		if err != nil && revoked {
			t.Fatal("revoked with an error")
		}
	})
}

func FuzzCheckCRL(f *testing.F) {
	p := newTestPKI(f)
	leaf, _ := p.leaf(f, "DEMO-00000001", certpolicy.Device)
	f.Add(p.crl(f, p.issuing, p.issKey, p.now.Add(-time.Hour), p.now.Add(time.Hour), leaf))
	f.Fuzz(func(t *testing.T, der []byte) {
		revoked, err := CheckCRL(der, leaf, p.issuing, p.now, 0)
		if err != nil && revoked {
			t.Fatal("revoked with an error")
		}
	})
}
