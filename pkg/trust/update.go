package trust

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
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// Limits and parameters of trust-anchor updates.
const (
	// ContentType is the content type (COSE header 3, protected) of a signed trust-anchor update. It differs
	// from the firmware trust update's ("application/kw-fw-trust+cbor"), so a signature over one can never be
	// taken for the other: the content type is part of what each signature covers.
	ContentType = "application/kw-trust-anchors+cbor"

	// MaxUpdateSize bounds a signed update as read from outside. Two RSA-4096 roots and their signatures take
	// under 5 KiB; sixteen anchors of any accepted kind fit.
	MaxUpdateSize = 64 << 10
	// MaxAnchors bounds the anchors an update or an anchors file lists. A rollover holds two roots at once;
	// the rest is headroom for an environment with roots of two algorithms.
	MaxAnchors = 16
	// MaxSignatures bounds the signatures on an update: one per distinct key, held or listed.
	MaxSignatures = 16

	// ClockSkew is how far the device's clock may be off the update's validity window and still be inside it.
	// An implant's clock drifts between sessions with a programmer or gateway that sets it; five minutes
	// absorbs that without stretching a window meant to be weeks long.
	ClockSkew = 5 * time.Minute
)

// Update is the payload of a signed trust-anchor update: the complete set of anchors a device of Environment
// holds from Version on. It is a CBOR map with integer keys, encoded deterministically (RFC 8949 section
// 4.2.1); every key is required.
type Update struct {
	// Environment is the environment whose anchors these are: dev, staging or production (key 1).
	Environment string `cbor:"1,keyasint"`
	// Version orders updates; the factory's initial set is version 0, so the first update is at least 1
	// (key 2).
	Version uint64 `cbor:"2,keyasint"`
	// Anchors are the DER X.509 certificates of every anchor from this version on, each a self-signed CA
	// certificate (key 3). During a root overlap they are the old and the new root.
	Anchors [][]byte `cbor:"3,keyasint"`
	// NotBefore and NotAfter bound when a device may apply the update, in Unix seconds (keys 4 and 5).
	NotBefore int64 `cbor:"4,keyasint"`
	NotAfter  int64 `cbor:"5,keyasint"`
	// IssuedAt is when the ceremony made the update, in Unix seconds (key 6). Devices do not act on it.
	IssuedAt int64 `cbor:"6,keyasint"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode

	// envRule is the environment naming rule of keyward.yaml.
	envRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   4,
		MaxArrayElements:  4 * MaxAnchors,
		MaxMapPairs:       16,
		UTF8:              cbor.UTF8RejectInvalid,
		IntDec:            cbor.IntDecConvertSignedOrFail,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// unmarshalStrict decodes data into v and requires data to be the deterministic encoding of v, so that one
// value has exactly one accepted encoding and a missing key (which would re-encode as its zero value) is
// refused.
func unmarshalStrict(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return err
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, data) {
		return errors.New("not the deterministic CBOR encoding (RFC 8949 section 4.2.1) of a complete map: a key missing or out of order, or a non-shortest integer or length")
	}
	return nil
}

// Validate checks u as Sign and Apply require it: a named environment, a version of at least 1, between one and
// MaxAnchors distinct anchors that are each a self-signed CA certificate, and a validity window that ends after
// it begins. Errors wrap ErrMalformed or ErrInvalidAnchor.
func (u *Update) Validate() error {
	_, err := u.certificates()
	return err
}

// certificates validates u and returns its anchors, parsed.
func (u *Update) certificates() ([]*x509.Certificate, error) {
	if !envRule.MatchString(u.Environment) {
		return nil, fmt.Errorf("%w: environment (key 1) %q must be 1 to 63 lower-case letters, digits and hyphens", ErrMalformed, u.Environment)
	}
	if u.Version == 0 {
		return nil, fmt.Errorf("%w: version (key 2) must be at least 1; version 0 is the factory's initial set", ErrMalformed)
	}
	if u.NotAfter <= u.NotBefore {
		return nil, fmt.Errorf("%w: validity (keys 4, 5) ends at %s, not after it begins at %s", ErrMalformed, unix(u.NotAfter), unix(u.NotBefore))
	}
	if len(u.Anchors) == 0 || len(u.Anchors) > MaxAnchors {
		return nil, fmt.Errorf("%w: anchors (key 3) lists %d certificates; an update lists 1 to %d", ErrMalformed, len(u.Anchors), MaxAnchors)
	}
	certs := make([]*x509.Certificate, 0, len(u.Anchors))
	for i, der := range u.Anchors {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: anchor %d: %v", ErrMalformed, i+1, err)
		}
		certs = append(certs, c)
	}
	if err := checkAnchors(certs, "update anchor"); err != nil {
		return nil, err
	}
	return certs, nil
}

// unix formats Unix seconds for a message.
func unix(s int64) string { return time.Unix(s, 0).UTC().Format(time.RFC3339) }

// KeyID returns the key identifier of pub in a trust-anchor update's signatures: the SHA-256 of its DER
// SubjectPublicKeyInfo, as pkg/firmware/manifest names ECDSA keys.
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	h := sha256.Sum256(der)
	return h[:], nil
}

// algorithmOf returns the one COSE algorithm a key of pub's kind signs updates with: ES256, ES384 or ES512 by
// curve (RFC 9053 section 2.1), EdDSA for Ed25519 (section 2.2), PS256 for RSA of at least 2048 bits (RFC 8230).
// A verifier derives it from the anchor's key, never from the message, so no signature can choose a weaker one.
func algorithmOf(pub crypto.PublicKey) (cose.Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return cose.AlgorithmES256, nil
		case elliptic.P384():
			return cose.AlgorithmES384, nil
		case elliptic.P521():
			return cose.AlgorithmES512, nil
		}
		return 0, fmt.Errorf("ECDSA curve %s is not accepted; use P-256, P-384 or P-521", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return cose.AlgorithmEdDSA, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return 0, fmt.Errorf("RSA key of %d bits is not accepted; use at least 2048 (RFC 8230 section 6.1)", k.N.BitLen())
		}
		return cose.AlgorithmPS256, nil
	}
	return 0, fmt.Errorf("key type %T is not accepted; use ECDSA P-256/P-384/P-521, Ed25519 or RSA", pub)
}

// Sign validates u, encodes it and signs it as a COSE_Sign (tag 98) with one signature per distinct key in
// signers: the roots that devices hold now and every root the update introduces. A key given twice (a root kept
// across versions) signs once. Each signature carries its algorithm and key id (KeyID) in its protected header.
// signers may live in an HSM (any crypto.Signer).
func Sign(u *Update, signers ...crypto.Signer) ([]byte, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	return sign(u, signers...)
}

// sign encodes and signs u without validating it (tests make invalid updates with it).
func sign(u *Update, signers ...crypto.Signer) ([]byte, error) {
	if len(signers) == 0 {
		return nil, fmt.Errorf("sign trust-anchor update %d: no signing key", u.Version)
	}
	payload, err := encMode.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("encode trust-anchor update %d: %w", u.Version, err)
	}
	msg := cose.NewSignMessage()
	msg.Headers.Protected = cose.ProtectedHeader{cose.HeaderLabelContentType: ContentType}
	msg.Payload = payload
	var coseSigners []cose.Signer
	seen := map[string]bool{}
	for _, s := range signers {
		kid, err := KeyID(s.Public())
		if err != nil {
			return nil, err
		}
		if seen[string(kid)] {
			continue
		}
		seen[string(kid)] = true
		alg, err := algorithmOf(s.Public())
		if err != nil {
			return nil, fmt.Errorf("sign trust-anchor update %d: %w", u.Version, err)
		}
		cs, err := cose.NewSigner(alg, s)
		if err != nil {
			return nil, fmt.Errorf("sign trust-anchor update %d: %w", u.Version, err)
		}
		sig := cose.NewSignature()
		sig.Headers.Protected = cose.ProtectedHeader{cose.HeaderLabelAlgorithm: alg, cose.HeaderLabelKeyID: kid}
		msg.Signatures = append(msg.Signatures, sig)
		coseSigners = append(coseSigners, cs)
	}
	if len(msg.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("sign trust-anchor update %d: %d distinct keys; devices accept at most %d signatures", u.Version, len(msg.Signatures), MaxSignatures)
	}
	if err := msg.Sign(rand.Reader, nil, coseSigners...); err != nil {
		return nil, fmt.Errorf("sign trust-anchor update %d: %w", u.Version, err)
	}
	return msg.MarshalCBOR()
}
