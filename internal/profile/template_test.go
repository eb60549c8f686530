package profile

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/pkg/certpolicy"
)

var testNow = time.Date(2026, 5, 1, 12, 0, 0, 500, time.UTC)

func testCA(t testing.TB, name string, notAfter time.Time, ski []byte) *x509.Certificate {
	t.Helper()
	k := pkitest.ECKey(t, elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             testNow.Add(-24 * time.Hour),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if ski == nil {
		c.SubjectKeyId = nil // Go adds one to CA certificates; drop it to model an issuer without
	}
	return c
}

func TestTemplate(t *testing.T) {
	ps := mustDefaults(t)
	imp, gw := ps["implant-identity"], ps["gateway-identity"]
	ca := testCA(t, "Keyward Dev Implant CA", testNow.AddDate(20, 0, 0), []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4})
	key := pkitest.ECKey(t, elliptic.P256())
	serial := new(big.Int).Lsh(big.NewInt(1), 120)

	req := func(tmpl *x509.CertificateRequest) *Request {
		csr, err := ParseCSR(pkitest.CSRFor(t, key, tmpl))
		if err != nil {
			t.Fatal(err)
		}
		return &Request{CSR: csr, Role: "admin"}
	}

	t.Run("implant", func(t *testing.T) {
		tmpl, err := imp.Template(req(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}), serial, testNow, ca)
		if err != nil {
			t.Fatal(err)
		}
		wantNB := testNow.Truncate(time.Second).Add(-time.Hour)
		if !tmpl.NotBefore.Equal(wantNB) {
			t.Errorf("NotBefore = %v, want %v", tmpl.NotBefore, wantNB)
		}
		if want := wantNB.Add(15*365*24*time.Hour - time.Second); !tmpl.NotAfter.Equal(want) {
			t.Errorf("NotAfter = %v, want %v", tmpl.NotAfter, want)
		}
		if tmpl.Subject.CommonName != "DEMO-00000001" || len(tmpl.Subject.Organization) != 0 || len(tmpl.Subject.ExtraNames) != 0 {
			t.Errorf("Subject = %+v", tmpl.Subject)
		}
		if tmpl.SubjectKeyId != nil {
			t.Errorf("SubjectKeyId = %x, want none (include_ski: false)", tmpl.SubjectKeyId)
		}
		if !bytes.Equal(tmpl.AuthorityKeyId, ca.SubjectKeyId) {
			t.Errorf("AuthorityKeyId = %x, want %x", tmpl.AuthorityKeyId, ca.SubjectKeyId)
		}
		if tmpl.KeyUsage != x509.KeyUsageDigitalSignature || len(tmpl.ExtKeyUsage) != 0 {
			t.Errorf("KeyUsage %v, ExtKeyUsage %v", tmpl.KeyUsage, tmpl.ExtKeyUsage)
		}
		if tmpl.BasicConstraintsValid || tmpl.IsCA {
			t.Error("end-entity template has basic constraints")
		}
		if len(tmpl.CRLDistributionPoints)+len(tmpl.OCSPServer)+len(tmpl.IssuingCertificateURL)+len(tmpl.DNSNames) != 0 {
			t.Errorf("implant template has URLs or SANs: %+v", tmpl)
		}
		if tmpl.SerialNumber.Cmp(serial) != 0 || tmpl.SerialNumber == serial {
			t.Error("serial not copied")
		}
	})

	t.Run("gateway", func(t *testing.T) {
		tmpl, err := gw.Template(req(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "GW-WARD-7"}, DNSNames: []string{"ward-7.gateways.example.com"}}), serial, testNow, ca)
		if err != nil {
			t.Fatal(err)
		}
		id := IssuerID(ca)
		if id != "keyward-dev-implant-ca-deadbeef" {
			t.Errorf("IssuerID = %q", id)
		}
		if len(tmpl.CRLDistributionPoints) != 1 || tmpl.CRLDistributionPoints[0] != "http://127.0.0.1:8080/crl/"+id+".crl" {
			t.Errorf("CRLDistributionPoints = %v", tmpl.CRLDistributionPoints)
		}
		if len(tmpl.OCSPServer) != 1 || tmpl.OCSPServer[0] != "http://127.0.0.1:8080/ocsp" {
			t.Errorf("OCSPServer = %v", tmpl.OCSPServer)
		}
		// RFC 7093 method 1: leftmost 160 bits of SHA-256 over the subjectPublicKey bits (the uncompressed point).
		pt, _ := key.PublicKey.ECDH()
		h := sha256.Sum256(pt.Bytes())
		if !bytes.Equal(tmpl.SubjectKeyId, h[:20]) {
			t.Errorf("SubjectKeyId = %x, want %x", tmpl.SubjectKeyId, h[:20])
		}
		if len(tmpl.DNSNames) != 1 || len(tmpl.ExtKeyUsage) != 2 {
			t.Errorf("DNSNames %v, ExtKeyUsage %v", tmpl.DNSNames, tmpl.ExtKeyUsage)
		}
	})

	implantReq := req(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}})
	errTests := []struct {
		name   string
		p      *Profile
		req    *Request
		serial *big.Int
		now    time.Time
		issuer *x509.Certificate
		want   string
		kind   error
	}{
		{"outlives issuer", imp, implantReq, serial, testNow, testCA(t, "Short CA", testNow.AddDate(10, 0, 0), []byte{1}),
			`certificate would expire 2041-04-27T10:59:59Z, after its issuer "CN=Short CA" (expires 2036-05-01T12:00:00Z); profile "implant-identity" validity is 15y`, ErrIssuer},
		{"issuer without SKI", imp, implantReq, serial, testNow, testCA(t, "No SKI CA", testNow.AddDate(20, 0, 0), nil), "has no subject key identifier", ErrIssuer},
		{"issuer expired", imp, implantReq, serial, testNow.AddDate(21, 0, 0), ca, "is not valid at", ErrIssuer},
		{"zero serial", imp, implantReq, big.NewInt(0), testNow, ca, "serial number must be positive", ErrIssuer},
		{"negative serial", imp, implantReq, big.NewInt(-5), testNow, ca, "serial number must be positive", ErrIssuer},
		{"21-octet serial", imp, implantReq, new(big.Int).Lsh(big.NewInt(1), 159), testNow, ca, "longer than 20 octets", ErrIssuer},
		{"nil issuer", imp, implantReq, serial, testNow, nil, "no issuer", ErrIssuer},
		{"request refused", imp, &Request{CSR: implantReq.CSR, Role: "auditor"}, serial, testNow, ca, "may not request", ErrForbidden},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.p.Template(tc.req, tc.serial, tc.now, tc.issuer)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("err %v is not %v", err, tc.kind)
			}
		})
	}
}

func TestIssuerID(t *testing.T) {
	tests := []struct {
		cn   string
		ski  []byte
		want string
	}{
		{"Keyward dev / pacemaker-x1 Issuing CA", []byte{0xab, 0xcd, 0xef, 0x01, 0x23}, "keyward-dev-pacemaker-x1-issuing-ca-abcdef01"},
		{"", nil, "ca"},
		{"ÄÖÜ", []byte{1}, "ca-01"},
		{strings.Repeat("a", 100), nil, strings.Repeat("a", 48)},
	}
	for _, tc := range tests {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: tc.cn}, SubjectKeyId: tc.ski}
		if got := IssuerID(c); got != tc.want {
			t.Errorf("IssuerID(%q) = %q, want %q", tc.cn, got, tc.want)
		}
	}
}

func TestSubjectKeyIDRejectsUnknownKey(t *testing.T) {
	if _, err := SubjectKeyID("x"); err == nil {
		t.Error("SubjectKeyID accepted a non-key")
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if id, err := SubjectKeyID(&k.PublicKey); err != nil || len(id) != 20 {
		t.Errorf("SubjectKeyID = %x, %v", id, err)
	}
}

// TestValidityAt: the validity ValidityAt gives is the one Template writes, at several times, and its refusals
// are Template's.
func TestValidityAt(t *testing.T) {
	imp := mustDefaults(t)["implant-identity"]
	ca := testCA(t, "Keyward Dev Implant CA", testNow.AddDate(20, 0, 0), []byte{1, 2, 3, 4})
	key := pkitest.ECKey(t, elliptic.P256())
	csr, err := ParseCSR(pkitest.CSRFor(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}))
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{CSR: csr, Role: "admin"}
	for _, at := range []time.Time{testNow, testNow.Add(999 * time.Millisecond), testNow.AddDate(4, 11, 3), testNow.AddDate(5, 0, 1), testNow.Add(-25 * time.Hour)} {
		nb, na, verr := imp.ValidityAt(at, ca)
		tmpl, terr := imp.Template(req, big.NewInt(1), at, ca)
		if (verr == nil) != (terr == nil) || verr != nil && verr.Error() != terr.Error() {
			t.Fatalf("at %s: ValidityAt %v, Template %v", at, verr, terr)
		}
		if verr != nil {
			if !errors.Is(verr, ErrIssuer) {
				t.Fatalf("at %s: %v, want ErrIssuer", at, verr)
			}
			continue
		}
		if nb != tmpl.NotBefore || na != tmpl.NotAfter || nb.Nanosecond() != 0 || na.Sub(nb) != imp.Validity-time.Second {
			t.Fatalf("at %s: ValidityAt %s to %s, Template %s to %s", at, nb, na, tmpl.NotBefore, tmpl.NotAfter)
		}
	}
	if _, _, err := imp.ValidityAt(testNow, nil); !errors.Is(err, ErrIssuer) {
		t.Fatalf("no issuer: %v", err)
	}
}

// TestTemplatePolicies: a certificate carries its profile's role policy under the configured arc; an issuer
// that names policies must name that one; an issuer made before policies (none) is let through.
func TestTemplatePolicies(t *testing.T) {
	ps := mustDefaults(t)
	imp := ps["implant-identity"]
	key := pkitest.ECKey(t, elliptic.P256())
	csr, err := ParseCSR(pkitest.CSRFor(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}))
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{CSR: csr, Role: "admin"}
	serial := big.NewInt(77)
	legacy := testCA(t, "legacy CA", testNow.AddDate(20, 0, 0), []byte{1, 2, 3, 4})
	tmpl, err := imp.Template(req, serial, testNow, legacy)
	if err != nil {
		t.Fatal(err)
	}
	if len(tmpl.Policies) != 1 || tmpl.Policies[0].String() != certpolicy.DefaultArc+".1" {
		t.Fatalf("Policies = %v, want the default arc's device policy", tmpl.Policies)
	}

	own := certpolicy.MustParseArc("1.3.6.1.4.1.99999")
	copyImp := *imp
	copyImp.Arc = own
	withPolicies := func(oids ...x509.OID) *x509.Certificate {
		c := *legacy
		c.Policies = oids
		return &c
	}
	if tmpl, err = copyImp.Template(req, serial, testNow, withPolicies(own.Policies(certpolicy.IssuerRoles(false)...)...)); err != nil {
		t.Fatal(err)
	}
	if tmpl.Policies[0].String() != "1.3.6.1.4.1.99999.1" {
		t.Errorf("Policies = %v under the configured arc", tmpl.Policies)
	}
	if _, err := copyImp.Template(req, serial, testNow, withPolicies(certpolicy.AnyPolicy)); err != nil {
		t.Errorf("anyPolicy issuer refused: %v", err)
	}
	for name, iss := range map[string]*x509.Certificate{
		"station CA":      withPolicies(own.Policies(certpolicy.IssuerRoles(true)...)...),
		"CA of other arc": withPolicies(certpolicy.MustParseArc(certpolicy.DefaultArc).Policies(certpolicy.IssuerRoles(false)...)...),
	} {
		_, err := copyImp.Template(req, serial, testNow, iss)
		if !errors.Is(err, ErrIssuer) || !strings.Contains(err.Error(), "may not issue device certificates") {
			t.Errorf("%s: err = %v, want ErrIssuer", name, err)
		}
	}
	// A profile written before roles: no policy at all.
	noRole := *imp
	noRole.Role = ""
	if tmpl, err = noRole.Template(req, serial, testNow, legacy); err != nil || len(tmpl.Policies) != 0 {
		t.Errorf("profile without role: %v, %v", tmpl.Policies, err)
	}
}
