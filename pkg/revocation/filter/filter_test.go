package filter

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"os/exec"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

type pki struct {
	root      *x509.Certificate
	roots     *x509.CertPool
	signer    crypto.Signer
	chain     [][]byte
	deviceKey crypto.Signer
	device    []byte            // a certificate under the same root without documentSigning
	inter     *x509.Certificate // the issuing CA of the signer and the device
	interKey  crypto.Signer
	// A second CA under the root (a site CA, say), a device certificate it issued, and a filter signer it
	// certified: the tests revoke it.
	other            *x509.Certificate
	otherKey         crypto.Signer
	otherLeaf        *x509.Certificate
	otherSigner      crypto.Signer
	otherSignerChain [][]byte
}

func newCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ik, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, NotBefore: now.AddDate(-1, 0, 0),
		NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil, &rk.PublicKey, rk)
	inter := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test issuing"}, NotBefore: now.AddDate(-1, 0, 0),
		NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, root, &ik.PublicKey, rk)
	signer := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "test filter signer"}, NotBefore: now.AddDate(0, -1, 0),
		NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature, UnknownExtKeyUsage: []asn1.ObjectIdentifier{OIDDocumentSigning}}, inter, &sk.PublicKey, ik)
	dk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	device := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: "DEMO-00000001"}, NotBefore: now.AddDate(0, -1, 0),
		NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, inter, &dk.PublicKey, ik)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	ok, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "test site"}, NotBefore: now.AddDate(-1, 0, 0),
		NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, root, &ok.PublicKey, rk)
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherLeaf := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(6), Subject: pkix.Name{CommonName: "DEMO-00000002"}, NotBefore: now.AddDate(0, -1, 0),
		NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, other, &lk.PublicKey, ok)
	osk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherSigner := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "test site filter signer"}, NotBefore: now.AddDate(0, -1, 0),
		NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature, UnknownExtKeyUsage: []asn1.ObjectIdentifier{OIDDocumentSigning}}, other, &osk.PublicKey, ok)
	return &pki{root: root, roots: pool, signer: sk, chain: [][]byte{signer.Raw, inter.Raw}, deviceKey: dk, device: device.Raw, inter: inter, interKey: ik,
		other: other, otherKey: ok, otherLeaf: otherLeaf, otherSigner: osk, otherSignerChain: [][]byte{otherSigner.Raw, other.Raw}}
}

// fleet is n random 16-byte serials (as issuer.NewSerial makes them), the first r of them revoked.
func fleet(t testing.TB, n, r int) (revoked, valid [][]byte) {
	t.Helper()
	buf := make([]byte, 16*n)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	all := make([][]byte, n)
	for i := range all {
		s := buf[16*i : 16*i+16]
		s[0] = s[0]&0x3f | 0x40
		all[i] = s
	}
	return all[:r], all[r:]
}

func source(revoked, valid [][]byte) Source {
	return Source{Revoked: revoked, ValidCount: uint64(len(valid)), Valid: func(yield func([]byte) error) error {
		for _, s := range valid {
			if err := yield(s); err != nil {
				return err
			}
		}
		return nil
	}}
}

func (p *pki) opts(version uint64) BuildOptions {
	return BuildOptions{Environment: "dev", Scope: "demo-implant", Version: version, IssuedAt: now, NextUpdate: now.Add(24 * time.Hour), Signer: p.signer, Chain: p.chain}
}

func (p *pki) vopts() VerifyOptions {
	return VerifyOptions{Roots: p.roots, Environment: "dev", Now: now.Add(time.Hour)}
}

// TestExactOverFleet checks every serial of a generated fleet, revoked and not, against the filter, for
// several revocation ratios including none and all.
func TestExactOverFleet(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct{ n, r int }{{200000, 2000}, {50000, 5000}, {10000, 0}, {3000, 3000}, {1, 1}, {20000, 1}} {
		revoked, valid := fleet(t, tc.n, tc.r)
		data, st, err := Build(source(revoked, valid), p.opts(1))
		if err != nil {
			t.Fatalf("n=%d r=%d: %v", tc.n, tc.r, err)
		}
		f, err := Verify(data, p.vopts())
		if err != nil {
			t.Fatalf("n=%d r=%d: verify: %v", tc.n, tc.r, err)
		}
		for _, s := range revoked {
			if !f.RevokedBytes(s) || !f.Revoked(new(big.Int).SetBytes(s)) {
				t.Fatalf("n=%d r=%d: revoked serial %x answers not revoked", tc.n, tc.r, s)
			}
		}
		for _, s := range valid {
			if f.RevokedBytes(s) {
				t.Fatalf("n=%d r=%d: valid serial %x answers revoked", tc.n, tc.r, s)
			}
		}
		if f.Certificates() != uint64(tc.n) || f.RevokedCount() != uint64(tc.r) || st.SizeBits != f.SizeBits() {
			t.Fatalf("counts %d/%d, size %d/%d", f.Certificates(), f.RevokedCount(), st.SizeBits, f.SizeBits())
		}
		t.Logf("n=%d r=%d: k=%d, %d bits (%.3f x bound), file %d bytes, %d attempts", tc.n, tc.r, st.K, st.SizeBits, st.Ratio, st.FileBytes, st.Attempts)
		// Sizes: binary fuse tables need more room at small sizes (the reference size factor is 1.30 for 2,000
		// keys, 1.12 for 100,000), so the 1.2x target applies at the scale (BenchmarkBuild10M);
		// here the bound is a sanity check that k was chosen well.
		if tc.r >= 2000 && tc.r*10 <= tc.n && st.Ratio > 1.45 {
			t.Errorf("n=%d r=%d: %.3f x the information bound, want <= 1.45 at this size", tc.n, tc.r, st.Ratio)
		}
	}
}

func TestBadFilters(t *testing.T) {
	p := newPKI(t)
	revoked, valid := fleet(t, 5000, 50)
	data, _, err := Build(source(revoked, valid), p.opts(7))
	if err != nil {
		t.Fatal(err)
	}
	other := newPKI(t)
	otherRoots := other.vopts()
	flip := func(i int) []byte {
		b := append([]byte(nil), data...)
		b[i] ^= 0x01
		return b
	}
	deviceSigned, _, err := Build(source(revoked, valid), BuildOptions{Environment: "dev", Version: 1, IssuedAt: now, NextUpdate: now.Add(time.Hour),
		Signer: p.deviceKey, Chain: [][]byte{p.device, p.chain[1]}})
	if err != nil {
		t.Fatal(err)
	}
	vo := p.vopts()
	for _, tc := range []struct {
		name string
		data []byte
		opts VerifyOptions
		want error
		msg  string
	}{
		{"bad signature: table byte flipped", flip(155), vo, ErrSignature, "altered"},
		{"bad signature: header byte flipped", flip(60), vo, ErrSignature, "altered"},
		{"other root", data, otherRoots, ErrSignature, "does not chain"},
		{"signed by a device certificate", deviceSigned, vo, ErrSignature, "not a filter signer"},
		{"expired", data, VerifyOptions{Roots: p.roots, Environment: "dev", Now: now.Add(25 * time.Hour)}, ErrExpired, "expired"},
		{"from the future", data, VerifyOptions{Roots: p.roots, Environment: "dev", Now: now.Add(-time.Hour)}, ErrExpired, "check the clock"},
		{"other environment", data, VerifyOptions{Roots: p.roots, Environment: "production", Now: now}, ErrEnvironment, `"dev", expected "production"`},
		{"other product", data, VerifyOptions{Roots: p.roots, Environment: "dev", Scope: "pacemaker-x1", Now: now}, ErrEnvironment, "pacemaker-x1"},
		{"truncated", data[:len(data)-1], vo, ErrMalformed, "truncated"},
		{"truncated header", data[:20], vo, ErrMalformed, "truncated"},
		{"trailing data", append(append([]byte(nil), data...), 0), vo, ErrMalformed, "trailing"},
		{"not a filter", []byte("-----BEGIN CERTIFICATE-----"), vo, ErrMalformed, "magic"},
		{"empty", nil, vo, ErrMalformed, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.data, tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	// Every truncation fails, never panics.
	for i := 0; i < len(data); i += 7 {
		if _, err := Verify(data[:i], vo); err == nil {
			t.Fatalf("truncated to %d bytes: verified", i)
		}
	}
}

func TestDelta(t *testing.T) {
	p := newPKI(t)
	revoked, valid := fleet(t, 20000, 200)
	data, _, err := Build(source(revoked, valid), p.opts(1))
	if err != nil {
		t.Fatal(err)
	}
	base, err := Verify(data, p.vopts())
	if err != nil {
		t.Fatal(err)
	}
	// After the base: valid[0] revoked, revoked[0] released from hold, and 5000 new certificates issued.
	_, newCerts := fleet(t, 5000, 0)
	var corr []Correction
	corr = append(corr, Correction{valid[0], true}, Correction{revoked[0], false})
	for _, s := range newCerts {
		if base.RevokedBytes(s) {
			corr = append(corr, Correction{s, false})
		}
	}
	t.Logf("delta: %d corrections (of which %d for new certificates the base misreports)", len(corr), len(corr)-2)
	o := p.opts(2)
	o.IssuedAt = now.Add(time.Hour)
	d, err := BuildDelta(base, corr, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) > 2000 {
		t.Errorf("delta of %d corrections is %d bytes", len(corr), len(d))
	}
	vo := p.vopts()
	vo.Now = now.Add(2 * time.Hour)
	f, err := base.ApplyDelta(d, vo)
	if err != nil {
		t.Fatal(err)
	}
	if !f.RevokedBytes(valid[0]) || f.RevokedBytes(revoked[0]) || !f.RevokedBytes(revoked[1]) || f.RevokedBytes(valid[1]) || f.Version() != 2 {
		t.Fatal("delta not applied")
	}
	for _, s := range newCerts {
		if f.RevokedBytes(s) {
			t.Fatalf("new certificate %x answers revoked", s)
		}
	}
	// A delta for another base is refused.
	data2, _, err := Build(source(revoked, valid), p.opts(1))
	if err != nil {
		t.Fatal(err)
	}
	other, err := Verify(data2, p.vopts())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.ApplyDelta(d, vo); !errors.Is(err, ErrBase) {
		t.Fatalf("delta applied to another base of the same version: %v", err)
	}
	if _, err := Verify(d, vo); !errors.Is(err, ErrMalformed) {
		t.Fatalf("delta accepted as a full filter: %v", err)
	}
}

// TestStandardLibraryOnly enforces that this package, which device and app software import, depends on the
// Go standard library only.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "github.com/keyward/keyward/pkg/revocation/filter" {
			t.Errorf("non-standard dependency %s", dep)
		}
	}
}

func FuzzVerify(f *testing.F) {
	p := newPKI(f)
	revoked, valid := fleet(f, 300, 10)
	data, _, err := Build(source(revoked, valid), p.opts(1))
	if err != nil {
		f.Fatal(err)
	}
	base, _ := Verify(data, p.vopts())
	d, err := BuildDelta(base, []Correction{{valid[0], true}}, p.opts(2))
	if err != nil {
		f.Fatal(err)
	}
	// Format 2 with revoked issuers listed, full and delta; and the format-1 fixture.
	o := p.opts(3)
	o.RevokedIssuers = [][32]byte{sha256.Sum256(p.other.RawSubjectPublicKeyInfo), sha256.Sum256([]byte("a"))}
	withIssuers, _, err := Build(source(revoked, valid), o)
	if err != nil {
		f.Fatal(err)
	}
	o.Version = 4
	dIssuers, err := BuildDelta(base, []Correction{{valid[1], true}}, o)
	if err != nil {
		f.Fatal(err)
	}
	fx := loadV1(f)
	for _, seed := range [][]byte{data, d, data[:100], withIssuers, dIssuers, fx.full, fx.delta} {
		f.Add(seed)
	}
	device, _ := x509.ParseCertificate(p.device)
	chain := []*x509.Certificate{p.otherLeaf, p.other, p.root}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The structural parser sees every byte; Verify must fail cleanly on anything but the originals.
		if _, err := parse(b); err == nil {
			_, _ = Verify(b, p.vopts())
		}
		if fl, err := Verify(b, p.vopts()); err == nil {
			fl.RevokedBytes([]byte{1, 2, 3})
			_ = fl.CheckChain(chain)
			for _, k := range fl.RevokedIssuers() {
				if !fl.IssuerRevoked(k) {
					t.Fatalf("listed issuer %x answers not revoked", k)
				}
			}
		}
		if fl, err := base.ApplyDelta(b, p.vopts()); err == nil {
			_ = fl.CheckChain([]*x509.Certificate{device, p.inter, p.root})
		}
		_, _ = Verify(b, fx.vopts(time.Hour))
	})
}

func BenchmarkLookup(b *testing.B) {
	p := newPKI(b)
	revoked, valid := fleet(b, 1000000, 10000)
	data, _, err := Build(source(revoked, valid), p.opts(1))
	if err != nil {
		b.Fatal(err)
	}
	f, err := Verify(data, p.vopts())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := valid[i%len(valid)]
		if f.RevokedBytes(s) {
			b.Fatal("wrong answer")
		}
	}
}

// BenchmarkBuild10M builds the target filter: 10 million certificates, 100,000 revoked. It reports
// the size against the information bound. Run it alone: go test -run x -bench Build10M -benchtime 1x.
func BenchmarkBuild10M(b *testing.B) {
	p := newPKI(b)
	revoked, valid := fleet(b, 10000000, 100000)
	b.ResetTimer()
	var st *Stats
	for i := 0; i < b.N; i++ {
		var err error
		if _, st, err = Build(source(revoked, valid), p.opts(1)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.SizeBits)/8, "bytes")
	b.ReportMetric(st.Ratio, "x_bound")
}
