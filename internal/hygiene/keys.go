package hygiene

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/keyward/keyward/internal/goodkey"
)

// Key is a SubjectPublicKeyInfo as the scan sees it: what it is, and the key when the standard library parses it.
type Key struct {
	// Algorithm names the key for a report: "ECDSA P-256", "RSA-2048", "Ed25519", "ECDSA secp192r1", ...
	Algorithm string
	// Public is the parsed key (*ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey), nil if it does not parse.
	Public crypto.PublicKey
}

// Weakness is one rule a key breaks.
type Weakness struct {
	Rule   string // WeakSize, WeakCurve, WeakExponent, WeakInvalid, WeakAlgorithm
	Detail string
}

// The rules CheckSPKI reports.
const (
	WeakSize      = "key-size"      // RSA below goodkey.MinRSABits (or above its maximum)
	WeakCurve     = "curve"         // an ECDSA curve other than P-256, P-384 and P-521
	WeakExponent  = "rsa-exponent"  // an RSA public exponent below 65537 or even
	WeakInvalid   = "invalid-key"   // not a valid key: a point off its curve, a small-order point, an even modulus ...
	WeakAlgorithm = "key-algorithm" // an algorithm Keyward does not certify (DSA, an unknown one)
)

// OIDs of SubjectPublicKeyInfo algorithms and named curves the scan names (RFC 5480 2.1.1.1, RFC 8410 3, SEC 2).
var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidRSA         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidDSA         = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	oidEd25519     = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidEd448       = asn1.ObjectIdentifier{1, 3, 101, 113}
	curveNames     = map[string]string{
		"1.2.840.10045.3.1.1":  "secp192r1 (P-192)",
		"1.3.132.0.33":         "secp224r1 (P-224)",
		"1.2.840.10045.3.1.7":  "P-256",
		"1.3.132.0.34":         "P-384",
		"1.3.132.0.35":         "P-521",
		"1.3.132.0.10":         "secp256k1",
		"1.3.36.3.3.2.8.1.1.7": "brainpoolP256r1",
	}
	strongCurves = map[string]bool{"P-256": true, "P-384": true, "P-521": true}
)

type spki struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// CheckSPKI reads a DER SubjectPublicKeyInfo and returns the key and every rule it breaks: Keyward certifies
// ECDSA on P-256, P-384 and P-521, Ed25519, and RSA of at least 2048 bits with an odd exponent of at least
// 65537 (goodkey.Check, which holds each rule's source). A key on another curve, of another algorithm, or that
// is no valid key at all (a point off its curve) breaks a rule too: those are what keys accepted before a rule
// existed, or made by other systems, leave behind.
func CheckSPKI(der []byte) (Key, []Weakness) {
	pub, perr := x509.ParsePKIXPublicKey(der)
	if perr == nil {
		k := Key{Algorithm: algorithmOf(pub), Public: pub}
		if err := goodkey.Check(pub); err != nil {
			return k, []Weakness{{Rule: ruleOf(pub, err), Detail: err.Error()}}
		}
		return k, nil
	}
	var info spki
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return Key{Algorithm: "unparsable"}, []Weakness{{Rule: WeakInvalid, Detail: fmt.Sprintf("SubjectPublicKeyInfo does not parse: %v", perr)}}
	}
	alg := info.Algorithm.Algorithm
	switch {
	case alg.Equal(oidECPublicKey):
		var curve asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &curve); err != nil {
			// RFC 5480 2.1.1: only namedCurve is allowed; explicit parameters hide any curve at all.
			return Key{Algorithm: "ECDSA explicit parameters"}, []Weakness{{Rule: WeakCurve, Detail: "ECDSA key with explicit curve parameters (RFC 5480 2.1.1 allows only a named curve)"}}
		}
		name, known := curveNames[curve.String()]
		if !known {
			name = curve.String()
		}
		k := Key{Algorithm: "ECDSA " + name}
		if strongCurves[name] {
			// The standard library parses every point on these curves: this one is not on its curve.
			return k, []Weakness{{Rule: WeakInvalid, Detail: fmt.Sprintf("ECDSA %s key is not a valid curve point: %v", name, perr)}}
		}
		return k, []Weakness{{Rule: WeakCurve, Detail: fmt.Sprintf("ECDSA key on curve %s: Keyward certifies P-256, P-384 and P-521 only", name)}}
	case alg.Equal(oidRSA):
		return Key{Algorithm: "RSA"}, []Weakness{{Rule: WeakInvalid, Detail: fmt.Sprintf("RSA key is not valid: %v", perr)}}
	case alg.Equal(oidEd25519):
		return Key{Algorithm: "Ed25519"}, []Weakness{{Rule: WeakInvalid, Detail: fmt.Sprintf("Ed25519 key is not valid: %v", perr)}}
	case alg.Equal(oidDSA):
		return Key{Algorithm: "DSA"}, []Weakness{{Rule: WeakAlgorithm, Detail: "DSA key: Keyward certifies ECDSA, Ed25519 and RSA only (FIPS 186-5 withdrew DSA for signing)"}}
	case alg.Equal(oidEd448):
		return Key{Algorithm: "Ed448"}, []Weakness{{Rule: WeakAlgorithm, Detail: "Ed448 key: Keyward certifies ECDSA, Ed25519 and RSA only"}}
	}
	return Key{Algorithm: alg.String()}, []Weakness{{Rule: WeakAlgorithm, Detail: fmt.Sprintf("key algorithm %s is not one Keyward certifies (ECDSA, Ed25519, RSA)", alg)}}
}

// algorithmOf names a parsed key.
func algorithmOf(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + goodkey.CurveName(k.Curve)
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// ruleOf classifies goodkey's refusal of pub.
func ruleOf(pub crypto.PublicKey, err error) string {
	if !errors.Is(err, goodkey.ErrBadKey) {
		return WeakInvalid
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if _, ok := strongCurves[goodkey.CurveName(k.Curve)]; !ok {
			return WeakCurve
		}
	case *rsa.PublicKey:
		switch bits := k.N.BitLen(); {
		case bits < goodkey.MinRSABits || bits > goodkey.MaxRSABits:
			return WeakSize
		case k.N.Bit(0) == 1 && (k.E%2 == 0 || k.E < 65537):
			return WeakExponent
		}
	case ed25519.PublicKey:
	default:
		return WeakAlgorithm
	}
	return WeakInvalid
}
