package edhoc

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"math/big"

	"github.com/pion/dtls/v4/pkg/crypto/ccm"
)

// Suite is an EDHOC cipher suite (RFC 9528 section 3.6 and the IANA "EDHOC Cipher Suites" registry).
type Suite int

// The cipher suites this package implements.
const (
	// Suite0 is AES-CCM-16-64-128, SHA-256, 8-byte MAC, X25519, EdDSA, with AES-CCM-16-64-128 and SHA-256
	// for the application.
	Suite0 Suite = 0
	// Suite2 is AES-CCM-16-64-128, SHA-256, 8-byte MAC, P-256, ES256, with AES-CCM-16-64-128 and SHA-256
	// for the application.
	Suite2 Suite = 2
	// Suite6 is A128GCM, SHA-256, 16-byte MAC, X25519, ES256, with A128GCM and SHA-256 for the application.
	Suite6 Suite = 6
)

// COSE algorithm identifiers (RFC 9053) that the suites name.
const (
	algAESCCM16_64_128 = 10
	algA128GCM         = 1
	algSHA256          = -16
	algSHA256_64       = -15
)

type suiteParams struct {
	aead       int // COSE algorithm of the EDHOC and application AEAD
	keyLen     int
	ivLen      int
	macLen     int // EDHOC MAC length for static DH authentication
	curve      ecdh.Curve
	signature  string // "EdDSA" or "ES256"
	appHashAlg int
}

var suites = map[Suite]*suiteParams{
	Suite0: {aead: algAESCCM16_64_128, keyLen: 16, ivLen: 13, macLen: 8, curve: ecdh.X25519(), signature: "EdDSA", appHashAlg: algSHA256},
	Suite2: {aead: algAESCCM16_64_128, keyLen: 16, ivLen: 13, macLen: 8, curve: ecdh.P256(), signature: "ES256", appHashAlg: algSHA256},
	Suite6: {aead: algA128GCM, keyLen: 16, ivLen: 12, macLen: 16, curve: ecdh.X25519(), signature: "ES256", appHashAlg: algSHA256},
}

// hashLen is the output size of SHA-256, the EDHOC hash algorithm of every suite here.
const hashLen = sha256.Size

func (s Suite) params() (*suiteParams, error) {
	p := suites[s]
	if p == nil {
		return nil, fmt.Errorf("%w: cipher suite %d (this package implements 0, 2 and 6)", ErrUnsupportedSuite, int(s))
	}
	return p, nil
}

// String names the suite as RFC 9528 section 3.6 does.
func (s Suite) String() string {
	switch s {
	case Suite0:
		return "0 (AES-CCM-16-64-128, SHA-256, 8, X25519, EdDSA)"
	case Suite2:
		return "2 (AES-CCM-16-64-128, SHA-256, 8, P-256, ES256)"
	case Suite6:
		return "6 (A128GCM, SHA-256, 16, X25519, ES256)"
	}
	return fmt.Sprintf("%d (unsupported)", int(s))
}

// aead returns the EDHOC AEAD of the suite keyed with key.
func (p *suiteParams) newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if p.aead == algA128GCM {
		return cipher.NewGCM(block)
	}
	// AES-CCM-16-64-128 (RFC 9053 section 4.2): 64-bit tag, 13-byte nonce.
	return ccm.NewCCM(block, 8, 13)
}

// hash is the EDHOC hash algorithm, SHA-256 for every suite here.
func hash(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// extract is EDHOC_Extract (RFC 9528 section 4.1.1): HKDF-Extract with SHA-256.
func extract(salt, ikm []byte) []byte {
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		panic(err) // HKDF-Extract with SHA-256 cannot fail
	}
	return prk
}

// kdf is EDHOC_KDF (RFC 9528 section 4.1.2): HKDF-Expand(PRK, info, length) where info is the CBOR sequence
// (info_label: int, context: bstr, length: uint).
func kdf(prk []byte, label int64, context []byte, length int) []byte {
	info := appendInt(nil, label)
	info = appendBstr(info, context)
	info = appendInt(info, int64(length))
	out, err := hkdf.Expand(sha256.New, prk, string(info), length)
	if err != nil {
		// Only lengths above 255*32 fail, which no caller asks for: plaintexts are bounded by maxMessage.
		panic(err)
	}
	return out
}

// macEqual compares MACs in constant time.
func macEqual(a, b []byte) bool { return hmac.Equal(a, b) }

// p256 constants for decompressing the x-coordinate-only ephemeral keys (RFC 9528 section 3.7, compact
// representation per RFC 6090 and SECG 2.3.4).
var (
	p256P, _ = new(big.Int).SetString("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff", 16)
	p256B, _ = new(big.Int).SetString("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b", 16)
)

// publicKey decodes a peer's ephemeral public key. X25519 keys are the 32 raw bytes. P-256 keys are the
// x-coordinate only; either y gives the same ECDH x-coordinate (RFC 9528 section 3.7), so the even one is
// taken. A point that is off the curve, or an x that is not below p, is refused (RFC 9528 section 9.2,
// NIST SP 800-56A 5.6.2.3).
func publicKey(curve ecdh.Curve, raw []byte) (*ecdh.PublicKey, error) {
	if curve == ecdh.X25519() {
		if len(raw) != 32 {
			return nil, fmt.Errorf("%w: X25519 public key of %d bytes, want 32", ErrInvalidKey, len(raw))
		}
		return curve.NewPublicKey(raw)
	}
	if len(raw) != 32 {
		return nil, fmt.Errorf("%w: P-256 x-coordinate of %d bytes, want 32 (leading zeros included)", ErrInvalidKey, len(raw))
	}
	x := new(big.Int).SetBytes(raw)
	if x.Cmp(p256P) >= 0 {
		return nil, fmt.Errorf("%w: P-256 x-coordinate is not below the field prime", ErrInvalidKey)
	}
	// y² = x³ - 3x + b (mod p); p ≡ 3 (mod 4), so y = (y²)^((p+1)/4).
	y2 := new(big.Int).Exp(x, big.NewInt(3), p256P)
	y2.Sub(y2, new(big.Int).Lsh(x, 1))
	y2.Sub(y2, x)
	y2.Add(y2, p256B)
	y2.Mod(y2, p256P)
	e := new(big.Int).Add(p256P, big.NewInt(1))
	e.Rsh(e, 2)
	y := new(big.Int).Exp(y2, e, p256P)
	if new(big.Int).Exp(y, big.NewInt(2), p256P).Cmp(y2) != 0 {
		return nil, fmt.Errorf("%w: P-256 x-coordinate is not on the curve", ErrInvalidKey)
	}
	if y.Bit(0) == 1 {
		y.Sub(p256P, y)
	}
	pt := make([]byte, 65)
	pt[0] = 4
	x.FillBytes(pt[1:33])
	y.FillBytes(pt[33:])
	k, err := curve.NewPublicKey(pt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return k, nil
}

// compact returns the wire form of an ephemeral public key: the raw X25519 key or the P-256 x-coordinate.
func compact(k *ecdh.PublicKey) []byte {
	b := k.Bytes()
	if len(b) == 65 { // uncompressed P-256: 04 || x || y
		return b[1:33]
	}
	return b
}

// ecdhShared computes the shared secret; crypto/ecdh refuses the all-zero X25519 output of a low-order point.
func ecdhShared(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) ([]byte, error) {
	s, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return s, nil
}
