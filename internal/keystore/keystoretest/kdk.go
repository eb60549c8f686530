package keystoretest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/keyward/keyward/internal/kbkdf"
	"github.com/keyward/keyward/internal/kbkdf/kbkdftest"
	"github.com/keyward/keyward/internal/keystore"
)

// KDKBackend is a keystore with key-derivation keys, and a test-only way to store known key bytes as a KDK so
// the suite can check the backend's PRF against crypto/hmac.
type KDKBackend interface {
	keystore.Keystore
	keystore.KDKStore
}

// RunKDK runs the key-derivation-key conformance suite. newKS gives a fresh keystore per subtest; importKDK
// stores key as a KDK of purpose in it (a test-only path: production KDKs are generated inside the backend) and
// returns its URI.
func RunKDK(t *testing.T, newKS func(t *testing.T) KDKBackend, importKDK func(t *testing.T, ks KDKBackend, purpose keystore.Purpose, key []byte) string) {
	ctx := context.Background()
	t.Run("GenerateAndDerive", func(t *testing.T) {
		ks := newKS(t)
		data := []byte("\x00\x00\x00\x01device-link\x00context\x00\x00\x01\x00")
		seen := map[string]bool{}
		for _, p := range keystore.SymmetricPurposes {
			k, err := ks.GenerateKDK(ctx, p, "conformance "+string(p))
			if err != nil {
				t.Fatalf("GenerateKDK(%s): %v", p, err)
			}
			if k.Purpose != p || k.Algorithm != keystore.HMACSHA256 || !ks.Handles(k.URI) {
				t.Fatalf("GenerateKDK(%s) = %+v", p, k)
			}
			a, err := ks.PRF(ctx, k.URI, p, data)
			if err != nil {
				t.Fatalf("PRF: %v", err)
			}
			b, err := ks.PRF(ctx, k.URI, p, data)
			if err != nil || !bytes.Equal(a, b) || len(a) != 32 {
				t.Fatalf("PRF not deterministic or not 32 bytes: %x, %x, %v", a, b, err)
			}
			if seen[string(a)] {
				t.Fatal("two KDKs gave the same PRF output")
			}
			seen[string(a)] = true
			if c, err := ks.PRF(ctx, k.URI, p, append(data, 0)); err != nil || bytes.Equal(a, c) {
				t.Fatalf("PRF ignores its input: %v", err)
			}
		}
	})
	t.Run("KnownKey", func(t *testing.T) {
		ks := newKS(t)
		key := make([]byte, keystore.KDKSize)
		rand.Read(key)
		uri := importKDK(t, ks, keystore.PurposeDeviceStorage, key)
		data := []byte("SP 800-108 counter block")
		got, err := ks.PRF(ctx, uri, keystore.PurposeDeviceStorage, data)
		if err != nil {
			t.Fatal(err)
		}
		m := hmac.New(sha256.New, key)
		m.Write(data)
		if want := m.Sum(nil); !bytes.Equal(got, want) {
			t.Fatalf("PRF = %x; HMAC-SHA-256 under the same key is %x", got, want)
		}
	})
	// The NIST CAVP KBKDF vectors through the backend's PRF: each vector's KI stored as a KDK, counter-mode
	// derivation with every PRF block computed by the backend (C_Sign CKM_SHA256_HMAC inside a PKCS#11 token),
	// compared with the vector's KO.
	t.Run("CAVP", func(t *testing.T) {
		vs, err := kbkdftest.Vectors()
		if err != nil {
			t.Fatal(err)
		}
		ks := newKS(t)
		checked := 0
		for _, v := range vs {
			if len(v.KI) != keystore.KDKSize {
				continue // a KDK is 256 bits; the vectors of other key sizes do not fit one
			}
			uri := importKDK(t, ks, keystore.PurposeDeviceLink, v.KI)
			prf := func(block []byte) ([]byte, error) { return ks.PRF(ctx, uri, keystore.PurposeDeviceLink, block) }
			got, err := kbkdf.Counter(prf, v.FixedInput, v.LBits/8)
			if err != nil {
				t.Fatalf("COUNT=%d: %v", v.Count, err)
			}
			if !bytes.Equal(got, v.KO) {
				t.Errorf("COUNT=%d L=%d: the backend derived %x, CAVP says %x", v.Count, v.LBits, got, v.KO)
			}
			checked++
		}
		if checked < 4 {
			t.Fatalf("only %d CAVP vectors have a %d-byte KI", checked, keystore.KDKSize)
		}
	})
	t.Run("Refusals", func(t *testing.T) {
		ks := newKS(t)
		if _, err := ks.GenerateKDK(ctx, keystore.PurposeCASigning, "x"); !errors.Is(err, keystore.ErrWrongPurpose) {
			t.Errorf("GenerateKDK(ca-signing): %v; want ErrWrongPurpose", err)
		}
		if _, err := ks.GenerateKDK(ctx, keystore.Purpose("everything"), "x"); err == nil {
			t.Error("GenerateKDK(unknown purpose) succeeded")
		}
		if _, err := ks.Generate(ctx, keystore.PurposeDeviceLink, keystore.ECDSAP256, "x"); !errors.Is(err, keystore.ErrWrongPurpose) {
			t.Errorf("Generate(device-link): %v; want ErrWrongPurpose", err)
		}
		k, err := ks.GenerateKDK(ctx, keystore.PurposeDeviceLink, "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ks.PRF(ctx, k.URI, keystore.PurposeDeviceStorage, []byte("x")); !errors.Is(err, keystore.ErrWrongPurpose) {
			t.Errorf("PRF for another purpose: %v; want ErrWrongPurpose", err)
		}
		if _, err := ks.Signer(ctx, k.URI, keystore.PurposeDeviceLink); err == nil {
			t.Error("Signer on a KDK succeeded")
		}
		sig := generate(t, ks, keystore.PurposeCASigning, keystore.ECDSAP256)
		if _, err := ks.PRF(ctx, sig.URI, keystore.PurposeCASigning, []byte("x")); err == nil {
			t.Error("PRF on a signing key succeeded")
		}
		if _, err := ks.PRF(ctx, sig.URI, keystore.PurposeDeviceLink, []byte("x")); err == nil {
			t.Error("PRF on a signing key, asked as device-link, succeeded")
		}
	})
	t.Run("Destroy", func(t *testing.T) {
		ks := newKS(t)
		k, err := ks.GenerateKDK(ctx, keystore.PurposeDeviceLink, "x")
		if err != nil {
			t.Fatal(err)
		}
		keep, err := ks.GenerateKDK(ctx, keystore.PurposeDeviceLink, "y")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ks.PRF(ctx, k.URI, keystore.PurposeDeviceLink, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := ks.Destroy(ctx, k.URI); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		if _, err := ks.PRF(ctx, k.URI, keystore.PurposeDeviceLink, []byte("x")); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("PRF after Destroy: %v; want ErrNotFound", err)
		}
		if err := ks.Destroy(ctx, k.URI); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("second Destroy: %v; want ErrNotFound", err)
		}
		if _, err := ks.PRF(ctx, keep.URI, keystore.PurposeDeviceLink, []byte("x")); err != nil {
			t.Errorf("another KDK after Destroy: %v", err)
		}
	})
}
