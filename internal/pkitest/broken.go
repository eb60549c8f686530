package pkitest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"testing"
)

// NonceReusingSigner is an ECDSA signer with a broken random number generator: every signature it makes uses
// the same nonce k, as a device whose RNG repeats does. Two of its signatures over different messages give
// away the private key (r is the same; s differs), which is what the fleet scan must find. The signature is
// the ECDSA equation (FIPS 186-5 6.4.1) written out with math/big: r = x(kG) mod n, s = k⁻¹(h + r·d) mod n,
// kG from crypto/ecdh. It is deliberately broken and exists only for tests.
type NonceReusingSigner struct {
	Key *ecdsa.PrivateKey
	k   *big.Int
}

// NewNonceReusingSigner returns a signer for key whose every signature uses one fixed random nonce.
func NewNonceReusingSigner(t testing.TB, key *ecdsa.PrivateKey) *NonceReusingSigner {
	t.Helper()
	n := key.Curve.Params().N
	k, err := rand.Int(rand.Reader, new(big.Int).Sub(n, big.NewInt(1)))
	if err != nil {
		t.Fatal(err)
	}
	return &NonceReusingSigner{Key: key, k: k.Add(k, big.NewInt(1))}
}

// Public returns the key's public half.
func (s *NonceReusingSigner) Public() crypto.PublicKey { return &s.Key.PublicKey }

// Sign signs digest with the fixed nonce; the result is an ASN.1 ECDSA signature that verifies.
func (s *NonceReusingSigner) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	pub, err := s.Key.PublicKey.ECDH()
	if err != nil {
		return nil, err
	}
	n := s.Key.Curve.Params().N
	size := (n.BitLen() + 7) / 8
	kG, err := pub.Curve().NewPrivateKey(s.k.FillBytes(make([]byte, size)))
	if err != nil {
		return nil, err
	}
	point := kG.PublicKey().Bytes() // 0x04 || X || Y (SEC 1 2.3.3)
	r := new(big.Int).SetBytes(point[1 : 1+(len(point)-1)/2])
	r.Mod(r, n)
	dBytes, err := s.Key.Bytes()
	if err != nil {
		return nil, err
	}
	d := new(big.Int).SetBytes(dBytes)
	h := new(big.Int).SetBytes(digest)
	if excess := len(digest)*8 - n.BitLen(); excess > 0 {
		h.Rsh(h, uint(excess))
	}
	sig := new(big.Int).Mul(r, d)
	sig.Add(sig, h)
	sig.Mul(sig, new(big.Int).ModInverse(s.k, n))
	sig.Mod(sig, n)
	if r.Sign() == 0 || sig.Sign() == 0 {
		return nil, errors.New("degenerate signature")
	}
	return asn1.Marshal(struct{ R, S *big.Int }{r, sig})
}

// RSAKeysSharingPrime returns two RSA keys of bits bits whose moduli share one prime, as two devices whose
// RNG repeated while they made their keys do: anyone holding both public keys factors both.
func RSAKeysSharingPrime(t testing.TB, bits int) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	p := prime(t, bits/2)
	return rsaKey(t, p, prime(t, bits-bits/2)), rsaKey(t, p, prime(t, bits-bits/2))
}

func prime(t testing.TB, bits int) *big.Int {
	t.Helper()
	p, err := rand.Prime(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rsaKey builds the RSA key of primes p and q with e = 65537.
func rsaKey(t testing.TB, p, q *big.Int) *rsa.PrivateKey {
	t.Helper()
	one := big.NewInt(1)
	phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
	e := big.NewInt(65537)
	d := new(big.Int).ModInverse(e, phi)
	if d == nil {
		t.Fatal("65537 is not invertible modulo φ(n); try again")
	}
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537}, D: d, Primes: []*big.Int{p, q}}
	k.Precompute()
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	return k
}
