package multi_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/keystoretest"
	"github.com/keyward/keyward/internal/keystore/multi"
	"github.com/keyward/keyward/internal/keystore/pkcs11"
	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
	"github.com/keyward/keyward/internal/keystore/soft"
)

func TestMain(m *testing.M) { pkcs11test.Main(m) }

func newSoft(t testing.TB) *soft.Store {
	t.Helper()
	s, err := soft.Create(filepath.Join(t.TempDir(), "keys"), []byte("multi test passphrase"), &soft.Options{ScryptN: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newPKCS11(t testing.TB) (*pkcs11.Store, string) {
	t.Helper()
	cfg := pkcs11test.NewToken(t)
	s, err := pkcs11.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, cfg
}

func TestConformanceSoftDefault(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) keystore.Keystore {
		r := multi.New(newSoft(t))
		t.Cleanup(func() { r.Close() })
		return r
	})
}

func TestConformancePKCS11Default(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) keystore.Keystore {
		p, _ := newPKCS11(t)
		r := multi.New(p, newSoft(t))
		t.Cleanup(func() { r.Close() })
		return r
	})
}

func TestRouting(t *testing.T) {
	ctx := context.Background()
	sw := newSoft(t)
	hsm, cfg := newPKCS11(t)
	r := multi.New(hsm, sw)
	defer r.Close()

	if r.Location() != keystore.LocationPKCS11 {
		t.Errorf("Location() = %q; want the default backend's, pkcs11", r.Location())
	}
	caKey, err := r.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP384, "issuing CA")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(caKey.URI, "pkcs11:") {
		t.Errorf("Generate went to %s; want the default (PKCS#11) backend", caKey.URI)
	}
	b, err := r.Backend("software")
	if err != nil || b != keystore.Keystore(sw) {
		t.Fatalf(`Backend("software") = %v, %v`, b, err)
	}
	devKey, err := b.Generate(ctx, keystore.PurposeDeviceIdentity, keystore.Ed25519, "dev device")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []keystore.Key{caKey, devKey} {
		if !r.Handles(k.URI) {
			t.Errorf("Handles(%s) = false", k.URI)
		}
		sg, err := r.Signer(ctx, k.URI, k.Purpose)
		if err != nil {
			t.Fatalf("Signer(%s): %v", k.URI, err)
		}
		keystoretest.SignAndVerify(t, sg, k.Public, k.Algorithm)
		if _, err := r.Signer(ctx, k.URI, keystore.PurposeFirmwareSigning); !errors.Is(err, keystore.ErrWrongPurpose) {
			t.Errorf("Signer(%s, firmware-signing): %v; want ErrWrongPurpose", k.URI, err)
		}
	}

	for spec, want := range map[string]keystore.Keystore{
		"pkcs11":   hsm,
		"software": sw,
		cfg:        hsm,
		caKey.URI:  hsm,
		devKey.URI: sw,
	} {
		if got, err := r.Backend(spec); err != nil || got != want {
			t.Errorf("Backend(%.40q) = %v, %v; want %v", spec, got, err, want)
		}
	}
	_, err = r.Backend("pkcs11:token=other?module-path=/x.so&pin-value=S3CR3T")
	if !errors.Is(err, keystore.ErrBackend) || strings.Contains(err.Error(), "S3CR3T") {
		t.Errorf("Backend(other token): %v; want ErrBackend without the PIN", err)
	}

	if err := r.Destroy(ctx, devKey.URI); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Signer(ctx, devKey.URI, devKey.Purpose); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Destroy via the router did not reach the software store: %v", err)
	}
}

func TestNoBackend(t *testing.T) {
	ctx := context.Background()
	r := multi.New(newSoft(t))
	defer r.Close()
	if _, err := r.Signer(ctx, "pkcs11:token=x;id=%01", keystore.PurposeCASigning); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Signer for a URI no backend handles: %v; want ErrNotFound", err)
	}
	if err := r.Destroy(ctx, "hsm:1"); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Destroy for a URI no backend handles: %v; want ErrNotFound", err)
	}
	if r.Handles("pkcs11:token=x;id=%01") {
		t.Error("Handles(pkcs11:...) = true without a PKCS#11 backend")
	}
	empty := multi.New()
	if _, err := empty.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, ""); !errors.Is(err, keystore.ErrBackend) {
		t.Errorf("Generate with no backend: %v; want ErrBackend", err)
	}
}

func TestCloseClosesAll(t *testing.T) {
	ctx := context.Background()
	sw := newSoft(t)
	hsm, _ := newPKCS11(t)
	r := multi.New(sw, hsm)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, ""); err == nil {
		t.Error("software store still usable after Router.Close")
	}
	if _, err := hsm.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, ""); err == nil {
		t.Error("PKCS#11 store still usable after Router.Close")
	}
}
