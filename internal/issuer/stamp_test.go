package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/profile"
)

// subjectCSR is the request a factory station makes for a device: a common name and a key, nothing else.
func subjectCSR(cn string, pub crypto.PublicKey) *x509.CertificateRequest {
	return &x509.CertificateRequest{PublicKey: pub, Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidAttrCommonName, Value: cn}}}}
}

// profileTemplate is the TemplateFunc of profile p at a fixed time, as a batch uses it; edit, if not nil,
// changes every template (to make profiles that cannot be stamped).
func profileTemplate(p *profile.Profile, role string, issuer *x509.Certificate, now time.Time, edit func(*x509.Certificate)) TemplateFunc {
	return func(serial *big.Int, cn string, pub crypto.PublicKey) (*x509.Certificate, error) {
		t, err := p.Template(&profile.Request{CSR: subjectCSR(cn, pub), Role: role}, serial, now, issuer)
		if err == nil && edit != nil {
			edit(t)
		}
		return t, err
	}
}

func profileCheck(p *profile.Profile, role string) SubjectCheck {
	return func(cn string, pub crypto.PublicKey) error {
		return p.CheckRequest(&profile.Request{CSR: subjectCSR(cn, pub), Role: role})
	}
}

// randomString returns n characters drawn from alphabet with crypto/rand.
func randomString(t testing.TB, alphabet string, n int) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			t.Fatal(err)
		}
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}

func implantCN(t testing.TB) string { return "DEMO-" + randomString(t, "0123456789", 8) }
func gatewayCN(t testing.TB) string {
	return "GW-" + randomString(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", 10)
}

// stampFixture is an issuer with a certificate issued through the full path and the stamp made from it.
type stampFixture struct {
	pki    *testPKI
	tmpl   TemplateFunc
	maxDER int
	head   *x509.Certificate
	stamp  *Stamp
}

// newStamp issues the first certificate (cn, key) through Prepare and Issue and makes a stamp from it.
func newStamp(t testing.TB, pki *testPKI, tf TemplateFunc, check SubjectCheck, maxDER int, cn string, key crypto.Signer, probeCN string) (*stampFixture, error) {
	t.Helper()
	tmpl, err := tf(serial(t), cn, key.Public())
	if err != nil {
		t.Fatalf("template for %q: %v", cn, err)
	}
	p, err := pki.iss.Prepare(tmpl, key.Public(), MaxDERSize(maxDER))
	if err != nil {
		t.Fatalf("Prepare %q: %v", cn, err)
	}
	der, err := pki.iss.Issue(context.Background(), p)
	if err != nil {
		t.Fatalf("Issue %q: %v", cn, err)
	}
	s, err := pki.iss.NewStamp(p, der, StampConfig{Template: tf, Check: check, ProbeCN: probeCN, MaxDERSize: maxDER})
	return &stampFixture{pki: pki, tmpl: tf, maxDER: maxDER, head: mustParse(t, der), stamp: s}, err
}

// fullTBS is the TBSCertificate the full path (template, Prepare with lint) builds for the inputs.
func (f *stampFixture) fullTBS(t testing.TB, s *big.Int, cn string, pub crypto.PublicKey) []byte {
	t.Helper()
	tmpl, err := f.tmpl(s, cn, pub)
	if err != nil {
		t.Fatalf("template for %q: %v", cn, err)
	}
	p, err := f.pki.iss.Prepare(tmpl, pub, MaxDERSize(f.maxDER))
	if err != nil {
		t.Fatalf("Prepare %q: %v", cn, err)
	}
	return p.TBS()
}

// TestStampMatchesFullPath is the differential test: for many random (serial, common name, key), the stamped
// certificate's TBSCertificate is byte for byte the one the full path builds and lints, the stamped
// certificate passes the issuer's own lint with the same findings, its signature verifies, it chains to the
// root, and OpenSSL reads it.
func TestStampMatchesFullPath(t *testing.T) {
	profiles := defaults(t)
	imp, gw := profiles["implant-identity"], profiles["gateway-identity"]
	rsaKey := func() crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	p256 := func(t testing.TB) crypto.Signer { return pkitest.ECKey(t, elliptic.P256()) }
	p384 := func(t testing.TB) crypto.Signer { return pkitest.ECKey(t, elliptic.P384()) }
	ed := func(t testing.TB) crypto.Signer { return pkitest.Ed25519Key(t) }
	fixedSAN := func(c *x509.Certificate) { c.DNSNames = []string{"ward-7.gateways.example.com"} }
	tests := []struct {
		name   string
		prof   *profile.Profile
		role   string
		ca     crypto.Signer
		key    func(testing.TB) crypto.Signer
		cn     func(testing.TB) string
		edit   func(*x509.Certificate)
		eku    x509.ExtKeyUsage
		maxDER int
	}{
		{"implant, P-256 CA", imp, "factory-station", pkitest.ECKey(t, elliptic.P256()), p256, implantCN, nil, x509.ExtKeyUsageClientAuth, imp.MaxDERSize},
		{"implant, Ed25519 CA", imp, "factory-station", pkitest.Ed25519Key(t), p256, implantCN, nil, x509.ExtKeyUsageClientAuth, imp.MaxDERSize},
		{"gateway P-256 key, P-256 CA", gw, "admin", pkitest.ECKey(t, elliptic.P256()), p256, gatewayCN, nil, x509.ExtKeyUsageServerAuth, gw.MaxDERSize},
		{"gateway P-384 key, P-384 CA", gw, "admin", pkitest.ECKey(t, elliptic.P384()), p384, gatewayCN, nil, x509.ExtKeyUsageClientAuth, gw.MaxDERSize},
		{"gateway Ed25519 key, Ed25519 CA", gw, "admin", pkitest.Ed25519Key(t), ed, gatewayCN, nil, x509.ExtKeyUsageClientAuth, gw.MaxDERSize},
		{"gateway P-256 key, RSA CA", gw, "admin", rsaKey(), p256, gatewayCN, nil, x509.ExtKeyUsageClientAuth, gw.MaxDERSize},
		{"gateway with a fixed SAN", gw, "admin", pkitest.ECKey(t, elliptic.P256()), p256, gatewayCN, fixedSAN, x509.ExtKeyUsageServerAuth, gw.MaxDERSize},
	}
	n := 40
	if testing.Short() {
		n = 8
	}
	openssl, _ := exec.LookPath("openssl")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pki := newPKI(t, tc.ca, tc.ca)
			tf := profileTemplate(tc.prof, tc.role, pki.inter, time.Now(), tc.edit)
			f, err := newStamp(t, pki, tf, profileCheck(tc.prof, tc.role), tc.maxDER, tc.cn(t), tc.key(t), tc.cn(t))
			if err != nil {
				t.Fatalf("NewStamp: %v", err)
			}
			if (tc.prof.IncludeSKI) != (f.stamp.l.ski.n == 20) {
				t.Fatalf("profile include_ski %v, stamp locates a %d-byte key identifier", tc.prof.IncludeSKI, f.stamp.l.ski.n)
			}
			for i := range n {
				s, cn, key := serial(t), tc.cn(t), tc.key(t)
				der, err := f.stamp.Issue(ctx, s, cn, key.Public())
				if err != nil {
					t.Fatalf("stamp %d (%q): %v", i, cn, err)
				}
				cert := mustParse(t, der)
				if want := f.fullTBS(t, s, cn, key.Public()); !bytes.Equal(cert.RawTBSCertificate, want) {
					t.Fatalf("stamp %d (%q): TBSCertificate differs from the full path's\nstamped %x\nfull    %x", i, cn, cert.RawTBSCertificate, want)
				}
				if cert.Subject.CommonName != cn || cert.SerialNumber.Cmp(s) != 0 || !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
					t.Fatalf("stamp %d: CN %q serial %x; want %q %x and the subject key", i, cert.Subject.CommonName, cert.SerialNumber, cn, s)
				}
				if tc.prof.IncludeSKI {
					if ski, _ := profile.SubjectKeyID(key.Public()); !bytes.Equal(cert.SubjectKeyId, ski) {
						t.Fatalf("stamp %d: SKI %x, want %x", i, cert.SubjectKeyId, ski)
					}
				}
				if err := cert.CheckSignatureFrom(pki.inter); err != nil {
					t.Fatalf("stamp %d: signature: %v", i, err)
				}
				warnings, err := pki.iss.linter.check(der, false)
				if err != nil {
					t.Fatalf("stamp %d: lint: %v", i, err)
				}
				if !sameLints(warnings, f.stamp.Warnings()) {
					t.Fatalf("stamp %d: lint warnings %v; the stamp's %v", i, warnings, f.stamp.Warnings())
				}
				if len(der) > f.stamp.MaxSize() || len(der) > tc.maxDER {
					t.Fatalf("stamp %d: %d bytes; bound %d, profile limit %d", i, len(der), f.stamp.MaxSize(), tc.maxDER)
				}
				pki.verify(t, cert, tc.eku)
				if i == 0 && openssl != "" {
					path := filepath.Join(t.TempDir(), "stamped.der")
					if err := os.WriteFile(path, der, 0o600); err != nil {
						t.Fatal(err)
					}
					out, err := exec.Command(openssl, "x509", "-inform", "DER", "-in", path, "-noout", "-text").CombinedOutput()
					if err != nil || !strings.Contains(string(out), cn) {
						t.Fatalf("openssl x509 -text: %v\n%s", err, out)
					}
				}
			}
		})
	}
	if openssl == "" {
		t.Log("openssl not in PATH: stamped certificates were checked with Go's parser only")
	}
}

func sameLints(a, b []Finding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Lint != b[i].Lint {
			return false
		}
	}
	return true
}

// TestStampRefusesInputs: an input that does not fit the stamp is refused with ErrNotStampable, naming it,
// and nothing is signed; what the profile refuses is refused as the profile says.
func TestStampRefusesInputs(t *testing.T) {
	profiles := defaults(t)
	gw, imp := profiles["gateway-identity"], profiles["implant-identity"]
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	now := time.Now()
	gwStamp, err := newStamp(t, pki, profileTemplate(gw, "admin", pki.inter, now, nil), profileCheck(gw, "admin"), gw.MaxDERSize,
		"GW-ABCDEFGHIJ", pkitest.ECKey(t, elliptic.P256()), gatewayCN(t))
	if err != nil {
		t.Fatal(err)
	}
	// A stamp whose subject check lets everything through, to reach the stamp's own encoding checks.
	anyStamp, err := newStamp(t, pki, profileTemplate(imp, "admin", pki.inter, now, nil), func(string, crypto.PublicKey) error { return nil }, imp.MaxDERSize,
		"DEMO-00000001", pkitest.ECKey(t, elliptic.P256()), "DEMO-00000002")
	if err != nil {
		t.Fatal(err)
	}
	sixteen := serial(t)
	topBit := new(big.Int).Lsh(big.NewInt(1), 127)
	short := big.NewInt(0x4000_0000_0000_0001)
	tests := []struct {
		name    string
		stamp   *Stamp
		serial  *big.Int
		cn      string
		pub     crypto.PublicKey
		stampEr bool   // ErrNotStampable
		want    string // in the message
	}{
		{"shorter common name", gwStamp.stamp, sixteen, "GW-ABCDE", &pkitest.ECKey(t, elliptic.P256()).PublicKey, true, `common name "GW-ABCDE" encodes as a 10-byte PrintableString; the stamp's is a 15-byte PrintableString`},
		{"longer common name", gwStamp.stamp, sixteen, "GW-ABCDEFGHIJK", &pkitest.ECKey(t, elliptic.P256()).PublicKey, true, "16-byte PrintableString"},
		{"another string type", anyStamp.stamp, sixteen, "DEMO-0000000*", &pkitest.ECKey(t, elliptic.P256()).PublicKey, true, "15-byte UTF8String; the stamp's is a 15-byte PrintableString"},
		{"P-384 key", gwStamp.stamp, sixteen, "GW-KLMNOPQRST", &pkitest.ECKey(t, elliptic.P384()).PublicKey, true, "subject key ECDSA P-384 has a 120-byte SubjectPublicKeyInfo; the stamp's is 91 bytes"},
		{"Ed25519 key", gwStamp.stamp, sixteen, "GW-KLMNOPQRST", pkitest.Ed25519Key(t).Public(), true, "subject key Ed25519"},
		{"serial with the top bit set", gwStamp.stamp, topBit, "GW-KLMNOPQRST", &pkitest.ECKey(t, elliptic.P256()).PublicKey, true, "is 17 octets in DER; the stamp's is 16"},
		{"short serial", gwStamp.stamp, short, "GW-KLMNOPQRST", &pkitest.ECKey(t, elliptic.P256()).PublicKey, true, "is 8 octets"},
		{"zero serial", gwStamp.stamp, big.NewInt(0), "GW-KLMNOPQRST", &pkitest.ECKey(t, elliptic.P256()).PublicKey, false, "must be positive"},
		{"name outside the profile", gwStamp.stamp, sixteen, "XX-KLMNOPQRST", &pkitest.ECKey(t, elliptic.P256()).PublicKey, false, `does not match profile "gateway-identity"`},
		{"key outside the profile", gwStamp.stamp, sixteen, "GW-KLMNOPQRST", &pkitest.ECKey(t, elliptic.P224()).PublicKey, false, "refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := pki.signer.n.Load()
			der, err := tc.stamp.Issue(context.Background(), tc.serial, tc.cn, tc.pub)
			if err == nil || der != nil {
				t.Fatalf("stamped (%d bytes); want a refusal", len(der))
			}
			if errors.Is(err, ErrNotStampable) != tc.stampEr || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want ErrNotStampable %v and %q", err, tc.stampEr, tc.want)
			}
			if pki.signer.n.Load() != before {
				t.Error("a refused input was signed")
			}
		})
	}
}

// TestStampRefusesProfiles: NewStamp refuses, with ErrNotStampable, a certificate whose per-certificate
// values occur elsewhere or are derived in a way it cannot reproduce, and a probe that differs from the full
// path; the caller then issues through Prepare and Issue.
func TestStampRefusesProfiles(t *testing.T) {
	gw := defaults(t)["gateway-identity"]
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	now := time.Now()
	calls := 0
	tests := []struct {
		name    string
		tf      TemplateFunc
		probeCN string
		want    string
	}{
		{"common name verbatim in a SAN", profileTemplate(gw, "admin", pki.inter, now, func(c *x509.Certificate) {
			c.DNSNames = []string{c.Subject.CommonName}
		}), "GW-0000000001", "the common name occurs 2 times"},
		{"common name lower-cased in a SAN", profileTemplate(gw, "admin", pki.inter, now, func(c *x509.Certificate) {
			c.DNSNames = []string{strings.ToLower(c.Subject.CommonName) + ".gateways.example.com"}
		}), "GW-0000000001", "differs from the full path's TBSCertificate"},
		{"SHA-1 key identifier", profileTemplate(gw, "admin", pki.inter, now, func(c *x509.Certificate) {
			spki, _ := x509.MarshalPKIXPublicKey(c.PublicKey)
			h := sha1.Sum(spki)
			c.SubjectKeyId = h[:]
		}), "GW-0000000001", "not RFC 7093 method 1"},
		{"two common names", profileTemplate(gw, "admin", pki.inter, now, func(c *x509.Certificate) {
			c.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidAttrCommonName, Value: c.Subject.CommonName}, {Type: oidAttrCommonName, Value: "GW-SECOND"}}
		}), "GW-0000000001", "the subject has 2 common names"},
		{"a template that ignores the common name", profileTemplate(gw, "admin", pki.inter, now, func(c *x509.Certificate) {
			c.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidAttrCommonName, Value: "GW-FIXED-NAME"}}
		}), "GW-0000000001", "differs from the full path's TBSCertificate"},
		{"a clock that moves between templates", func(s *big.Int, cn string, pub crypto.PublicKey) (*x509.Certificate, error) {
			calls++
			return profileTemplate(gw, "admin", pki.inter, now.Add(time.Duration(calls)*time.Second), nil)(s, cn, pub)
		}, "GW-0000000001", "differs from the full path's TBSCertificate"},
		{"probe named as the certificate", profileTemplate(gw, "admin", pki.inter, now, nil), "GW-ABCDEFGHIJ", "is the stamped certificate's"},
		{"probe the profile refuses", profileTemplate(gw, "admin", pki.inter, now, nil), "XX-0000000001", "probe template"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := newStamp(t, pki, tc.tf, profileCheck(gw, "admin"), gw.MaxDERSize, "GW-ABCDEFGHIJ", pkitest.ECKey(t, elliptic.P256()), tc.probeCN)
			if !errors.Is(err, ErrNotStampable) || !strings.Contains(err.Error(), tc.want) || f.stamp != nil {
				t.Fatalf("NewStamp: %v; want ErrNotStampable with %q", err, tc.want)
			}
			t.Logf("refused: %v", err)
		})
	}

	// Misuse is an error too, but not "issue through the full path".
	other := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	k := pkitest.ECKey(t, elliptic.P256())
	tmpl, _ := profileTemplate(gw, "admin", pki.inter, now, nil)(serial(t), "GW-ABCDEFGHIJ", k.Public())
	p, err := pki.iss.Prepare(tmpl, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.iss.Issue(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	cfg := StampConfig{Template: profileTemplate(gw, "admin", pki.inter, now, nil), Check: profileCheck(gw, "admin"), ProbeCN: "GW-0000000001"}
	if _, err := other.iss.NewStamp(p, der, cfg); err == nil || errors.Is(err, ErrNotStampable) {
		t.Errorf("stamp from another issuer's certificate: %v", err)
	}
	p2, _ := pki.iss.Prepare(tmpl, k.Public())
	if _, err := pki.iss.NewStamp(p2, der[:len(der)-1], cfg); err == nil {
		t.Error("stamp from a truncated certificate")
	}
	tmpl.SerialNumber = serial(t)
	p3, _ := pki.iss.Prepare(tmpl, k.Public())
	if _, err := pki.iss.NewStamp(p3, der, cfg); err == nil || !strings.Contains(err.Error(), "not the one prepared") {
		t.Errorf("stamp from a prepared certificate that was not issued: %v", err)
	}
}

// TestStampFaultySigner: a stamped signature that does not verify under the CA certificate is never
// returned, as with Issue.
func TestStampFaultySigner(t *testing.T) {
	imp := defaults(t)["implant-identity"]
	root, inter := pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256())
	pki := newPKI(t, root, inter)
	for _, mode := range []string{"garbage", "bitflip", "wrong key", "error"} {
		t.Run(mode, func(t *testing.T) {
			fs := &faultySigner{Signer: inter, other: pkitest.ECKey(t, elliptic.P256())}
			iss, err := New(pki.inter, fs)
			if err != nil {
				t.Fatal(err)
			}
			faulty := &testPKI{root: pki.root, inter: pki.inter, iss: iss, signer: &countingSigner{Signer: fs}}
			f, err := newStamp(t, faulty, profileTemplate(imp, "admin", pki.inter, time.Now(), nil), profileCheck(imp, "admin"), imp.MaxDERSize,
				"DEMO-00000001", pkitest.ECKey(t, elliptic.P256()), "DEMO-00000002")
			if err != nil {
				t.Fatal(err)
			}
			fs.mode = mode // the signer fails after the stamp was made
			der, err := f.stamp.Issue(context.Background(), serial(t), "DEMO-00000003", &pkitest.ECKey(t, elliptic.P256()).PublicKey)
			if err == nil || der != nil {
				t.Fatalf("a faulty signer's certificate was returned (%d bytes)", len(der))
			}
			if mode != "error" && !errors.Is(err, ErrBadSignature) {
				t.Errorf("err = %v, want ErrBadSignature", err)
			}
		})
	}
}

// TestStampConcurrent issues from one stamp on many goroutines (run with -race).
func TestStampConcurrent(t *testing.T) {
	imp := defaults(t)["implant-identity"]
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	f, err := newStamp(t, pki, profileTemplate(imp, "factory-station", pki.inter, time.Now(), nil), profileCheck(imp, "factory-station"), imp.MaxDERSize,
		"DEMO-00000001", pkitest.ECKey(t, elliptic.P256()), "DEMO-99999999")
	if err != nil {
		t.Fatal(err)
	}
	head := bytes.Clone(f.stamp.tbs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]bool{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				k := pkitest.ECKey(t, elliptic.P256())
				cn := "DEMO-" + strings.Repeat("0", 5) + string(rune('0'+g)) + string(rune('0'+i)) + "0"
				der, err := f.stamp.Issue(context.Background(), serial(t), cn, &k.PublicKey)
				if err != nil {
					t.Error(err)
					return
				}
				c, err := x509.ParseCertificate(der)
				if err != nil || c.Subject.CommonName != cn || c.CheckSignatureFrom(pki.inter) != nil {
					t.Errorf("%s: %v", cn, err)
					return
				}
				mu.Lock()
				seen[cn] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 80 || !bytes.Equal(head, f.stamp.tbs) {
		t.Errorf("%d distinct certificates; stamp template unchanged %v", len(seen), bytes.Equal(head, f.stamp.tbs))
	}
}

// BenchmarkStamp is stamped issuance of an implant certificate under a P-256 CA (fresh serial, copy, sign,
// signature check, assembly), to compare with BenchmarkCreateCertificateLimit and BenchmarkPrepareIssue.
func BenchmarkStamp(b *testing.B) {
	pki, _, k := benchSetup(b)
	imp := defaults(b)["implant-identity"]
	f, err := newStamp(b, pki, profileTemplate(imp, "factory-station", pki.inter, time.Now(), nil), profileCheck(imp, "factory-station"), imp.MaxDERSize,
		"DEMO-00000001", pkitest.ECKey(b, elliptic.P256()), "DEMO-00000002")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s, err := NewSerial(time.Now())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.stamp.Issue(ctx, s, "DEMO-00000003", &k.PublicKey); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzLocate: the TBSCertificate parser behind NewStamp never panics, and what it locates lies inside its
// input, on any bytes.
func FuzzLocate(f *testing.F) {
	pki := newPKI(f, pkitest.ECKey(f, elliptic.P256()), pkitest.ECKey(f, elliptic.P256()))
	for _, p := range defaults(f) {
		k := pkitest.ECKey(f, elliptic.P256())
		cn := "DEMO-00000001"
		switch p.Name {
		case "gateway-identity":
			cn = "GW-ABCDEFGHIJ"
		case "cloud-service":
			cn = "api.services.example.com"
		}
		tmpl, err := profileTemplate(p, "admin", pki.inter, time.Now(), nil)(serial(f), cn, &k.PublicKey)
		if err != nil {
			f.Fatal(err)
		}
		prep, err := pki.iss.Prepare(tmpl, &k.PublicKey)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(prep.TBS())
	}
	f.Fuzz(func(t *testing.T, tbs []byte) {
		l, err := locate(tbs)
		if err != nil {
			return
		}
		for _, s := range []span{l.serial, l.notBefore, l.notAfter, l.cn, l.spki, l.ski} {
			if s.off < 0 || s.n < 0 || s.off+s.n > len(tbs) {
				t.Fatalf("span %+v outside %d bytes", s, len(tbs))
			}
		}
		for _, s := range []span{l.notBefore, l.notAfter} {
			if s.n < 2 || !isTime(cbasn1.Tag(tbs[s.off])) {
				t.Fatalf("validity bound %x is not a Time element", s.of(tbs))
			}
		}
		if l.key <= 0 || l.key >= l.spki.n {
			t.Fatalf("key offset %d in a %d-byte SubjectPublicKeyInfo", l.key, l.spki.n)
		}
	})
}
