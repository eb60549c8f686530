package filter

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
	"slices"
	"strings"
	"testing"
	"time"
)

func spkiHash(c *x509.Certificate) [32]byte { return sha256.Sum256(c.RawSubjectPublicKeyInfo) }

// issuerSection returns the offsets of a format-2 file's revoked-issuer section: [start, end).
func issuerSection(t testing.TB, data []byte) (start, end int) {
	t.Helper()
	r := &reader{data: data}
	r.header()
	start = r.off
	r.issuers()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return start, r.off
}

// resign re-encodes a file with its revoked-issuer section replaced by section (raw bytes, which need not be
// well formed) and signs it again with o's signer and chain: a file the builder would never make, with a
// valid signature, so the structural and semantic checks after the signature are what refuse it.
func resign(t testing.TB, data, section []byte, o BuildOptions) []byte {
	t.Helper()
	p, err := parse(data)
	if err != nil {
		t.Fatal(err)
	}
	start, end := issuerSection(t, data)
	chainLen := 1
	for _, c := range p.chain {
		chainLen += 2 + len(c.Raw)
	}
	var b bytes.Buffer
	b.Write(data[:start])
	b.Write(section)
	b.Write(data[end : len(p.signed)-chainLen])
	out, err := sign(&b, o)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func section(ks ...[32]byte) []byte {
	var b bytes.Buffer
	writeU16(&b, uint16(len(ks)))
	for _, k := range ks {
		b.Write(k[:])
	}
	return b.Bytes()
}

func TestRevokedIssuersRoundTrip(t *testing.T) {
	p := newPKI(t)
	revoked, valid := fleet(t, 5000, 50)
	a, b, c := spkiHash(p.other), sha256.Sum256([]byte("b")), sha256.Sum256([]byte("c"))
	o := p.opts(1)
	o.RevokedIssuers = [][32]byte{c, a, b, a} // any order, repeats collapse
	data, st, err := Build(source(revoked, valid), o)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Verify(data, p.vopts())
	if err != nil {
		t.Fatal(err)
	}
	want := [][32]byte{a, b, c}
	slices.SortFunc(want, func(x, y [32]byte) int { return bytes.Compare(x[:], y[:]) })
	if got := f.RevokedIssuers(); !slices.Equal(got, want) || st.RevokedIssuers != 3 || f.FormatVersion() != 2 {
		t.Fatalf("revoked issuers %x (stats %d, format %d), want %x", got, st.RevokedIssuers, f.FormatVersion(), want)
	}
	for _, k := range want {
		if !f.IssuerRevoked(k) {
			t.Fatalf("%x not revoked", k)
		}
	}
	if f.IssuerRevoked(spkiHash(p.inter)) || f.IssuerRevoked([32]byte{}) {
		t.Fatal("an unlisted issuer answers revoked")
	}
	f.RevokedIssuers()[0][0] ^= 1 // a copy: the filter is not changed through it
	if !f.IssuerRevoked(want[0]) {
		t.Fatal("RevokedIssuers returned the filter's own slice")
	}
	for _, s := range revoked {
		if !f.RevokedBytes(s) {
			t.Fatalf("revoked serial %x answers not revoked", s)
		}
	}
	// Each issuer costs 32 bytes; the section's framing is its 2-byte count, present in every format-2 file.
	start, end := issuerSection(t, data)
	if end-start != 2+32*3 {
		t.Fatalf("issuer section of 3 entries is %d bytes", end-start)
	}
	empty, _, err := Build(source(revoked, valid), p.opts(1))
	if err != nil {
		t.Fatal(err)
	}
	if start, end := issuerSection(t, empty); end-start != 2 {
		t.Fatalf("empty issuer section is %d bytes", end-start)
	}
	if g, err := Verify(empty, p.vopts()); err != nil || len(g.RevokedIssuers()) != 0 || g.IssuerRevoked(a) {
		t.Fatalf("empty list: %v", err)
	}
	t.Logf("file with 3 revoked issuers: %d bytes; without: %d bytes", len(data), len(empty))
}

func TestCheckChain(t *testing.T) {
	p := newPKI(t)
	device, err := x509.ParseCertificate(p.device)
	if err != nil {
		t.Fatal(err)
	}
	// The second device's serial is not revoked; its CA is. The first device's serial is revoked, and so is
	// the serial the active issuing CA's certificate happens to have (a CA certificate's serial means nothing
	// to a filter, which covers what the CAs issued, not the CAs).
	revoked := [][]byte{device.SerialNumber.Bytes(), p.inter.SerialNumber.Bytes()}
	_, valid := fleet(t, 2000, 0)
	valid = append(valid, p.otherLeaf.SerialNumber.Bytes())
	o := p.opts(1)
	o.RevokedIssuers = [][32]byte{spkiHash(p.other)}
	data, _, err := Build(source(revoked, valid), o)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Verify(data, p.vopts())
	if err != nil {
		t.Fatal(err)
	}
	if f.Revoked(p.otherLeaf.SerialNumber) {
		t.Fatal("the leaf under the revoked CA has its own serial revoked: the test would prove nothing")
	}
	// A certificate carrying the revoked CA's key, issued by the active CA (not a CA certificate itself).
	impostor := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: "DEMO-00000003"}, NotBefore: now.AddDate(0, -1, 0),
		NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature}, p.inter, p.otherKey.Public(), p.interKey)
	// The chain x509 itself builds for the leaf under the revoked CA.
	inter := x509.NewCertPool()
	inter.AddCert(p.other)
	chains, err := p.otherLeaf.Verify(x509.VerifyOptions{Roots: p.roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		want  error
		index int
		msg   string
	}{
		{"leaf under the revoked CA, serial not revoked", chains[0], ErrIssuerRevoked, 1, `CA "test site" (chain position 1`},
		{"leaf's own serial revoked", []*x509.Certificate{device, p.inter, p.root}, ErrCertificateRevoked, 0, `"DEMO-00000001" (serial 4) is revoked (revocation filter dev/demo-implant v1)`},
		{"the revoked CA certificate itself", []*x509.Certificate{p.other, p.root}, ErrIssuerRevoked, 0, `CA "test site" (chain position 0`},
		{"anchored at the revoked CA (a pinned intermediate)", []*x509.Certificate{p.otherLeaf, p.other}, ErrIssuerRevoked, 1, "every certificate under it"},
		{"a non-CA certificate with a revoked CA's key", []*x509.Certificate{impostor, p.inter, p.root}, ErrIssuerRevoked, 0, `"DEMO-00000003" carries the key of a revoked CA`},
		{"the revoked issuer wins over a revoked leaf serial", []*x509.Certificate{device, p.other, p.root}, ErrIssuerRevoked, 1, "test site"},
		{"the root alone", []*x509.Certificate{p.root}, nil, 0, ""},
		{"the active CA, whose serial 2 is in the set but not checked", []*x509.Certificate{p.inter, p.root}, nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.CheckChain(tc.chain)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var re *RevokedError
			if !errors.Is(err, tc.want) || !errors.As(err, &re) || re.Index != tc.index || re.Certificate != tc.chain[tc.index] || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v at index %d containing %q", err, tc.want, tc.index, tc.msg)
			}
			if errors.Is(err, ErrIssuerRevoked) && re.SPKISHA256 != spkiHash(p.other) {
				t.Fatalf("listed key %x", re.SPKISHA256)
			}
		})
	}
	if err := f.CheckChain(nil); err == nil {
		t.Fatal("an empty chain passed")
	}
	// A filter without revoked issuers refuses only by serial.
	plain, _, err := Build(source(revoked, valid), p.opts(2))
	if err != nil {
		t.Fatal(err)
	}
	g, _ := Verify(plain, p.vopts())
	if err := g.CheckChain(chains[0]); err != nil {
		t.Fatalf("no issuer listed: %v", err)
	}
}

func TestDeltaRevokesIssuer(t *testing.T) {
	p := newPKI(t)
	revoked, valid := fleet(t, 3000, 30)
	valid = append(valid, p.otherLeaf.SerialNumber.Bytes())
	data, _, err := Build(source(revoked, valid), p.opts(1))
	if err != nil {
		t.Fatal(err)
	}
	base, err := Verify(data, p.vopts())
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{p.otherLeaf, p.other, p.root}
	if err := base.CheckChain(chain); err != nil {
		t.Fatal(err)
	}
	// The site CA is revoked after the base: the delta carries no serial correction, only the issuer.
	o := p.opts(2)
	o.IssuedAt, o.RevokedIssuers = now.Add(time.Hour), [][32]byte{spkiHash(p.other)}
	d, err := BuildDelta(base, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	vo := p.vopts()
	vo.Now = now.Add(2 * time.Hour)
	f, err := base.ApplyDelta(d, vo)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(f.CheckChain(chain), ErrIssuerRevoked) || !f.IssuerRevoked(spkiHash(p.other)) || f.Version() != 2 {
		t.Fatalf("delta did not revoke the issuer: %v", f.CheckChain(chain))
	}
	if base.IssuerRevoked(spkiHash(p.other)) {
		t.Fatal("applying a delta changed its base")
	}
	// The delta's list is complete: a later delta from the same base carries it again, and one that does not
	// list the CA answers without it (the list is replaced, not merged).
	o3 := p.opts(3)
	o3.IssuedAt = now.Add(time.Hour)
	d3, err := BuildDelta(base, []Correction{{valid[0], true}}, o3)
	if err != nil {
		t.Fatal(err)
	}
	g, err := f.ApplyDelta(d3, vo)
	if err != nil {
		t.Fatal(err)
	}
	if g.IssuerRevoked(spkiHash(p.other)) || !g.RevokedBytes(valid[0]) {
		t.Fatal("a delta's list did not replace the previous one")
	}
	// A delta signed under a CA its base lists as revoked is refused: the revoked key may be anyone's now,
	// and must not be able to lift its own revocation. Base: lists the site CA. Delta: signed by the site
	// CA's filter signer, listing nothing.
	ob := p.opts(4)
	ob.RevokedIssuers = [][32]byte{spkiHash(p.other)}
	listing, _, err := Build(source(revoked, valid), ob)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := Verify(listing, p.vopts())
	if err != nil {
		t.Fatal(err)
	}
	forged := p.opts(5)
	forged.IssuedAt, forged.Signer, forged.Chain = now.Add(time.Hour), p.otherSigner, p.otherSignerChain
	fd, err := BuildDelta(lb, nil, forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.ApplyDelta(fd, vo); !errors.Is(err, ErrIssuerRevoked) || !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), `"test site"`) {
		t.Fatalf("delta signed under a revoked CA: %v", err)
	}
	// The same signer's delta applies to a base that does not list the CA: the refusal above is the list's.
	fo, err := BuildDelta(base, nil, forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := base.ApplyDelta(fo, vo); err != nil {
		t.Fatalf("delta by the site CA's signer over a base not listing it: %v", err)
	}
}

func TestSignerUnderRevokedIssuer(t *testing.T) {
	p := newPKI(t)
	revoked, valid := fleet(t, 1000, 10)
	// The builder refuses to sign under a CA it lists.
	o := p.opts(1)
	o.RevokedIssuers = [][32]byte{spkiHash(p.inter)}
	if _, _, err := Build(source(revoked, valid), o); err == nil || !strings.Contains(err.Error(), "outside the revoked CA's subtree") {
		t.Fatalf("built a filter signed under a CA it lists: %v", err)
	}
	// A file that does so anyway (made by hand) is refused by the verifier.
	data, _, err := Build(source(revoked, valid), p.opts(1))
	if err != nil {
		t.Fatal(err)
	}
	self := resign(t, data, section(spkiHash(p.inter)), p.opts(1))
	if _, err := Verify(self, p.vopts()); !errors.Is(err, ErrIssuerRevoked) || !errors.Is(err, ErrSignature) {
		t.Fatalf("a filter signed under a CA it lists: %v", err)
	}
	// A verifier that already knows a CA is revoked refuses a newer filter signed under it.
	vo := p.vopts()
	vo.RevokedIssuers = [][32]byte{sha256.Sum256([]byte("x")), spkiHash(p.inter)}
	if _, err := Verify(data, vo); !errors.Is(err, ErrIssuerRevoked) || !strings.Contains(err.Error(), `"test issuing"`) {
		t.Fatalf("a filter signed under a CA the caller knows revoked: %v", err)
	}
	vo.RevokedIssuers = [][32]byte{spkiHash(p.other)}
	if _, err := Verify(data, vo); err != nil {
		t.Fatalf("a revoked CA outside the signer chain: %v", err)
	}
}

func TestBadIssuerSection(t *testing.T) {
	p := newPKI(t)
	revoked, valid := fleet(t, 2000, 20)
	o := p.opts(1)
	a, b, c := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b")), sha256.Sum256([]byte("c"))
	o.RevokedIssuers = [][32]byte{a, b, c}
	data, _, err := Build(source(revoked, valid), o)
	if err != nil {
		t.Fatal(err)
	}
	start, end := issuerSection(t, data)
	sorted := [][32]byte{a, b, c}
	slices.SortFunc(sorted, func(x, y [32]byte) int { return bytes.Compare(x[:], y[:]) })
	flip := func(i int) []byte {
		d := bytes.Clone(data)
		d[i] ^= 0x01
		return d
	}
	tooMany := make([][32]byte, maxRevokedIssuers+1)
	for i := range tooMany {
		tooMany[i][0], tooMany[i][1] = byte(i>>8), byte(i)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		// The last byte of the last entry: the order is kept, so only the signature catches it.
		{"issuer byte flipped", flip(end - 1), ErrSignature, "altered"},
		{"issuer count byte flipped", flip(start + 1), ErrMalformed, ""},
		{"issuer count beyond the data", resign(t, data, section(sorted...)[:2+32*2], o), ErrMalformed, ""},
		{"signed, but out of order", resign(t, data, section(sorted[1], sorted[0], sorted[2]), o), ErrMalformed, "strictly increasing"},
		{"signed, but repeated", resign(t, data, section(sorted[0], sorted[0], sorted[1]), o), ErrMalformed, "strictly increasing"},
		{"signed, but over the bound", resign(t, data, section(tooMany...), o), ErrMalformed, "exceeds 1024"},
		{"unknown format version", flip(4), ErrMalformed, "format version 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.data, p.vopts())
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	// Every truncation inside and around the section fails cleanly.
	for i := start - 1; i <= end+1; i++ {
		if _, err := Verify(data[:i], p.vopts()); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d bytes: %v", i, err)
		}
	}
	// The builder refuses more than the format holds.
	o.RevokedIssuers = tooMany
	if _, _, err := Build(source(revoked, valid), o); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Fatalf("built with %d revoked issuers: %v", len(tooMany), err)
	}
}

// TestFormat2DeltaOnFormat1Base is the upgrade path: a device holds a full filter made before the upgrade
// (format 1) and receives deltas made after it (format 2), which carry the revoked issuers.
func TestFormat2DeltaOnFormat1Base(t *testing.T) {
	fx := loadV1(t)
	base, err := Verify(fx.full, fx.vopts(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if base.FormatVersion() != 1 || len(base.RevokedIssuers()) != 0 {
		t.Fatalf("format-1 base: format %d, %d revoked issuers", base.FormatVersion(), len(base.RevokedIssuers()))
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	listedKey := sha256.Sum256(mustSPKI(t, k))
	d, err := BuildDelta(base, []Correction{{mustHex(t, v1DeltaRevokes), true}}, BuildOptions{Environment: "dev", Scope: "demo-implant", Version: 3,
		IssuedAt: now.Add(time.Hour), NextUpdate: now.Add(24 * time.Hour), Signer: fx.signer, Chain: fx.chain, RevokedIssuers: [][32]byte{listedKey}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := base.ApplyDelta(d, fx.vopts(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !f.IssuerRevoked(listedKey) || !f.RevokedBytes(mustHex(t, v1DeltaRevokes)) || f.FormatVersion() != 1 {
		t.Fatal("format-2 delta not applied to its format-1 base")
	}
	// The format-1 delta applies as before and lists nothing.
	g, err := base.ApplyDelta(fx.delta, fx.vopts(2*time.Hour))
	if err != nil || len(g.RevokedIssuers()) != 0 {
		t.Fatalf("format-1 delta: %v, %d revoked issuers", err, len(g.RevokedIssuers()))
	}
}

func mustSPKI(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// BenchmarkCheckChain is a device's check of a three-certificate chain against a filter listing a few
// revoked issuers: the SPKI hashing CheckChain adds to a serial lookup.
func BenchmarkCheckChain(b *testing.B) {
	p := newPKI(b)
	revoked, valid := fleet(b, 100000, 1000)
	o := p.opts(1)
	o.RevokedIssuers = [][32]byte{spkiHash(p.other), sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))}
	data, _, err := Build(source(revoked, valid), o)
	if err != nil {
		b.Fatal(err)
	}
	f, err := Verify(data, p.vopts())
	if err != nil {
		b.Fatal(err)
	}
	device, _ := x509.ParseCertificate(p.device)
	chain := []*x509.Certificate{device, p.inter, p.root}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.CheckChain(chain); err != nil {
			b.Fatal(err)
		}
	}
}
