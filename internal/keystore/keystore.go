package keystore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"

	"filippo.io/mldsa"
)

// Purpose is the one use a key is allowed. The names follow the key glossary in ARCHITECTURE.md.
type Purpose string

// Purposes known to Keyward.
const (
	PurposeRootSigning     Purpose = "root-signing"
	PurposeCASigning       Purpose = "ca-signing"
	PurposeOCSPSigning     Purpose = "ocsp-signing"
	PurposeCRLSigning      Purpose = "crl-signing"
	PurposeFirmwareSigning Purpose = "firmware-signing"
	PurposeAuditSigning    Purpose = "audit-signing"
	PurposeTLSServer       Purpose = "tls-server"
	PurposeDeviceIdentity  Purpose = "device-identity"
	PurposeFactoryStation  Purpose = "factory-station"
	PurposeKEK             Purpose = "kek"

	// Key-derivation keys (KDKs): symmetric keys that derive each device's symmetric key of the same purpose
	// (SP 800-108r1 counter mode, internal/kbkdf) and do nothing else.
	PurposeDeviceLink    Purpose = "device-link"    // keys that protect a device's links (pairing, session keys)
	PurposeDeviceStorage Purpose = "device-storage" // keys that protect the data a device stores
)

// Purposes lists every purpose, in glossary order.
var Purposes = []Purpose{
	PurposeRootSigning, PurposeCASigning, PurposeOCSPSigning, PurposeCRLSigning, PurposeFirmwareSigning,
	PurposeAuditSigning, PurposeTLSServer, PurposeDeviceIdentity, PurposeFactoryStation, PurposeKEK,
	PurposeDeviceLink, PurposeDeviceStorage,
}

// SymmetricPurposes are the purposes of key-derivation keys, in glossary order. A key of one of them is a
// KDK: made by KDKStore.GenerateKDK, used only through KDKStore.PRF, never by Generate or Signer.
var SymmetricPurposes = []Purpose{PurposeDeviceLink, PurposeDeviceStorage}

// Symmetric reports whether p is the purpose of a key-derivation key.
func (p Purpose) Symmetric() bool {
	for _, q := range SymmetricPurposes {
		if p == q {
			return true
		}
	}
	return false
}

// ParseSymmetricPurpose returns the KDK purpose named s, or an error listing them.
func ParseSymmetricPurpose(s string) (Purpose, error) {
	if p := Purpose(s); p.Symmetric() {
		return p, nil
	}
	return "", fmt.Errorf("unknown key-derivation purpose %q; known: %v", s, SymmetricPurposes)
}

// Valid reports whether p is a known purpose.
func (p Purpose) Valid() bool {
	for _, q := range Purposes {
		if p == q {
			return true
		}
	}
	return false
}

// Algorithm names a key type and size.
type Algorithm string

// Algorithms a Keyward-held key may have.
const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	ECDSAP384 Algorithm = "ecdsa-p384"
	Ed25519   Algorithm = "ed25519"
	RSA3072   Algorithm = "rsa-3072"
	RSA4096   Algorithm = "rsa-4096"
)

// HMACSHA256 is a key-derivation key: a 256-bit secret whose one use is the PRF HMAC-SHA-256 (FIPS 198-1) of
// SP 800-108r1 key derivation. Secret256 is a key derived from one: 256 bits a device uses as an AES-256 or
// HMAC key. Neither is in Algorithms, which lists the asymmetric keys Generate makes.
const (
	HMACSHA256 Algorithm = "hmac-sha256"
	Secret256  Algorithm = "secret-256"
)

// KDKSize is the size of a key-derivation key in bytes.
const KDKSize = 32

// Algorithms lists every supported algorithm.
var Algorithms = []Algorithm{ECDSAP256, ECDSAP384, Ed25519, RSA3072, RSA4096}

// MLDSA65 is ML-DSA-65 (FIPS 204), the post-quantum half of hybrid firmware signatures. Only the software
// keystore holds it, and it signs COSE structures, never X.509 certificates, so it is not in Algorithms (which
// lists what CA keys, profiles and every backend accept).
const MLDSA65 Algorithm = "ml-dsa-65"

// ParseAlgorithm returns the Algorithm named s or an error listing the supported ones.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown key algorithm %q; supported: %v", s, Algorithms)
}

// AlgorithmOf names the algorithm of a public key, or returns an error for a type or size Keyward does not hold.
func AlgorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		}
		return "", fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return Ed25519, nil
	case *mldsa.PublicKey:
		if k.Parameters() == mldsa.MLDSA65() {
			return MLDSA65, nil
		}
		return "", fmt.Errorf("unsupported ML-DSA parameter set %s", k.Parameters())
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 3072:
			return RSA3072, nil
		case 4096:
			return RSA4096, nil
		}
		return "", fmt.Errorf("unsupported RSA size %d bits", k.N.BitLen())
	}
	return "", fmt.Errorf("unsupported public key type %T", pub)
}

// Key describes a key held by a backend. It never carries private material.
type Key struct {
	// URI references the key: "soft:<id>" for the software keystore, an RFC 7512 "pkcs11:" URI for a token.
	// A URI never contains a PIN or passphrase, so it may be stored, logged and audited.
	URI       string
	Purpose   Purpose
	Algorithm Algorithm
	Public    crypto.PublicKey
}

// Location is where a key lives, as shown in the key glossary.
type Location string

// Locations of keys.
const (
	LocationSoftware Location = "software"
	LocationPKCS11   Location = "pkcs11"
	LocationDevice   Location = "device"
)

// Keystore is a custody backend.
type Keystore interface {
	// Generate creates a new key for one purpose. label is a human-readable hint (e.g. "dev/demo-implant issuing CA")
	// that the backend may record; it is not secret.
	Generate(ctx context.Context, purpose Purpose, alg Algorithm, label string) (Key, error)
	// Signer returns a signer for the key at uri, refusing with ErrWrongPurpose unless the key was generated for purpose.
	Signer(ctx context.Context, uri string, purpose Purpose) (crypto.Signer, error)
	// Destroy erases the private key: zeroises what the backend can reach and deletes the object. Destroying an
	// unknown or already destroyed key returns ErrNotFound.
	Destroy(ctx context.Context, uri string) error
	// Handles reports whether uri belongs to this backend.
	Handles(uri string) bool
	// Location names where this backend keeps keys.
	Location() Location
	// Close releases the backend (sessions, module handles).
	Close() error
}

// KDKStore is the optional capability of a backend that holds key-derivation keys. The KDK never leaves the
// backend: PRF computes HMAC-SHA-256 under it (in an HSM, C_Sign with CKM_SHA256_HMAC) and returns only the
// output. Destroy erases a KDK like any other key.
type KDKStore interface {
	// GenerateKDK creates a 256-bit HMAC-SHA-256 key-derivation key for purpose, one of SymmetricPurposes, and
	// returns its URI. label is a non-secret hint the backend may record.
	GenerateKDK(ctx context.Context, purpose Purpose, label string) (Key, error)
	// PRF returns HMAC-SHA-256(KDK, data) under the KDK at uri, refusing with ErrWrongPurpose unless it was
	// generated for purpose and with ErrNotFound for a key that is not a KDK of this backend.
	PRF(ctx context.Context, uri string, purpose Purpose, data []byte) ([]byte, error)
}

// Errors a caller must tell apart. Backends wrap them with context; test with errors.Is.
var (
	// ErrWrongPurpose: the key exists but was generated for another purpose.
	ErrWrongPurpose = errors.New("key purpose mismatch")
	// ErrNotFound: no key at that URI (never created, or destroyed).
	ErrNotFound = errors.New("key not found")
	// ErrUnseal: the software keystore cannot be opened with the given passphrase, or a sealed key fails to open.
	ErrUnseal = errors.New("cannot unseal keystore")
	// ErrBackend: the backend is unreachable or refused us (missing PKCS#11 module, wrong PIN, no such token).
	ErrBackend = errors.New("keystore backend unavailable")
)

// PurposeError builds the error a backend returns when purpose does not match.
func PurposeError(uri string, have, want Purpose) error {
	return fmt.Errorf("key %s has purpose %q, refused for %q: %w", uri, have, want, ErrWrongPurpose)
}
