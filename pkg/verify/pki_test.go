package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/revocation/filter"
)

// testPKI is a Keyward-shaped hierarchy made in the test: a root (no policies), an issuing CA (device,
// gateway, service, operator policies), a station CA (station policy, clientAuth only), a CA made before
// policies (none), and a filter signer.
type testPKI struct {
	now                            time.Time
	arc                            certpolicy.Arc
	root, issuing, station, legacy *x509.Certificate
	rootKey, issKey, stKey, legKey crypto.Signer
	filterSigner                   *x509.Certificate
	filterKey                      crypto.Signer
	serial                         int64
}

func key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (p *testPKI) sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	p.serial++
	tmpl.SerialNumber = big.NewInt(p.serial)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *testPKI) ca(t testing.TB, cn string, parent *x509.Certificate, parentKey crypto.Signer, policies []x509.OID, eku []x509.ExtKeyUsage) (*x509.Certificate, crypto.Signer) {
	k := key(t)
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, Policies: policies, ExtKeyUsage: eku}
	if parent == nil {
		return p.sign(t, tmpl, tmpl, &k.PublicKey, k), k
	}
	tmpl.MaxPathLenZero = true
	return p.sign(t, tmpl, parent, &k.PublicKey, parentKey), k
}

func newTestPKI(t testing.TB) *testPKI {
	p := &testPKI{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), arc: certpolicy.MustParseArc(certpolicy.DefaultArc)}
	p.root, p.rootKey = p.ca(t, "Keyward dev Root CA", nil, nil, nil, nil)
	p.issuing, p.issKey = p.ca(t, "demo-implant dev CA", p.root, p.rootKey, p.arc.Policies(certpolicy.IssuerRoles(false)...), nil)
	p.station, p.stKey = p.ca(t, "dev factory stations CA", p.root, p.rootKey, p.arc.Policies(certpolicy.IssuerRoles(true)...), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	p.legacy, p.legKey = p.ca(t, "old-line dev CA", p.root, p.rootKey, nil, nil)
	fk := key(t)
	p.filterKey = fk
	p.filterSigner = p.sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "dev revocation filter"}, NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, UnknownExtKeyUsage: []asn1.ObjectIdentifier{filter.OIDDocumentSigning}}, p.root, &fk.PublicKey, p.rootKey)
	return p
}

// leafOpt changes a leaf template.
type leafOpt func(*x509.Certificate)

func withEKU(u ...x509.ExtKeyUsage) leafOpt { return func(c *x509.Certificate) { c.ExtKeyUsage = u } }
func withPolicies(o ...x509.OID) leafOpt    { return func(c *x509.Certificate) { c.Policies = o } }
func withValidity(nb, na time.Time) leafOpt {
	return func(c *x509.Certificate) { c.NotBefore, c.NotAfter = nb, na }
}
func withDNS(n ...string) leafOpt { return func(c *x509.Certificate) { c.DNSNames = n } }
func withURLs(ocsp, crl string) leafOpt {
	return func(c *x509.Certificate) {
		if ocsp != "" {
			c.OCSPServer = []string{ocsp}
		}
		if crl != "" {
			c.CRLDistributionPoints = []string{crl}
		}
	}
}

// leaf issues a certificate for role under ca (the issuing CA unless the role is station), as Keyward's
// profiles would: the role's policy, the profile's usages.
func (p *testPKI) leaf(t testing.TB, cn string, role certpolicy.Role, opts ...leafOpt) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	parent, pk := p.issuing, p.issKey
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature}
	switch role {
	case certpolicy.Station:
		parent, pk = p.station, p.stKey
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case certpolicy.Gateway, certpolicy.Service:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	if role != "" {
		tmpl.Policies = []x509.OID{p.arc.Policy(role)}
	}
	for _, o := range opts {
		o(tmpl)
	}
	k := key(t)
	return p.sign(t, tmpl, parent, &k.PublicKey, pk), k
}

// under issues tmpl-like leaf under an explicit CA.
func (p *testPKI) under(t testing.TB, ca *x509.Certificate, caKey crypto.Signer, cn string, policies []x509.OID, eku ...x509.ExtKeyUsage) *x509.Certificate {
	k := key(t)
	return p.sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: eku, Policies: policies}, ca, &k.PublicKey, caKey)
}

// buildFilter signs a filter listing revoked serials (and revoked CAs), covering valid ones, at p.now.
func (p *testPKI) buildFilter(t testing.TB, revoked, valid []*x509.Certificate, revokedCAs ...*x509.Certificate) *filter.Filter {
	t.Helper()
	var rs [][]byte
	for _, c := range revoked {
		rs = append(rs, c.SerialNumber.Bytes())
	}
	src := filter.Source{Revoked: rs, ValidCount: uint64(len(valid)), Valid: func(yield func([]byte) error) error {
		for _, c := range valid {
			if err := yield(c.SerialNumber.Bytes()); err != nil {
				return err
			}
		}
		return nil
	}}
	opts := filter.BuildOptions{Environment: "dev", Version: 1, IssuedAt: p.now.Add(-time.Minute), NextUpdate: p.now.Add(24 * time.Hour),
		Signer: p.filterKey, Chain: [][]byte{p.filterSigner.Raw}}
	for _, c := range revokedCAs {
		opts.RevokedIssuers = append(opts.RevokedIssuers, sha256Of(c.RawSubjectPublicKeyInfo))
	}
	data, _, err := filter.Build(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.root)
	f, err := filter.Verify(data, filter.VerifyOptions{Roots: pool, Environment: "dev", Now: p.now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }
