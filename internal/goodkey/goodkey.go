package goodkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"sync"
)

// ErrBadKey is matched (with errors.Is) by every refusal from Check. Callers map it to "bad request": the
// key is the requester's to fix.
var ErrBadKey = errors.New("bad public key")

// MinRSABits is the smallest RSA modulus Check accepts: NIST SP 800-131A Rev. 2 disallows RSA below 2048 bits
// for signatures. Profiles narrow this further (Keyward profiles list rsa-3072 and rsa-4096 only).
const MinRSABits = 2048

// MaxRSABits is the largest RSA modulus Check accepts. Larger keys buy no security that a profile could
// want and make every check and verification on them slow enough to be a denial-of-service lever.
const MaxRSABits = 8192

// fermatRounds is how many Fermat factorisation steps Check tries on an RSA modulus. Boulder uses the same
// number after Hanno Böck found deployed keys whose primes were close enough to fall in the first few
// (CVE-2022-26320).
const fermatRounds = 100

// keyError is a refusal. Its message is written for the requester and names the key and the rule.
type keyError struct{ msg string }

// Error returns the refusal message.
func (e *keyError) Error() string { return e.msg }

// Is matches ErrBadKey.
func (e *keyError) Is(target error) bool { return target == ErrBadKey }

func badKey(format string, args ...any) error {
	return &keyError{msg: fmt.Sprintf(format, args...)}
}

// Check returns nil if pub is a key Keyward may certify, or an error matching ErrBadKey that says what is
// wrong with it. It accepts ECDSA on P-256, P-384 and P-521, RSA from MinRSABits to MaxRSABits bits, and
// Ed25519; it does not decide which of those a profile allows.
func Check(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return checkECDSA(k)
	case *rsa.PublicKey:
		return checkRSA(k)
	case ed25519.PublicKey:
		return checkEd25519(k)
	case nil:
		return badKey("no public key")
	}
	return badKey("public key type %T is not supported: use ECDSA (P-256, P-384), Ed25519 or RSA", pub)
}

// SPKIHash returns the SHA-256 of pub's DER-encoded SubjectPublicKeyInfo (RFC 5280 4.1.2.7). The store keeps
// it unique across certificates so that one key is never certified for two devices.
func SPKIHash(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("spki hash of %T: %w", pub, err)
	}
	h := sha256.Sum256(der)
	return h[:], nil
}

// CurveName names an ECDSA curve for messages: "P-256" for the standard library's NIST curves, the curve
// parameters' name otherwise.
func CurveName(c elliptic.Curve) string {
	if c == nil {
		return "no curve"
	}
	if p := c.Params(); p != nil && p.Name != "" {
		return p.Name
	}
	return "unnamed curve"
}

func checkECDSA(k *ecdsa.PublicKey) error {
	if k == nil || k.Curve == nil {
		return badKey("ECDSA key has no curve")
	}
	// Only the standard library's NIST curves are accepted, compared by identity: a look-alike Curve whose
	// Params claim "P-256" is a different (and unvetted) implementation. P-224 and below fall short of the
	// 128-bit security level (NIST SP 800-57 Part 1 Rev. 5, table 2; CA/B BR 6.1.5 also requires P-256+).
	switch k.Curve {
	case elliptic.P256(), elliptic.P384(), elliptic.P521():
	default:
		return badKey("ECDSA key uses an unsupported or weak curve (%s): minimum is P-256", CurveName(k.Curve))
	}
	if k.X == nil || k.Y == nil {
		return badKey("ECDSA %s key has no point", CurveName(k.Curve))
	}
	// crypto/ecdh validates the point: on the curve, not the identity, coordinates reduced (SP 800-56A Rev. 3
	// 5.6.2.3.3 full public key validation; the curves have cofactor 1, so that is all of it).
	if _, err := k.ECDH(); err != nil {
		return badKey("ECDSA %s key is not a valid curve point: %v", CurveName(k.Curve), err)
	}
	return nil
}

func checkRSA(k *rsa.PublicKey) error {
	if k == nil || k.N == nil || k.N.Sign() <= 0 {
		return badKey("RSA key has no modulus")
	}
	bits := k.N.BitLen()
	// NIST SP 800-131A Rev. 2 table 2: RSA below 2048 bits is disallowed for signature generation.
	if bits < MinRSABits {
		return badKey("RSA-%d key is too short: minimum is %d bits", bits, MinRSABits)
	}
	if bits > MaxRSABits {
		return badKey("RSA-%d key is too long: maximum is %d bits", bits, MaxRSABits)
	}
	// A modulus is the product of two large odd primes, so it is odd.
	if k.N.Bit(0) == 0 {
		return badKey("RSA-%d key has an even modulus", bits)
	}
	// CA/B BR 6.1.6 and NIST SP 800-89 5.3.3: the public exponent is odd and at least 3; SP 800-89 and
	// FIPS 186-5 A.1.1 further require 2^16 < e < 2^256 (Go's int caps it well below 2^256). Small exponents
	// invite Coppersmith-style attacks on poorly padded messages.
	if k.E%2 == 0 {
		return badKey("RSA-%d key has an even public exponent %d", bits, k.E)
	}
	if k.E < 65537 {
		return badKey("RSA-%d key has public exponent %d: minimum is 65537", bits, k.E)
	}
	// A modulus with a small prime factor is trivially factored; Boulder checks the primes below 752.
	if g := new(big.Int).GCD(nil, nil, k.N, smallPrimesProduct()); g.Cmp(big.NewInt(1)) != 0 {
		return badKey("RSA-%d key has a small prime factor", bits)
	}
	// Primes too close together fall to Fermat's method (CVE-2022-26320).
	if fermatFactor(k.N, fermatRounds) {
		return badKey("RSA-%d key is factorable with Fermat's method (its primes are too close together)", bits)
	}
	return nil
}

// smallPrimesProduct is the product of the odd primes below 752, computed once and never modified.
var smallPrimesProduct = sync.OnceValue(func() *big.Int {
	const limit = 752
	composite := make([]bool, limit)
	prod := big.NewInt(1)
	for i := 2; i < limit; i++ {
		if composite[i] {
			continue
		}
		for j := i * i; j < limit; j += i {
			composite[j] = true
		}
		if i != 2 { // the modulus was already checked to be odd
			prod.Mul(prod, big.NewInt(int64(i)))
		}
	}
	return prod
})

// fermatFactor reports whether n = a² - b² is found within rounds steps from a = ⌈√n⌉, i.e. whether n has two
// factors close to √n.
func fermatFactor(n *big.Int, rounds int) bool {
	a := new(big.Int).Sqrt(n)
	if new(big.Int).Mul(a, a).Cmp(n) == 0 {
		return true // a perfect square is not an RSA modulus
	}
	a.Add(a, big.NewInt(1))
	b2 := new(big.Int)
	b := new(big.Int)
	sq := new(big.Int)
	for range rounds {
		b2.Mul(a, a)
		b2.Sub(b2, n)
		b.Sqrt(b2)
		if sq.Mul(b, b).Cmp(b2) == 0 {
			return true
		}
		a.Add(a, big.NewInt(1))
	}
	return false
}

func checkEd25519(k ed25519.PublicKey) error {
	if len(k) != ed25519.PublicKeySize {
		return badKey("Ed25519 key is %d bytes: want %d", len(k), ed25519.PublicKeySize)
	}
	order, err := ed25519SmallOrder(k)
	if err != nil {
		return badKey("Ed25519 key %v", err)
	}
	if order != 0 {
		// A small-order point (order 1, 2, 4 or 8) admits signatures that verify for many messages and
		// provides no binding to a private key (RFC 8032 5.1.7 leaves rejecting it to the application;
		// libsodium and Zcash's ZIP 215 refuse them as public keys).
		return badKey("Ed25519 key is a small-order point (order %d)", order)
	}
	return nil
}
