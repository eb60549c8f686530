package goodkey

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// closePrimes returns an RSA modulus whose primes are adjacent, which Fermat's method factors at once.
func closePrimes(t testing.TB, bits int) *big.Int {
	t.Helper()
	p, err := rand.Prime(rand.Reader, bits/2)
	if err != nil {
		t.Fatal(err)
	}
	q := new(big.Int).Add(p, big.NewInt(2))
	for !q.ProbablyPrime(20) {
		q.Add(q, big.NewInt(2))
	}
	return new(big.Int).Mul(p, q)
}

func TestCheck(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	// A 2048-bit odd modulus with a factor of 3.
	bigPrime, _ := rand.Prime(rand.Reader, 2047)
	smallFactor := new(big.Int).Mul(bigPrime, big.NewInt(3))
	for smallFactor.BitLen() < 2048 {
		bigPrime, _ = rand.Prime(rand.Reader, 2047)
		smallFactor.Mul(bigPrime, big.NewInt(3))
	}
	evenN := new(big.Int).Lsh(rsa2048.N, 0)
	evenN.SetBit(evenN, 0, 0)
	offCurve := &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}
	notReduced := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).Add(p256.X, elliptic.P256().Params().P), Y: p256.Y}

	tests := []struct {
		name    string
		pub     crypto.PublicKey
		wantErr string // substring; "" = accept
	}{
		{"p256", &p256.PublicKey, ""},
		{"p384", &p384.PublicKey, ""},
		{"p521", &p521.PublicKey, ""},
		{"ed25519", edPub, ""},
		{"rsa2048", &rsa2048.PublicKey, ""},
		{"p224", &p224.PublicKey, "unsupported or weak curve (P-224): minimum is P-256"},
		{"generic p256 params", &ecdsa.PublicKey{Curve: elliptic.P256().Params(), X: p256.X, Y: p256.Y}, "unsupported or weak curve (P-256)"},
		{"off curve", offCurve, "not a valid curve point"},
		{"coordinate not reduced", notReduced, "not a valid curve point"},
		{"no point", &ecdsa.PublicKey{Curve: elliptic.P256()}, "has no point"},
		{"rsa1024", &rsa1024.PublicKey, "RSA-1024 key is too short: minimum is 2048 bits"},
		{"rsa even modulus", &rsa.PublicKey{N: evenN, E: 65537}, "even modulus"},
		{"rsa e=3", &rsa.PublicKey{N: rsa2048.N, E: 3}, "public exponent 3: minimum is 65537"},
		{"rsa even e", &rsa.PublicKey{N: rsa2048.N, E: 65538}, "even public exponent"},
		{"rsa small factor", &rsa.PublicKey{N: smallFactor, E: 65537}, "small prime factor"},
		{"rsa fermat", &rsa.PublicKey{N: closePrimes(t, 2048), E: 65537}, "Fermat"},
		{"rsa too long", &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 9000), E: 65537}, "too long"},
		{"rsa nil", &rsa.PublicKey{}, "no modulus"},
		{"ed25519 short", ed25519.PublicKey(make([]byte, 31)), "31 bytes"},
		{"nil", nil, "no public key"},
		{"unsupported type", "a string", "not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.pub)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check accepted the key; want error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Check error %q does not contain %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrBadKey) {
				t.Errorf("Check error %v does not match ErrBadKey", err)
			}
		})
	}
}

// TestEd25519SmallOrder checks the small-order decoder against the eight points of order dividing 8 as
// published in libsodium's blocklist (ed25519_ref10.c) and in ZIP 215's test vectors.
func TestEd25519SmallOrder(t *testing.T) {
	tests := []struct {
		name    string
		enc     string
		order   int
		wantErr string
	}{
		{"identity", "0100000000000000000000000000000000000000000000000000000000000000", 1, ""},
		{"order 2", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", 2, ""},
		{"order 4 (all zero)", "0000000000000000000000000000000000000000000000000000000000000000", 4, ""},
		{"order 4 (sign)", "0000000000000000000000000000000000000000000000000000000000000080", 4, ""},
		{"order 8 a", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", 8, ""},
		{"order 8 b", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", 8, ""},
		{"order 8 c", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", 8, ""},
		{"order 8 d", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", 8, ""},
		{"y = p (non-canonical identity of order 4)", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", 0, "y >= p"},
		{"y = p+1 (non-canonical identity)", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", 0, "y >= p"},
		{"identity with sign bit", "0100000000000000000000000000000000000000000000000000000000000080", 0, "x = 0 with sign bit"},
		// RFC 8032 7.1 TEST 1 public key: a prime-order point.
		{"rfc8032 test 1", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			order, err := ed25519SmallOrder(mustHex(t, tc.enc))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got order %d, err %v; want error containing %q", order, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if order != tc.order {
				t.Errorf("order = %d, want %d", order, tc.order)
			}
			if tc.order != 0 {
				if err := Check(ed25519.PublicKey(mustHex(t, tc.enc))); err == nil || !errors.Is(err, ErrBadKey) {
					t.Errorf("Check accepted a small-order key: %v", err)
				}
			}
		})
	}

	// Some y has no x on the curve; find one and expect a refusal.
	found := false
	for y := 2; y < 100 && !found; y++ {
		enc := make([]byte, 32)
		enc[0] = byte(y)
		if _, err := ed25519SmallOrder(enc); err != nil && strings.Contains(err.Error(), "not a curve point") {
			found = true
			if err := Check(ed25519.PublicKey(enc)); err == nil {
				t.Errorf("Check accepted an off-curve Ed25519 key y=%d", y)
			}
		}
	}
	if !found {
		t.Error("no off-curve y below 100 found; the decoder accepts everything")
	}

	// Random keys are of prime order.
	for range 20 {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		if err := Check(pub); err != nil {
			t.Fatalf("Check(random Ed25519 key): %v", err)
		}
	}
}

func TestSPKIHash(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	got, err := SPKIHash(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	want := sha256.Sum256(der)
	if !bytes.Equal(got, want[:]) {
		t.Errorf("SPKIHash = %x, want %x", got, want)
	}
	if _, err := SPKIHash("nope"); err == nil {
		t.Error("SPKIHash accepted a non-key")
	}
}

func BenchmarkCheckRSA2048(b *testing.B) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	for b.Loop() {
		if err := Check(&k.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckEd25519(b *testing.B) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	for b.Loop() {
		if err := Check(pub); err != nil {
			b.Fatal(err)
		}
	}
}
