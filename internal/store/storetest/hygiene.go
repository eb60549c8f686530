package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// RunHygiene runs the conformance tests of the fleet key-hygiene scan's records (store.HygieneStore and
// store.HygieneTx). open must return a new, empty, migrated store for each call.
func RunHygiene(t *testing.T, open func(t *testing.T) Backend) {
	runCases(t, open, []testCase{
		{"CSRSignatures", testCSRSignatures},
		{"WalkCertificates", testWalkCertificates},
		{"ImportedCertificates", testImportedCertificates},
		{"SharedKeys", testSharedKeys},
	})
}

func csrSig(t *testing.T, r []byte) *store.CSRSignature {
	return &store.CSRSignature{Algorithm: 10, Digest: randBytes(t, 32), R: r, S: randBytes(t, 32)}
}

// testCSRSignatures: a certificate's CSR signature is stored with it, plainly or pipelined; one whose
// certificate is refused (a duplicate key) is not; and CSRNonceCollisions returns exactly the certificates
// whose R another signature shares.
func testCSRSignatures(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	shared := randBytes(t, 32)
	a := newCert(t, "dev/demo-implant", "CN=PX1-1", nil)
	a.CSR = csrSig(t, shared)
	b := newCert(t, "dev/demo-implant", "CN=PX1-1", a.SPKISHA256) // the same device, the same key, again
	b.CSR = csrSig(t, shared)
	honest := newCert(t, "dev/demo-implant", "CN=PX1-2", nil)
	honest.CSR = csrSig(t, randBytes(t, 32))
	none := newCert(t, "dev/demo-implant", "CN=PX1-3", nil) // issued without a kept signature (an RSA CSR)
	tx(t, s, func(tx store.Tx) error {
		for _, c := range []*store.Certificate{a, honest, none} {
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
		}
		return tx.Savepoint(ctx, func() error {
			tx.Pipeline()
			return tx.InsertCertificate(ctx, b)
		})
	})
	// A refused certificate leaves no signature behind: the key is another subject's.
	refused := newCert(t, "dev/demo-implant", "CN=PX1-9", honest.SPKISHA256)
	refused.CSR = csrSig(t, shared)
	for _, pipelined := range []bool{false, true} {
		err := s.Tx(ctx, func(tx store.Tx) error {
			return tx.Savepoint(ctx, func() error {
				if pipelined {
					tx.Pipeline()
				}
				return tx.InsertCertificate(ctx, refused)
			})
		})
		wantErr(t, "insert a refused certificate with its CSR signature", err, store.ErrDuplicateKey)
	}
	got, err := s.CSRNonceCollisions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []*store.Certificate{a, b}
	if bytes.Compare([]byte(b.Serial), []byte(a.Serial)) < 0 {
		want = []*store.Certificate{b, a}
	}
	if len(got) != 2 {
		t.Fatalf("CSRNonceCollisions: %d certificates, want the 2 sharing R", len(got))
	}
	for i, w := range want {
		g := got[i]
		if g.Cert.Serial != w.Serial || g.Cert.Subject != w.Subject || !bytes.Equal(g.Cert.DER, w.DER) || !bytes.Equal(g.Cert.SPKISHA256, w.SPKISHA256) {
			t.Errorf("collision %d: certificate %s %q, want %s %q", i, g.Cert.Serial, g.Cert.Subject, w.Serial, w.Subject)
		}
		mustEqual(t, "collision signature", g.Sig, *w.CSR)
	}
}

// testWalkCertificates walks more than a page of certificates, each once, in serial order.
func testWalkCertificates(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	const n = 2050
	want := map[string]bool{}
	tx(t, s, func(tx store.Tx) error {
		for range n {
			c := newCert(t, "dev/demo-implant", "CN=PX1-"+NewSerial(t)[:8], nil)
			want[c.Serial] = true
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	prev, seen := "", 0
	err := s.WalkCertificates(ctx, func(c *store.Certificate) error {
		if c.Serial <= prev || !want[c.Serial] || len(c.DER) == 0 {
			t.Fatalf("walk: certificate %s after %s (known %v)", c.Serial, prev, want[c.Serial])
		}
		prev = c.Serial
		seen++
		return nil
	})
	if err != nil || seen != n {
		t.Fatalf("walk: %d certificates, %v; want %d", seen, err, n)
	}
	stop := errors.New("stop")
	if err := s.WalkCertificates(ctx, func(*store.Certificate) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("walk stopped by fn: %v, want fn's error unwrapped", err)
	}
}

func imported(t *testing.T, env, subject string, spki []byte) *store.ImportedCertificate {
	der := randBytes(t, 280)
	h := sha256.Sum256(der)
	if spki == nil {
		spki = randBytes(t, 32)
	}
	return &store.ImportedCertificate{Environment: env, ProductLine: "demo-implant", DERSHA256: h[:], SPKISHA256: spki, Subject: subject,
		Serial: NewSerial(t), Issuer: "CN=Legacy CA", NotAfter: us(t0.AddDate(3, 0, 0)), Source: "legacy.pem#2", DER: der, ImportedAt: us(t0)}
}

// testImportedCertificates: imported certificates are stored once per environment, walked by environment and
// found by key; a second import of the same certificate is ErrExists and the transaction carries on.
func testImportedCertificates(t *testing.T, s Backend) {
	ctx := context.Background()
	x := imported(t, "dev", "CN=PX1-7", nil)
	y := imported(t, "dev", "CN=PX1-8", x.SPKISHA256)
	other := imported(t, "production", "CN=PX1-7", x.SPKISHA256)
	tx(t, s, func(tx store.Tx) error {
		for _, c := range []*store.ImportedCertificate{x, y, other} {
			if err := tx.InsertImportedCertificate(ctx, c); err != nil {
				return err
			}
		}
		wantErr(t, "import the same certificate again", tx.InsertImportedCertificate(ctx, x), store.ErrExists)
		return tx.InsertImportedCertificate(ctx, imported(t, "dev", "CN=PX1-9", nil))
	})
	var dev []*store.ImportedCertificate
	if err := s.WalkImportedCertificates(ctx, "dev", func(c *store.ImportedCertificate) error { dev = append(dev, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(dev) != 3 {
		t.Fatalf("walk dev: %d imported certificates, want 3", len(dev))
	}
	for i := 1; i < len(dev); i++ {
		if bytes.Compare(dev[i-1].DERSHA256, dev[i].DERSHA256) >= 0 {
			t.Fatal("walk dev: not in DER hash order")
		}
	}
	for _, c := range dev {
		if bytes.Equal(c.DERSHA256, x.DERSHA256) {
			mustEqual(t, "imported certificate", c, x)
		}
	}
	byKey, err := s.ImportedBySPKI(ctx, x.SPKISHA256)
	if err != nil || len(byKey) != 3 {
		t.Fatalf("ImportedBySPKI: %d, %v; want 3 (two environments)", len(byKey), err)
	}
}

// testSharedKeys: a key is shared when certificates issued here or imported bind it to two subjects; the same
// subject certified twice with its key (a renewal) is not.
func testSharedKeys(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	renewed := newCert(t, "dev/demo-implant", "CN=PX1-1", nil)
	again := newCert(t, "dev/demo-implant", "CN=PX1-1", renewed.SPKISHA256)
	again.CreatedAt = us(t0.Add(time.Hour))
	legacy := newCert(t, "dev/demo-implant", "CN=PX1-2", nil)
	// The same key as legacy, imported from another system for another device; one imported key on two
	// imported devices; and renewed's key imported for its own subject, which shares nothing.
	imports := []*store.ImportedCertificate{imported(t, "dev", "CN=PX1-3", legacy.SPKISHA256),
		imported(t, "dev", "CN=OLD-1", nil), imported(t, "dev", "CN=PX1-1", renewed.SPKISHA256)}
	imports = append(imports, imported(t, "dev", "CN=OLD-2", imports[1].SPKISHA256))
	tx(t, s, func(tx store.Tx) error {
		for _, c := range []*store.Certificate{renewed, again, legacy} {
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
		}
		for _, c := range imports {
			if err := tx.InsertImportedCertificate(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	want := [][]byte{legacy.SPKISHA256, imports[1].SPKISHA256}
	if bytes.Compare(want[0], want[1]) > 0 {
		want[0], want[1] = want[1], want[0]
	}
	got, err := s.SharedKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "shared keys", got, want)
}
