package profile

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/pkitest"
)

// sanExtension builds a SubjectAltName extension holding one GeneralName of the given context tag.
func sanExtension(t testing.TB, tag cbasn1.Tag, body func(*cryptobyte.Builder)) pkix.Extension {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tag, body)
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: der}
}

func TestCheckRequest(t *testing.T) {
	ps := mustDefaults(t)
	imp, gw := ps["implant-identity"], ps["gateway-identity"]
	p256 := pkitest.ECKey(t, elliptic.P256())
	p384 := pkitest.ECKey(t, elliptic.P384())
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherName := sanExtension(t, cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3})
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte("x@y")) })
		})
	})
	cn := func(s string) pkix.Name { return pkix.Name{CommonName: s} }
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	tests := []struct {
		name    string
		p       *Profile
		key     crypto.Signer
		tmpl    x509.CertificateRequest
		role    string
		want    string // "" = allowed
		kind    error
		exactly bool // want is the whole message
	}{
		{name: "implant ok", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001")}, role: "factory-station"},
		{name: "implant wrong role", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001")}, role: "auditor",
			want: `role "auditor" may not request profile "implant-identity" (allowed roles: admin, ca-officer, factory-station)`, kind: ErrForbidden, exactly: true},
		{name: "implant no role", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001")}, role: "",
			want: `role "" may not request`, kind: ErrForbidden},
		{name: "implant p384", p: imp, key: p384, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001")}, role: "admin",
			want: `CSR key is ecdsa-p384; profile "implant-identity" allows ecdsa-p256`, kind: ErrPolicy, exactly: true},
		{name: "implant rsa", p: imp, key: rsaKey, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001")}, role: "admin",
			want: `CSR key is rsa-2048; profile "implant-identity" allows ecdsa-p256`, kind: ErrPolicy, exactly: true},
		{name: "implant bad cn", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("FOO")}, role: "admin",
			want: `subject CN "FOO" does not match profile "implant-identity" rule ^DEMO-[0-9]{8}$`, kind: ErrPolicy, exactly: true},
		{name: "implant cn with newline", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001\n")}, role: "admin",
			want: "does not match", kind: ErrPolicy},
		{name: "implant cn too long", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn(strings.Repeat("D", 65))}, role: "admin",
			want: "longer than 64 characters", kind: ErrPolicy},
		{name: "implant missing cn", p: imp, key: p256, tmpl: x509.CertificateRequest{}, role: "admin",
			want: `subject CN is required by profile "implant-identity" (rule ^DEMO-[0-9]{8}$)`, kind: ErrPolicy, exactly: true},
		{name: "implant dns san", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001"), DNSNames: []string{"x"}}, role: "admin",
			want: `SAN dns "x" not allowed by profile "implant-identity" (no DNS SANs allowed)`, kind: ErrPolicy, exactly: true},
		{name: "implant ip san", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001"), IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}, role: "admin",
			want: `SAN ip "10.0.0.1" not allowed by profile "implant-identity" (no IP SANs allowed)`, kind: ErrPolicy, exactly: true},
		{name: "implant email san", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001"), EmailAddresses: []string{"a@b.c"}}, role: "admin",
			want: `SAN email "a@b.c" not allowed`, kind: ErrPolicy},
		{name: "implant uri san", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001"), URIs: []*url.URL{mustURL("urn:x:y")}}, role: "admin",
			want: `SAN uri "urn:x:y" not allowed by profile "implant-identity" (no URI SANs allowed)`, kind: ErrPolicy},
		{name: "implant othername san", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: cn("DEMO-00000001"), ExtraExtensions: []pkix.Extension{otherName}}, role: "admin",
			want: `SAN of type otherName is not allowed by profile "implant-identity"`, kind: ErrPolicy},
		{name: "implant extra subject attr", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001", Country: []string{"DE"}}}, role: "admin",
			want: `subject attribute C="DE" is not allowed by profile "implant-identity" (allowed: CN)`, kind: ErrPolicy, exactly: true},
		{name: "implant O", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001", Organization: []string{"Evil"}}}, role: "admin",
			want: `subject attribute O="Evil"`, kind: ErrPolicy},
		{name: "implant two CNs", p: imp, key: p256, tmpl: x509.CertificateRequest{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: oidCommonName, Value: "DEMO-00000001"}, {Type: oidCommonName, Value: "DEMO-00000002"}}}}, role: "admin",
			want: "subject has 2 CNs", kind: ErrPolicy},
		{name: "gateway ok p384", p: gw, key: p384, tmpl: x509.CertificateRequest{Subject: cn("GW-ABCD-1"), DNSNames: []string{"ward-3.gateways.example.com"}}, role: "ca-officer"},
		{name: "gateway ok ed25519 no san", p: gw, key: ed, tmpl: x509.CertificateRequest{Subject: cn("GW-ABCD")}, role: "admin"},
		{name: "gateway bad dns", p: gw, key: p256, tmpl: x509.CertificateRequest{Subject: cn("GW-ABCD"), DNSNames: []string{"evil.example.com"}}, role: "admin",
			want: `SAN dns "evil.example.com" does not match profile "gateway-identity" rule ^[a-z0-9-]+\.gateways\.example\.com$`, kind: ErrPolicy, exactly: true},
		{name: "gateway too many dns", p: gw, key: p256, tmpl: x509.CertificateRequest{Subject: cn("GW-ABCD"), DNSNames: []string{
			"a.gateways.example.com", "b.gateways.example.com", "c.gateways.example.com", "d.gateways.example.com", "e.gateways.example.com"}}, role: "admin",
			want: `CSR has 5 DNS SANs; profile "gateway-identity" allows at most 4`, kind: ErrPolicy, exactly: true},
		{name: "gateway duplicate dns", p: gw, key: p256, tmpl: x509.CertificateRequest{Subject: cn("GW-ABCD"), DNSNames: []string{"a.gateways.example.com", "a.gateways.example.com"}}, role: "admin",
			want: "appears more than once", kind: ErrPolicy},
		{name: "gateway factory station refused", p: gw, key: p256, tmpl: x509.CertificateRequest{Subject: cn("GW-ABCD")}, role: "factory-station",
			want: "may not request", kind: ErrForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := ParseCSR(pkitest.CSRFor(t, tc.key, &tc.tmpl))
			if err != nil {
				t.Fatalf("ParseCSR: %v", err)
			}
			err = tc.p.CheckRequest(&Request{CSR: csr, Role: tc.role})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckRequest: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckRequest allowed it; want %q", tc.want)
			}
			if tc.exactly && err.Error() != tc.want {
				t.Errorf("error\n %q\nwant\n %q", err, tc.want)
			} else if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %v is not %v", err, tc.kind)
			}
		})
	}
	if err := imp.CheckRequest(nil); !errors.Is(err, ErrBadCSR) {
		t.Errorf("CheckRequest(nil) = %v, want ErrBadCSR", err)
	}
}

func TestCheckRequestFixedOrganization(t *testing.T) {
	y := strings.Replace(base, "subject:\n", "subject:\n  organization: Keyward Demo\n", 1)
	p, err := Parse("test-profile", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	k := pkitest.ECKey(t, elliptic.P256())
	for _, tc := range []struct {
		org  []string
		want bool
	}{{nil, true}, {[]string{"Keyward Demo"}, true}, {[]string{"Other"}, false}} {
		csr, _ := ParseCSR(pkitest.CSRFor(t, k, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEV-1", Organization: tc.org}}))
		err := p.CheckRequest(&Request{CSR: csr, Role: "admin"})
		if (err == nil) != tc.want {
			t.Errorf("O=%v: err = %v, want allowed=%v", tc.org, err, tc.want)
		}
	}
}
