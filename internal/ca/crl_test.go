package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/store"
)

// crlCA is a CA certificate and its key, as Issuer.SignCRL signs with them.
type crlCA struct {
	root   bool
	cert   *x509.Certificate
	signer crypto.Signer
}

// testCA returns a CA with a key of the given kind.
func testCA(t testing.TB, kind string, root bool) *crlCA {
	t.Helper()
	key := pkitest.KeyOf(t, kind)
	return &crlCA{root: root, cert: pkitest.NewRoot(t, "Keyward Test "+kind, key).Cert, signer: key}
}

// CRL extensions as the publisher writes them (RFC 5280 5.2.5, 5.2.6, 5.2.4), so the comparison covers the
// extension list after the AKI and CRL number.
var (
	oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidDeltaCRLIndicator        = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidFreshestCRL              = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidInvalidityDate           = asn1.ObjectIdentifier{2, 5, 29, 24}
)

// freshestCRLValue is CRLDistributionPoints with one fullName URI (RFC 5280 4.2.1.13).
func freshestCRLValue(t testing.TB) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("http://crl.example/crl/test-delta.crl")) })
				})
			})
		})
	})
	v, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func crlExtensions(t testing.TB, ca *crlCA, baseNumber int64) []pkix.Extension {
	t.Helper()
	idp := []byte{0x30, 0x03, 0x81, 0x01, 0xff} // onlyContainsUserCerts
	if ca.root {
		idp = []byte{0x30, 0x03, 0x82, 0x01, 0xff} // onlyContainsCACerts
	}
	exts := []pkix.Extension{{Id: oidIssuingDistributionPoint, Critical: true, Value: idp}}
	if baseNumber == 0 {
		return append(exts, pkix.Extension{Id: oidFreshestCRL, Value: freshestCRLValue(t)})
	}
	v, err := asn1.Marshal(big.NewInt(baseNumber))
	if err != nil {
		t.Fatal(err)
	}
	return append(exts, pkix.Extension{Id: oidDeltaCRLIndicator, Critical: true, Value: v})
}

// referenceCRL signs the same CRL with x509.CreateRevocationList: the reference the streaming encoder must
// agree with.
func referenceCRL(t testing.TB, ca *crlCA, number, baseNumber int64, thisUpdate, nextUpdate time.Time, entries []store.RevocationEntry) []byte {
	t.Helper()
	var list []x509.RevocationListEntry
	for _, e := range entries {
		serial, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			t.Fatalf("bad serial %q", e.Serial)
		}
		entry := x509.RevocationListEntry{SerialNumber: serial, RevocationTime: e.RevokedAt.UTC(), ReasonCode: e.Reason}
		if e.InvalidityDate != nil {
			v, err := asn1.MarshalWithParams(e.InvalidityDate.UTC(), "generalized")
			if err != nil {
				t.Fatal(err)
			}
			entry.ExtraExtensions = []pkix.Extension{{Id: oidInvalidityDate, Value: v}}
		}
		list = append(list, entry)
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{RevokedCertificateEntries: list, Number: big.NewInt(number),
		ThisUpdate: thisUpdate.UTC(), NextUpdate: nextUpdate.UTC(), ExtraExtensions: crlExtensions(t, ca, baseNumber)}, ca.cert, ca.signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// encodeCRL signs entries with the streaming encoder (an entry without a revocation date is revoked at
// thisUpdate, as the publisher does).
func encodeCRL(t testing.TB, ca *crlCA, number, baseNumber int64, thisUpdate, nextUpdate time.Time, entries []store.RevocationEntry) []byte {
	t.Helper()
	var enc CRLEntries
	for _, e := range entries {
		at := thisUpdate
		if e.RevokedAt != nil {
			at = *e.RevokedAt
		}
		if err := enc.Add(e.Serial, at, e.Reason, e.InvalidityDate); err != nil {
			t.Fatal(err)
		}
	}
	var exts [][]byte
	for _, e := range crlExtensions(t, ca, baseNumber) {
		oid, err := asn1.Marshal(e.Id)
		if err != nil {
			t.Fatal(err)
		}
		der, err := ExtensionDER(oid[2:], e.Critical, e.Value)
		if err != nil {
			t.Fatal(err)
		}
		exts = append(exts, der)
	}
	der, err := enc.finish(ca.cert, ca.signer, CRLParams{Number: number, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Extensions: exts})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// compareCRLs checks that got parses, verifies under the CA and says everything want says: the same
// TBSCertList bytes (the signatures differ, ECDSA being randomised), and field by field, every entry and
// extension.
func compareCRLs(t *testing.T, ca *crlCA, got, want []byte) {
	t.Helper()
	g, err := x509.ParseRevocationList(got)
	if err != nil {
		t.Fatalf("encoded CRL does not parse: %v", err)
	}
	if err := g.CheckSignatureFrom(ca.cert); err != nil {
		t.Fatalf("encoded CRL signature: %v", err)
	}
	w, err := x509.ParseRevocationList(want)
	if err != nil {
		t.Fatal(err)
	}
	if g.SignatureAlgorithm != w.SignatureAlgorithm {
		t.Errorf("signature algorithm %v, reference %v", g.SignatureAlgorithm, w.SignatureAlgorithm)
	}
	if !bytes.Equal(g.RawIssuer, w.RawIssuer) || !g.ThisUpdate.Equal(w.ThisUpdate) || !g.NextUpdate.Equal(w.NextUpdate) ||
		g.Number.Cmp(w.Number) != 0 || !bytes.Equal(g.AuthorityKeyId, w.AuthorityKeyId) {
		t.Errorf("header differs:\n got %x %v %v %v %x\nwant %x %v %v %v %x", g.RawIssuer, g.ThisUpdate, g.NextUpdate, g.Number, g.AuthorityKeyId,
			w.RawIssuer, w.ThisUpdate, w.NextUpdate, w.Number, w.AuthorityKeyId)
	}
	if len(g.Extensions) != len(w.Extensions) {
		t.Fatalf("%d extensions, reference %d", len(g.Extensions), len(w.Extensions))
	}
	for i := range g.Extensions {
		ge, we := g.Extensions[i], w.Extensions[i]
		if !ge.Id.Equal(we.Id) || ge.Critical != we.Critical || !bytes.Equal(ge.Value, we.Value) {
			t.Errorf("extension %d: got %v %v %x, reference %v %v %x", i, ge.Id, ge.Critical, ge.Value, we.Id, we.Critical, we.Value)
		}
	}
	if len(g.RevokedCertificateEntries) != len(w.RevokedCertificateEntries) {
		t.Fatalf("%d entries, reference %d", len(g.RevokedCertificateEntries), len(w.RevokedCertificateEntries))
	}
	for i := range g.RevokedCertificateEntries {
		ge, we := g.RevokedCertificateEntries[i], w.RevokedCertificateEntries[i]
		if ge.SerialNumber.Cmp(we.SerialNumber) != 0 || !ge.RevocationTime.Equal(we.RevocationTime) || ge.ReasonCode != we.ReasonCode ||
			!bytes.Equal(ge.Raw, we.Raw) || len(ge.Extensions) != len(we.Extensions) {
			t.Fatalf("entry %d: got %x %v %d %x, reference %x %v %d %x", i, ge.SerialNumber, ge.RevocationTime, ge.ReasonCode, ge.Raw,
				we.SerialNumber, we.RevocationTime, we.ReasonCode, we.Raw)
		}
		for j := range ge.Extensions {
			if !ge.Extensions[j].Id.Equal(we.Extensions[j].Id) || !bytes.Equal(ge.Extensions[j].Value, we.Extensions[j].Value) ||
				ge.Extensions[j].Critical != we.Extensions[j].Critical {
				t.Fatalf("entry %d extension %d: got %+v, reference %+v", i, j, ge.Extensions[j], we.Extensions[j])
			}
		}
	}
	if !bytes.Equal(g.RawTBSRevocationList, w.RawTBSRevocationList) {
		t.Fatalf("TBSCertList differs from x509.CreateRevocationList's:\n got %x\nwant %x", g.RawTBSRevocationList, w.RawTBSRevocationList)
	}
}

func tp(t time.Time) *time.Time { return &t }

// TestCRLEncoderMatchesX509 compares a few hundred entries, of every reason and with and without invalidity
// dates, complete and delta, against x509.CreateRevocationList for each supported CA key type.
func TestCRLEncoderMatchesX509(t *testing.T) {
	this := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	rng := mrand.New(mrand.NewPCG(1, 2))
	reasons := []int{0, 1, 2, 3, 4, 5, 6, 8, 9, 10}
	var entries []store.RevocationEntry
	for i := range 300 {
		b := make([]byte, 16)
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		if i%3 == 0 {
			b[0] |= 0x80 // needs a sign octet
		}
		at := this.Add(-time.Duration(rng.Int64N(int64(400*24*time.Hour))) - time.Duration(rng.IntN(1e6))*time.Microsecond)
		e := store.RevocationEntry{Serial: hex.EncodeToString(b), Reason: reasons[i%len(reasons)], RevokedAt: &at}
		if i%4 == 1 {
			e.InvalidityDate = tp(at.Add(-time.Duration(rng.IntN(1e9)) * time.Millisecond))
		}
		entries = append(entries, e)
	}
	for _, kind := range []string{"P-256", "P-384", "P-521", "Ed25519", "RSA-2048"} {
		for _, root := range []bool{false, true} {
			ca := testCA(t, kind, root)
			t.Run(fmt.Sprintf("%s/root=%v/complete", kind, root), func(t *testing.T) {
				got := encodeCRL(t, ca, 42, 0, this, this.Add(48*time.Hour), entries)
				compareCRLs(t, ca, got, referenceCRL(t, ca, 42, 0, this, this.Add(48*time.Hour), entries))
			})
			t.Run(fmt.Sprintf("%s/root=%v/delta", kind, root), func(t *testing.T) {
				got := encodeCRL(t, ca, 43, 42, this, this.Add(2*time.Hour), entries[:17])
				compareCRLs(t, ca, got, referenceCRL(t, ca, 43, 42, this, this.Add(2*time.Hour), entries[:17]))
			})
		}
	}
}

// TestCRLEncoderEdgeCases covers the encodings that a random fleet rarely shows.
func TestCRLEncoderEdgeCases(t *testing.T) {
	ca := testCA(t, "P-256", false)
	this := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	at := time.Date(2029, 12, 31, 23, 59, 59, 999999999, time.UTC)
	one := func(serial string, reason int, inval *time.Time) []store.RevocationEntry {
		return []store.RevocationEntry{{Serial: serial, Reason: reason, RevokedAt: &at, InvalidityDate: inval}}
	}
	cases := []struct {
		name       string
		entries    []store.RevocationEntry
		this, next time.Time
	}{
		{"no entries", nil, this, this.Add(time.Hour)},
		{"high bit serial", one("80", 1, nil), this, this.Add(time.Hour)},
		{"high bit 20 octets", one(strings.Repeat("ff", 20), 1, nil), this, this.Add(time.Hour)},
		{"leading zero octets", one("000000ab", 1, nil), this, this.Add(time.Hour)},
		{"leading zeros high bit", one("0000ff01", 1, nil), this, this.Add(time.Hour)},
		{"odd length", one("abc", 1, nil), this, this.Add(time.Hour)},
		{"uppercase", one("4ABCDEF0", 1, nil), this, this.Add(time.Hour)},
		{"serial zero", one("0", 1, nil), this, this.Add(time.Hour)},
		{"serial one", one("01", 0, nil), this, this.Add(time.Hour)},
		{"invalidity date", one("4a", 1, tp(at.Add(-36*time.Hour))), this, this.Add(time.Hour)},
		{"invalidity date unspecified reason", one("4a", 0, tp(at.Add(-36*time.Hour))), this, this.Add(time.Hour)},
		{"invalidity date after 2049", one("4a", 1, tp(time.Date(2051, 1, 1, 0, 0, 0, 0, time.UTC))), this, this.Add(time.Hour)},
		{"nextUpdate in 2050 (GeneralizedTime)", one("4a", 4, nil), time.Date(2049, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"revoked before 1950", []store.RevocationEntry{{Serial: "4a", Reason: 5, RevokedAt: tp(time.Date(1949, 12, 31, 23, 59, 59, 0, time.UTC))}}, this, this.Add(time.Hour)},
		{"revoked in another zone", []store.RevocationEntry{{Serial: "4a", Reason: 5, RevokedAt: tp(time.Date(2030, 1, 1, 1, 0, 0, 0, time.FixedZone("CET", 3600)))}}, this, this.Add(time.Hour)},
		{"revocation date missing (now)", []store.RevocationEntry{{Serial: "4a", Reason: 5}}, this, this.Add(time.Hour)},
	}
	for _, reason := range []int{0, 1, 2, 3, 4, 5, 6, 8, 9, 10} {
		cases = append(cases, struct {
			name       string
			entries    []store.RevocationEntry
			this, next time.Time
		}{fmt.Sprintf("reason %d", reason), one("7f01", reason, nil), this, this.Add(time.Hour)})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := make([]store.RevocationEntry, len(tc.entries))
			copy(ref, tc.entries)
			for i := range ref {
				if ref[i].RevokedAt == nil {
					ref[i].RevokedAt = &tc.this
				}
			}
			got := encodeCRL(t, ca, 7, 0, tc.this, tc.next, tc.entries)
			compareCRLs(t, ca, got, referenceCRL(t, ca, 7, 0, tc.this, tc.next, ref))
		})
	}
}

// TestCRLEncoderRejects checks that inputs the encoder cannot represent faithfully are errors, not CRLs.
func TestCRLEncoderRejects(t *testing.T) {
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		serial string
		reason int
		at     time.Time
	}{
		{"empty serial", "", 1, at},
		{"not hexadecimal", "4g", 1, at},
		{"negative", "-4a", 1, at},
		{"reason 7", "4a", 7, at},
		{"reason 11", "4a", 11, at},
		{"negative reason", "4a", -1, at},
		{"year 10000", "4a", 1, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var enc CRLEntries
			if err := enc.Add(tc.serial, tc.at, tc.reason, nil); err == nil {
				t.Fatal("accepted")
			}
			if enc.n != 0 || len(enc.entries) != 0 {
				t.Fatal("a rejected entry left bytes behind")
			}
		})
	}
	ca := testCA(t, "P-256", false)
	cert := *ca.cert
	cert.KeyUsage = x509.KeyUsageCertSign
	var enc CRLEntries
	if _, err := enc.finish(&cert, ca.signer, CRLParams{Number: 1, ThisUpdate: at, NextUpdate: at.Add(time.Hour)}); err == nil {
		t.Fatal("signed with a CA certificate lacking cRLSign")
	}
	if _, err := enc.finish(ca.cert, ca.signer, CRLParams{Number: 1, ThisUpdate: at, NextUpdate: at.Add(-time.Hour)}); err == nil {
		t.Fatal("signed a CRL whose nextUpdate is before thisUpdate")
	}
	other := testCA(t, "P-256", false)
	if _, err := enc.finish(ca.cert, other.signer, CRLParams{Number: 1, ThisUpdate: at, NextUpdate: at.Add(time.Hour)}); err == nil {
		t.Fatal("signed with a key that is not the CA certificate's")
	}
}

// BenchmarkCRLEncode encodes and signs a CRL of 100,000 entries, and the same with x509.CreateRevocationList.
func BenchmarkCRLEncode(b *testing.B) {
	ca := testCA(b, "P-256", false)
	now := time.Now().Truncate(time.Second)
	entries := make([]store.RevocationEntry, 100000)
	for i := range entries {
		sb := make([]byte, 16)
		rand.Read(sb)
		sb[0] = sb[0]&0x3f | 0x40
		entries[i] = store.RevocationEntry{Serial: hex.EncodeToString(sb), Reason: 5, RevokedAt: &now}
	}
	b.Run("stream", func(b *testing.B) {
		for b.Loop() {
			encodeCRL(b, ca, 1, 0, now, now.Add(time.Hour), entries)
		}
	})
	b.Run("x509", func(b *testing.B) {
		for b.Loop() {
			referenceCRL(b, ca, 1, 0, now, now.Add(time.Hour), entries)
		}
	})
}

// encodeCRLBody signs entries as a large CRL is signed: the encoder writes them out in pieces of about
// flush octets (CRLEntries.WriteTo), and the CRL is signed over the body that reads them back.
func encodeCRLBody(t testing.TB, ca *crlCA, number, baseNumber int64, thisUpdate, nextUpdate time.Time, entries []store.RevocationEntry, flush int) *SignedCRL {
	t.Helper()
	var enc CRLEntries
	var spool bytes.Buffer
	for _, e := range entries {
		at := thisUpdate
		if e.RevokedAt != nil {
			at = *e.RevokedAt
		}
		if err := enc.Add(e.Serial, at, e.Reason, e.InvalidityDate); err != nil {
			t.Fatal(err)
		}
		if enc.Buffered() >= flush {
			if _, err := enc.WriteTo(&spool); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := enc.WriteTo(&spool); err != nil {
		t.Fatal(err)
	}
	if enc.Len() != len(entries) || enc.Buffered() != 0 {
		t.Fatalf("encoder holds %d entries, %d octets buffered; want %d, 0", enc.Len(), enc.Buffered(), len(entries))
	}
	var exts [][]byte
	for _, e := range crlExtensions(t, ca, baseNumber) {
		oid, err := asn1.Marshal(e.Id)
		if err != nil {
			t.Fatal(err)
		}
		der, err := ExtensionDER(oid[2:], e.Critical, e.Value)
		if err != nil {
			t.Fatal(err)
		}
		exts = append(exts, der)
	}
	body := CRLBody{Size: int64(spool.Len()), Open: func() (io.Reader, error) { return bytes.NewReader(spool.Bytes()), nil }}
	crl, err := signCRLBody(ca.cert, ca.signer, CRLParams{Number: number, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Extensions: exts}, body)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// TestCRLBodyMatchesX509: a CRL signed over entries written out in pieces is, byte for byte up to the
// signature, the one x509.CreateRevocationList makes of the same entries, and the one SignCRL makes of them
// in memory; with a deterministic signature (Ed25519, RSA PKCS #1 v1.5) all of it.
func TestCRLBodyMatchesX509(t *testing.T) {
	this := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	rng := mrand.New(mrand.NewPCG(3, 4))
	var entries []store.RevocationEntry
	for i := range 4000 {
		b := make([]byte, 1+rng.IntN(20))
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		at := this.Add(-time.Duration(rng.Int64N(int64(400 * 24 * time.Hour))))
		e := store.RevocationEntry{Serial: hex.EncodeToString(b), Reason: []int{0, 1, 4, 5, 6, 9}[i%6], RevokedAt: &at}
		if i%7 == 2 {
			e.InvalidityDate = tp(at.Add(-time.Hour))
		}
		entries = append(entries, e)
	}
	for _, kind := range []string{"P-256", "P-384", "Ed25519", "RSA-2048"} {
		ca := testCA(t, kind, false)
		for _, flush := range []int{1, 100, 64 << 10, 1 << 30} {
			t.Run(fmt.Sprintf("%s/flush=%d", kind, flush), func(t *testing.T) {
				crl := encodeCRLBody(t, ca, 42, 0, this, this.Add(48*time.Hour), entries, flush)
				var out bytes.Buffer
				n, err := crl.WriteTo(&out)
				if err != nil || n != crl.Size() || int64(out.Len()) != crl.Size() {
					t.Fatalf("WriteTo: %d octets of %d, %v", n, crl.Size(), err)
				}
				compareCRLs(t, ca, out.Bytes(), referenceCRL(t, ca, 42, 0, this, this.Add(48*time.Hour), entries))
				whole := encodeCRL(t, ca, 42, 0, this, this.Add(48*time.Hour), entries)
				if kind == "Ed25519" || kind == "RSA-2048" {
					if !bytes.Equal(out.Bytes(), whole) {
						t.Fatal("the CRL signed over a body differs from the one signed in memory")
					}
				}
			})
		}
	}
	// No entries: revokedCertificates is absent (RFC 5280 5.1.2.6), as in memory.
	ca := testCA(t, "Ed25519", false)
	empty := encodeCRLBody(t, ca, 1, 0, this, this.Add(time.Hour), nil, 1)
	der, err := empty.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(der, encodeCRL(t, ca, 1, 0, this, this.Add(time.Hour), nil)) {
		t.Fatal("an empty CRL signed over a body differs from the one signed in memory")
	}
}

// TestCRLBodyMisuse: entries that were written out cannot be signed as if they were in memory, and a body
// whose length changes between signing and writing out fails rather than publish a CRL whose signature
// covers other bytes.
func TestCRLBodyMisuse(t *testing.T) {
	ca := testCA(t, "P-256", false)
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var enc CRLEntries
	if err := enc.Add("4a", at, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := enc.WriteTo(io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := enc.finish(ca.cert, ca.signer, CRLParams{Number: 1, ThisUpdate: at, NextUpdate: at.Add(time.Hour)}); err == nil {
		t.Fatal("signed in memory the entries that were written out")
	}
	data := []byte{0x30, 0x03, 0x02, 0x01, 0x4a}
	body := CRLBody{Size: int64(len(data)), Open: func() (io.Reader, error) { return bytes.NewReader(data), nil }}
	crl, err := signCRLBody(ca.cert, ca.signer, CRLParams{Number: 1, ThisUpdate: at, NextUpdate: at.Add(time.Hour)}, body)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, 0x30, 0x00)
	if _, err := crl.WriteTo(io.Discard); err == nil {
		t.Fatal("wrote out a CRL whose entries grew after it was signed")
	}
	short := CRLBody{Size: 9, Open: func() (io.Reader, error) { return bytes.NewReader(data[:5]), nil }}
	if _, err := signCRLBody(ca.cert, ca.signer, CRLParams{Number: 1, ThisUpdate: at, NextUpdate: at.Add(time.Hour)}, short); err == nil {
		t.Fatal("signed a body shorter than its size")
	}
}

// TestDERHeader64 checks the definite lengths of elements past 4 GiB (a CRL of a hundred million entries)
// against X.690 8.1.3.5: the fewest octets, big-endian, after 0x80|count.
func TestDERHeader64(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want []byte
	}{
		{0x7f, []byte{0x30, 0x7f}},
		{0xffffffff, []byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff}},
		{1 << 32, []byte{0x30, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00}},
		{0x0123456789ab, []byte{0x30, 0x86, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab}},
	} {
		got := appendDERHeader64(nil, 0x30, tc.n)
		if !bytes.Equal(got, tc.want) || derHeaderLen64(tc.n) != len(tc.want) {
			t.Errorf("length %#x: %x (%d octets), want %x", tc.n, got, derHeaderLen64(tc.n), tc.want)
		}
	}
}
