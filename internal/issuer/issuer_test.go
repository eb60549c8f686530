package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/pkg/certpolicy"
)

func serial(t testing.TB) *big.Int {
	t.Helper()
	s, err := NewSerial(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// countingSigner counts signatures, so a test can prove that a refused certificate was never signed.
type countingSigner struct {
	crypto.Signer
	n atomic.Int64
}

func (s *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.n.Add(1)
	return s.Signer.Sign(r, digest, opts)
}

type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
	iss               *Issuer
	signer            *countingSigner
}

func caTemplate(t testing.TB, cn string, years int, pathLenZero bool) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(years, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        pathLenZero,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// newPKI makes a root and an issuing CA with the given keys, through SelfSign and SignCA.
func newPKI(t testing.TB, rootKey, interKey crypto.Signer) *testPKI {
	t.Helper()
	ctx := context.Background()
	rootDER, _, err := SelfSign(ctx, caTemplate(t, "Keyward Dev Root CA", 30, false), rootKey)
	if err != nil {
		t.Fatalf("SelfSign: %v", err)
	}
	root := mustParse(t, rootDER)
	interDER, _, err := SignCA(ctx, caTemplate(t, "Keyward Dev Implant CA", 20, true), root, rootKey, interKey.Public())
	if err != nil {
		t.Fatalf("SignCA: %v", err)
	}
	inter := mustParse(t, interDER)
	cs := &countingSigner{Signer: interKey}
	iss, err := New(inter, cs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &testPKI{root: root, inter: inter, rootKey: rootKey, interKey: interKey, iss: iss, signer: cs}
}

func (p *testPKI) verify(t testing.TB, leaf *x509.Certificate, eku x509.ExtKeyUsage) {
	t.Helper()
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.root)
	inters.AddCert(p.inter)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func defaults(t testing.TB) map[string]*profile.Profile {
	t.Helper()
	ps, err := profile.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// leafTemplate runs a CSR for key through profile p's checks and template.
func leafTemplate(t testing.TB, p *profile.Profile, key crypto.Signer, csrTmpl *x509.CertificateRequest, issuer *x509.Certificate) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, csrTmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := p.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := p.Template(&profile.Request{CSR: csr, Role: "admin"}, serial(t), time.Now(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

var (
	oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSKI      = asn1.ObjectIdentifier{2, 5, 29, 14}
)

func TestImplantCertificate(t *testing.T) {
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	imp := defaults(t)["implant-identity"]
	deviceKey := pkitest.ECKey(t, elliptic.P256())
	tmpl := leafTemplate(t, imp, deviceKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, pki.inter)

	prep, err := pki.iss.Prepare(tmpl, &deviceKey.PublicKey, MaxDERSize(imp.MaxDERSize))
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	der, err := pki.iss.Issue(context.Background(), prep)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	t.Logf("implant-identity certificate: %d bytes DER (bound %d, limit %d)", len(der), prep.MaxSize(), imp.MaxDERSize)
	if len(der) > imp.MaxDERSize || len(der) > prep.MaxSize() {
		t.Errorf("certificate is %d bytes; limit %d, bound %d", len(der), imp.MaxDERSize, prep.MaxSize())
	}
	cert := mustParse(t, der)

	var kuCritical, hasSKI bool
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidKeyUsage) {
			kuCritical = e.Critical
		}
		if e.Id.Equal(oidSKI) {
			hasSKI = true
		}
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"KU is digitalSignature", cert.KeyUsage == x509.KeyUsageDigitalSignature},
		{"KU is critical", kuCritical},
		// No EKU extension: the implant is a TLS client and server (the profile explains the bytes).
		{"no EKU extension", len(cert.ExtKeyUsage) == 0 && len(cert.UnknownExtKeyUsage) == 0},
		{"device policy only", len(cert.Policies) == 1 && cert.Policies[0].String() == certpolicy.DefaultArc+".1"},
		{"AKI is issuer SKI", len(pki.inter.SubjectKeyId) > 0 && bytes.Equal(cert.AuthorityKeyId, pki.inter.SubjectKeyId)},
		{"no SKI", !hasSKI},
		{"serial positive", cert.SerialNumber.Sign() > 0},
		{"serial >= 64 bits", cert.SerialNumber.BitLen() >= 64},
		{"subject is CN only", cert.Subject.String() == "CN=DEMO-00000001"},
		{"not a CA", !cert.IsCA && !cert.BasicConstraintsValid},
		{"no URLs", len(cert.CRLDistributionPoints)+len(cert.OCSPServer)+len(cert.IssuingCertificateURL) == 0},
		{"ECDSA-SHA256", cert.SignatureAlgorithm == x509.ECDSAWithSHA256},
		{"validity 15y", cert.NotAfter.Sub(cert.NotBefore) == 15*365*24*time.Hour-time.Second},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: no", c.name)
		}
	}
	pki.verify(t, cert, x509.ExtKeyUsageClientAuth)
	pki.verify(t, cert, x509.ExtKeyUsageServerAuth)

	// The issued TBSCertificate is byte-identical to the linted one.
	if !bytes.Equal(cert.RawTBSCertificate, prep.TBS()) {
		t.Error("issued TBSCertificate differs from Prepared.TBS")
	}
	lintTBS, _, err := splitCertificate(prep.lintDER)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert.RawTBSCertificate, lintTBS) {
		t.Error("issued TBSCertificate differs from the linted throwaway certificate's")
	}
	// The deliberate SKI omission shows up as a warning for the audit log, not as a refusal.
	var sawSKIWarning bool
	for _, w := range prep.Warnings() {
		t.Logf("lint warning: %s", w)
		if w.Lint == "w_ext_subject_key_identifier_missing_sub_cert" {
			sawSKIWarning = true
		}
	}
	if !sawSKIWarning {
		t.Error("no w_ext_subject_key_identifier_missing_sub_cert warning recorded")
	}
	if n := pki.signer.n.Load(); n != 1 {
		t.Errorf("CA signer used %d times, want 1", n)
	}

	// Redeeming the token again fails and does not sign.
	if _, err := pki.iss.Issue(context.Background(), prep); !errors.Is(err, ErrRedeemed) {
		t.Errorf("second Issue: err = %v, want ErrRedeemed", err)
	}
	if n := pki.signer.n.Load(); n != 1 {
		t.Errorf("CA signer used %d times after a second Issue, want 1", n)
	}
}

// TestImplantSizeDistribution issues many implant certificates to show the 400-byte limit holds for every
// signature length, and reports the sizes seen.
func TestImplantSizeDistribution(t *testing.T) {
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	imp := defaults(t)["implant-identity"]
	deviceKey := pkitest.ECKey(t, elliptic.P256())
	tmpl := leafTemplate(t, imp, deviceKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, pki.inter)
	sizes := map[int]int{}
	bound := 0
	for range 200 {
		tmpl.SerialNumber = serial(t)
		prep, err := pki.iss.Prepare(tmpl, &deviceKey.PublicKey, MaxDERSize(imp.MaxDERSize))
		if err != nil {
			t.Fatal(err)
		}
		der, err := pki.iss.Issue(context.Background(), prep)
		if err != nil {
			t.Fatal(err)
		}
		sizes[len(der)]++
		bound = prep.MaxSize()
		if len(der) > prep.MaxSize() {
			t.Fatalf("certificate of %d bytes exceeds the bound %d", len(der), prep.MaxSize())
		}
	}
	t.Logf("implant-identity sizes over 200 issuances: %v (bound %d)", sizes, bound)
}

func TestLintRefusals(t *testing.T) {
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	leafKey := pkitest.ECKey(t, elliptic.P256())
	good := func() *x509.Certificate {
		now := time.Now()
		return &x509.Certificate{
			SerialNumber: serial(t),
			Subject:      pkix.Name{CommonName: "DEMO-00000001"},
			NotBefore:    now,
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
	tests := []struct {
		name   string
		mutate func(*x509.Certificate)
		lint   string
	}{
		{"zero serial", func(c *x509.Certificate) { c.SerialNumber = big.NewInt(0) }, "e_serial_number_not_positive"},
		{"certSign without CA", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }, "e_ext_key_usage_cert_sign_without_ca"},
		{"empty subject without SAN", func(c *x509.Certificate) { c.Subject = pkix.Name{} }, "e_subject_empty_without_san"},
		{"21-octet serial", func(c *x509.Certificate) { c.SerialNumber = new(big.Int).Lsh(big.NewInt(1), 166) }, "e_serial_number_longer_than_20_octets"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := good()
			tc.mutate(tmpl)
			before := pki.signer.n.Load()
			_, err := pki.iss.Prepare(tmpl, &leafKey.PublicKey)
			if err == nil {
				t.Fatal("Prepare accepted the template")
			}
			if !errors.Is(err, ErrLint) || !strings.Contains(err.Error(), tc.lint) {
				t.Errorf("err = %v; want ErrLint naming %s", err, tc.lint)
			}
			var le *LintError
			if !errors.As(err, &le) || len(le.Findings) == 0 {
				t.Errorf("err is not a *LintError with findings: %v", err)
			}
			if pki.signer.n.Load() != before {
				t.Error("the CA key signed a refused certificate")
			}
		})
	}
	// The good template passes.
	if _, err := pki.iss.Prepare(good(), &leafKey.PublicKey); err != nil {
		t.Errorf("Prepare(good): %v", err)
	}
}

func TestPrepareChecks(t *testing.T) {
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	leafKey := pkitest.ECKey(t, elliptic.P256())
	imp := defaults(t)["implant-identity"]
	tmpl := leafTemplate(t, imp, leafKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, pki.inter)

	noSerial := *tmpl
	noSerial.SerialNumber = nil
	if _, err := pki.iss.Prepare(&noSerial, &leafKey.PublicKey); err == nil || !strings.Contains(err.Error(), "no serial number") {
		t.Errorf("nil serial: err = %v", err)
	}
	wrongAlg := *tmpl
	wrongAlg.SignatureAlgorithm = x509.ECDSAWithSHA384
	if _, err := pki.iss.Prepare(&wrongAlg, &leafKey.PublicKey); err == nil || !strings.Contains(err.Error(), "signature algorithm") {
		t.Errorf("wrong signature algorithm: err = %v", err)
	}
	_, err := pki.iss.Prepare(tmpl, &leafKey.PublicKey, MaxDERSize(300))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "the limit is 300") {
		t.Errorf("MaxDERSize(300): err = %v, want ErrTooLarge", err)
	}
	if pki.signer.n.Load() != 0 {
		t.Error("the CA key signed during failed Prepares")
	}

	// A token is bound to its issuer.
	other := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	prep, err := pki.iss.Prepare(tmpl, &leafKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.iss.Issue(context.Background(), prep); err == nil || !strings.Contains(err.Error(), "another issuer") {
		t.Errorf("Issue with another issuer: err = %v", err)
	}
	// A cancelled context stops issuance before signing, and still uses up the token.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pki.iss.Issue(ctx, prep); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Issue: err = %v", err)
	}
	if _, err := pki.iss.Issue(context.Background(), prep); !errors.Is(err, ErrRedeemed) {
		t.Errorf("Issue after cancelled Issue: err = %v, want ErrRedeemed", err)
	}
}

// TestIssueConcurrentRedeem races many Issue calls on one token: exactly one may sign.
func TestIssueConcurrentRedeem(t *testing.T) {
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	leafKey := pkitest.ECKey(t, elliptic.P256())
	tmpl := leafTemplate(t, defaults(t)["implant-identity"], leafKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, pki.inter)
	prep, err := pki.iss.Prepare(tmpl, &leafKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	results := make(chan error, n)
	for range n {
		go func() {
			_, err := pki.iss.Issue(context.Background(), prep)
			results <- err
		}()
	}
	ok, redeemed := 0, 0
	for range n {
		switch err := <-results; {
		case err == nil:
			ok++
		case errors.Is(err, ErrRedeemed):
			redeemed++
		default:
			t.Errorf("Issue: %v", err)
		}
	}
	if ok != 1 || redeemed != n-1 || pki.signer.n.Load() != 1 {
		t.Errorf("%d issued, %d refused as redeemed, %d signatures; want 1, %d, 1", ok, redeemed, pki.signer.n.Load(), n-1)
	}
}

// faultySigner misbehaves in one of several ways.
type faultySigner struct {
	crypto.Signer
	mode  string
	other crypto.Signer
}

func (f *faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	switch f.mode {
	case "garbage":
		b := make([]byte, 72)
		rand.Read(b)
		return b, nil
	case "bitflip":
		sig, err := f.Signer.Sign(r, digest, opts)
		sig[len(sig)-1] ^= 1
		return sig, err
	case "wrong key":
		return f.other.Sign(r, digest, opts)
	case "error":
		return nil, errors.New("token removed")
	}
	return f.Signer.Sign(r, digest, opts)
}

func TestFaultySigner(t *testing.T) {
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	leafKey := pkitest.ECKey(t, elliptic.P256())
	imp := defaults(t)["implant-identity"]
	tmpl := leafTemplate(t, imp, leafKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, pki.inter)
	for _, mode := range []string{"garbage", "bitflip", "wrong key", "error"} {
		t.Run(mode, func(t *testing.T) {
			fs := &faultySigner{Signer: pki.interKey, mode: mode, other: pkitest.ECKey(t, elliptic.P256())}
			iss, err := New(pki.inter, fs)
			if err != nil {
				t.Fatal(err)
			}
			prep, err := iss.Prepare(tmpl, &leafKey.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			der, err := iss.Issue(context.Background(), prep)
			if err == nil {
				t.Fatalf("Issue returned a certificate (%d bytes) from a faulty signer", len(der))
			}
			if mode != "error" && !errors.Is(err, ErrBadSignature) {
				t.Errorf("err = %v, want ErrBadSignature", err)
			}
			if der != nil {
				t.Error("Issue returned bytes with an error")
			}
		})
	}
}

func TestCAAlgorithms(t *testing.T) {
	gw := defaults(t)["gateway-identity"]
	rsaKey := func() crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	tests := []struct {
		name    string
		root    crypto.Signer
		inter   crypto.Signer
		leaf    crypto.Signer
		wantAlg x509.SignatureAlgorithm
	}{
		{"p256", pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()), x509.ECDSAWithSHA256},
		{"p384", pkitest.ECKey(t, elliptic.P384()), pkitest.ECKey(t, elliptic.P384()), pkitest.ECKey(t, elliptic.P384()), x509.ECDSAWithSHA384},
		{"ed25519", pkitest.Ed25519Key(t), pkitest.Ed25519Key(t), pkitest.Ed25519Key(t), x509.PureEd25519},
		{"p384 root, ed25519 issuing CA", pkitest.ECKey(t, elliptic.P384()), pkitest.Ed25519Key(t), pkitest.ECKey(t, elliptic.P256()), x509.PureEd25519},
		{"rsa2048", rsaKey(), rsaKey(), pkitest.ECKey(t, elliptic.P256()), x509.SHA256WithRSA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pki := newPKI(t, tc.root, tc.inter)
			tmpl := leafTemplate(t, gw, tc.leaf, &x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "GW-WARD-7"},
				DNSNames: []string{"ward-7.gateways.example.com"},
			}, pki.inter)
			prep, err := pki.iss.Prepare(tmpl, tc.leaf.Public(), MaxDERSize(gw.MaxDERSize))
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			der, err := pki.iss.Issue(context.Background(), prep)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			cert := mustParse(t, der)
			if cert.SignatureAlgorithm != tc.wantAlg {
				t.Errorf("SignatureAlgorithm = %v, want %v", cert.SignatureAlgorithm, tc.wantAlg)
			}
			if len(cert.SubjectKeyId) != 20 || len(cert.CRLDistributionPoints) != 1 || len(cert.OCSPServer) != 1 {
				t.Errorf("gateway extensions: SKI %x, CRL DP %v, OCSP %v", cert.SubjectKeyId, cert.CRLDistributionPoints, cert.OCSPServer)
			}
			if !bytes.Equal(cert.RawTBSCertificate, prep.TBS()) {
				t.Error("issued TBSCertificate differs from the linted one")
			}
			pki.verify(t, cert, x509.ExtKeyUsageServerAuth)
			pki.verify(t, cert, x509.ExtKeyUsageClientAuth)
			t.Logf("gateway-identity under %s: %d bytes; warnings: %v", tc.name, len(der), prep.Warnings())
		})
	}
}

// TestImplantUnderCAAlgorithms shows which issuing-CA algorithms keep implant certificates within 400 bytes:
// P-256 and Ed25519 do; a P-384 CA's signature (up to 104 bytes) does not fit, and Prepare says so before
// anything is signed.
func TestImplantUnderCAAlgorithms(t *testing.T) {
	imp := defaults(t)["implant-identity"]
	tests := []struct {
		name    string
		caKey   crypto.Signer
		tooBig  bool
		maxSize int
	}{
		// With the device policy under the default arc (24 bytes) and no EKU extension (21 bytes less).
		{"p256", pkitest.ECKey(t, elliptic.P256()), false, 391},
		{"ed25519", pkitest.Ed25519Key(t), false, 383},
		{"p384", pkitest.ECKey(t, elliptic.P384()), true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pki := newPKI(t, tc.caKey, tc.caKey) // key reuse across root and CA is fine for a size test
			k := pkitest.ECKey(t, elliptic.P256())
			tmpl := leafTemplate(t, imp, k, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, pki.inter)
			prep, err := pki.iss.Prepare(tmpl, &k.PublicKey, MaxDERSize(imp.MaxDERSize))
			if tc.tooBig {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			der, err := pki.iss.Issue(context.Background(), prep)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("implant-identity under a %s CA: %d bytes (bound %d)", tc.name, len(der), prep.MaxSize())
			if prep.MaxSize() > tc.maxSize {
				t.Errorf("bound %d, want at most %d", prep.MaxSize(), tc.maxSize)
			}
		})
	}
}

func TestMaxSignatureSize(t *testing.T) {
	tests := []struct {
		name string
		pub  crypto.PublicKey
		want int
	}{
		{"p256", &pkitest.ECKey(t, elliptic.P256()).PublicKey, 72},
		{"p384", &pkitest.ECKey(t, elliptic.P384()).PublicKey, 104},
		{"p521", &pkitest.ECKey(t, elliptic.P521()).PublicKey, 141},
		{"ed25519", pkitest.Ed25519Key(t).Public(), 64},
	}
	for _, tc := range tests {
		got, err := MaxSignatureSize(tc.pub)
		if err != nil || got != tc.want {
			t.Errorf("%s: MaxSignatureSize = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	// Empirically, no P-256 signature exceeds the bound.
	k := pkitest.ECKey(t, elliptic.P256())
	longest := 0
	for range 2000 {
		sig, err := ecdsa.SignASN1(rand.Reader, k, make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		longest = max(longest, len(sig))
	}
	if longest > 72 {
		t.Errorf("a P-256 signature of %d bytes exceeds 72", longest)
	}
}

func TestNew(t *testing.T) {
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	leaf := mustParse(t, func() []byte {
		k := pkitest.ECKey(t, elliptic.P256())
		tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.inter, &k.PublicKey, pki.interKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}())
	noSKI := *pki.inter
	noSKI.SubjectKeyId = nil
	noCertSign := *pki.inter
	noCertSign.KeyUsage = x509.KeyUsageCRLSign
	tests := []struct {
		name   string
		cert   *x509.Certificate
		signer crypto.Signer
		opts   []Option
		want   string
	}{
		{"ok", pki.inter, pki.interKey, nil, ""},
		{"ignore a known lint", pki.inter, pki.interKey, []Option{IgnoreLints("w_ext_subject_key_identifier_missing_sub_cert")}, ""},
		{"ignore an unknown lint", pki.inter, pki.interKey, []Option{IgnoreLints("e_no_such_lint")}, `"e_no_such_lint": not an RFC 5280 certificate lint`},
		{"not a CA", leaf, pki.interKey, nil, "not a CA certificate"},
		{"no SKI", &noSKI, pki.interKey, nil, "no subject key identifier"},
		{"no keyCertSign", &noCertSign, pki.interKey, nil, "lacks keyCertSign"},
		{"wrong signer", pki.inter, pkitest.ECKey(t, elliptic.P256()), nil, "does not match"},
		{"nil", nil, nil, nil, "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cert, tc.signer, tc.opts...)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestIgnoreLintsLetsWarningGo(t *testing.T) {
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	iss, err := New(pki.inter, pki.interKey, IgnoreLints("w_ext_subject_key_identifier_missing_sub_cert"))
	if err != nil {
		t.Fatal(err)
	}
	k := pkitest.ECKey(t, elliptic.P256())
	tmpl := leafTemplate(t, defaults(t)["implant-identity"], k, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, pki.inter)
	prep, err := iss.Prepare(tmpl, &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range prep.Warnings() {
		if w.Lint == "w_ext_subject_key_identifier_missing_sub_cert" {
			t.Error("ignored lint still reported")
		}
	}
}

func TestSelfSignAndSignCARefuseNonCA(t *testing.T) {
	k := pkitest.ECKey(t, elliptic.P256())
	tmpl := caTemplate(t, "Not a CA", 1, false)
	tmpl.IsCA = false
	if _, _, err := SelfSign(context.Background(), tmpl, k); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("SelfSign: err = %v", err)
	}
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	if _, _, err := SignCA(context.Background(), tmpl, pki.root, pki.rootKey, &k.PublicKey); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("SignCA: err = %v", err)
	}
	// A CA template that breaks a lint is refused before the root key signs.
	bad := caTemplate(t, "", 1, false)
	cs := &countingSigner{Signer: k}
	if _, _, err := SelfSign(context.Background(), bad, cs); !errors.Is(err, ErrLint) {
		t.Errorf("SelfSign with an empty subject: err = %v, want ErrLint", err)
	}
	if cs.n.Load() != 0 {
		t.Error("root key signed a refused certificate")
	}
	// A root's own signature verifies and its TBS is intact.
	der, warnings, err := SelfSign(context.Background(), caTemplate(t, "Keyward Test Root", 5, false), cs)
	if err != nil {
		t.Fatal(err)
	}
	root := mustParse(t, der)
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Error(err)
	}
	t.Logf("root: %d bytes, warnings %v", len(der), warnings)
}

func TestNewSerial(t *testing.T) {
	seen := map[string]bool{}
	at := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	var prev *big.Int
	for i := range 2000 {
		now := at.Add(time.Duration(i/2) * time.Millisecond) // two serials per millisecond
		s, err := NewSerial(now)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sign() <= 0 || s.BitLen() != 127 || len(s.Bytes()) != 16 {
			t.Fatalf("serial %x: sign %d, %d bits, %d bytes", s, s.Sign(), s.BitLen(), len(s.Bytes()))
		}
		if seen[s.String()] {
			t.Fatalf("serial %x repeated", s)
		}
		seen[s.String()] = true
		// The time prefix: bits 125..78 are the milliseconds.
		ms := new(big.Int).Rsh(s, SerialRandomBits)
		ms.SetBit(ms, 48, 0)
		if ms.Int64() != now.UnixMilli() {
			t.Fatalf("serial %x carries %d ms, want %d", s, ms.Int64(), now.UnixMilli())
		}
		// Serials of a later millisecond are greater: the store's serial indexes grow at their right edge.
		if i%2 == 0 && prev != nil && s.Cmp(prev) <= 0 {
			t.Fatalf("serial %x of %s is not above %x of the millisecond before", s, now, prev)
		}
		prev = s
	}
	// The random part: 78 bits, each seen both set and clear over 2000 serials.
	var ones, zeros big.Int
	for k := range seen {
		s, _ := new(big.Int).SetString(k, 10)
		for b := range SerialRandomBits {
			if s.Bit(b) == 1 {
				ones.SetBit(&ones, b, 1)
			} else {
				zeros.SetBit(&zeros, b, 1)
			}
		}
	}
	all := new(big.Int).Lsh(big.NewInt(1), SerialRandomBits)
	all.Sub(all, big.NewInt(1))
	if new(big.Int).And(&ones, &zeros).Cmp(all) != 0 {
		t.Errorf("some of the %d random bits never changed: set %x, clear %x", SerialRandomBits, &ones, &zeros)
	}
	for _, bad := range []time.Time{time.Unix(-1, 0), time.UnixMilli(maxSerialMillis + 1)} {
		if _, err := NewSerial(bad); err == nil {
			t.Errorf("NewSerial(%s): no error", bad)
		}
	}
	if s, err := NewSerial(time.UnixMilli(maxSerialMillis)); err != nil || s.BitLen() != 127 {
		t.Errorf("NewSerial at the last millisecond: %v, %d bits", err, s.BitLen())
	}
}
