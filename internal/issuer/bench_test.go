package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/keyward/keyward/internal/pkitest"
)

// benchSetup returns a P-256 issuer, an implant-identity template and the device key.
func benchSetup(b *testing.B) (*testPKI, *x509.Certificate, *ecdsa.PrivateKey) {
	b.Helper()
	pki := newPKI(b, pkitest.ECKey(b, elliptic.P256()), pkitest.ECKey(b, elliptic.P256()))
	imp := defaults(b)["implant-identity"]
	k := pkitest.ECKey(b, elliptic.P256())
	tmpl := leafTemplate(b, imp, k, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, pki.inter)
	return pki, tmpl, k
}

// BenchmarkPrepareIssue is the full issuance path for an implant certificate under a P-256 CA: fresh serial,
// throwaway-signed build, size check, RFC 5280 lint, real signature, assembly, parse and verification.
func BenchmarkPrepareIssue(b *testing.B) {
	pki, tmpl, k := benchSetup(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t := *tmpl
			s, err := NewSerial(time.Now())
			if err != nil {
				b.Fatal(err)
			}
			t.SerialNumber = s
			p, err := pki.iss.Prepare(&t, &k.PublicKey, MaxDERSize(400))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := pki.iss.Issue(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCreateCertificateLimit is the in-process limit for comparison: plain x509.CreateCertificate with
// the same key and template (which also verifies its own signature), nothing else.
func BenchmarkCreateCertificateLimit(b *testing.B) {
	pki, tmpl, k := benchSetup(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, pki.inter, &k.PublicKey, pki.interKey); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func lintBenchDER(b *testing.B) []byte {
	pki, tmpl, k := benchSetup(b)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.inter, &k.PublicKey, pki.interKey)
	if err != nil {
		b.Fatal(err)
	}
	return der
}

// BenchmarkLint is the lint step alone: zcrypto parse plus the pre-resolved RFC 5280 lints.
func BenchmarkLint(b *testing.B) {
	der := lintBenchDER(b)
	l, err := rfc5280Linter()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.check(der, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLintCertificateEx is what BenchmarkLint replaces: zlint's own entry point with a filtered registry
// (zcrypto parse included, for the same work).
func BenchmarkLintCertificateEx(b *testing.B) {
	der := lintBenchDER(b)
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := zx509.ParseCertificate(der)
			if err != nil {
				b.Fatal(err)
			}
			if rs := zlint.LintCertificateEx(c, reg); rs.ErrorsPresent || rs.FatalsPresent {
				b.Fatal("lint errors")
			}
		}
	})
}

// BenchmarkZcryptoParse isolates the zcrypto parse inside the lint step.
func BenchmarkZcryptoParse(b *testing.B) {
	der := lintBenchDER(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := zx509.ParseCertificate(der); err != nil {
				b.Fatal(err)
			}
		}
	})
}
