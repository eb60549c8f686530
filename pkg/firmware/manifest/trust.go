package manifest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"fmt"

	"github.com/veraison/go-cose"
)

// TrustUpdate is the payload of a signed trust update: version Version of an environment's firmware trust, in
// the way TUF rotates its root metadata (TUF specification 5.3.4). A device that trusts version N accepts
// version N+1 only if it is signed by the root keys of version N and by those it names itself, so a stolen
// update cannot be replayed to another environment, skip versions or install a root nobody controls. Each
// version is complete: Revoked lists every revoked signing key so far.
type TrustUpdate struct {
	// Environment is dev, staging or production (key 1).
	Environment string `cbor:"1,keyasint"`
	// Version is the trust version; the first pinned root is version 1 (key 2).
	Version uint64 `cbor:"2,keyasint"`
	// RootCert is the DER X.509 certificate of the firmware root from this version on (key 3).
	RootCert []byte `cbor:"3,keyasint"`
	// PQRoot is the FIPS 204 encoding of the ML-DSA-65 firmware root public key, if the environment has one (key 4).
	PQRoot []byte `cbor:"4,keyasint,omitempty"`
	// Revoked lists the key ids (see KeyID) of revoked signing keys, ECDSA or ML-DSA (key 5).
	Revoked [][]byte `cbor:"5,keyasint,omitempty"`
	// IssuedAt is when the update was made, in Unix seconds (key 6).
	IssuedAt int64 `cbor:"6,keyasint"`
}

// PQKeyCert is the payload of an ML-DSA signing key's certificate: a COSE_Sign1 by the environment's ML-DSA-65
// firmware root. X.509 in the Go standard library cannot carry ML-DSA yet, so the post-quantum half of a hybrid
// signature has its own, minimal chain: ML-DSA root, then this certificate, then the manifest signature.
type PQKeyCert struct {
	// Environment the key belongs to (key 1).
	Environment string `cbor:"1,keyasint"`
	// PublicKey is the FIPS 204 encoding of the ML-DSA-65 signing key (key 2).
	PublicKey []byte `cbor:"2,keyasint"`
	// NotBefore and NotAfter bound the certificate's validity, in Unix seconds (keys 3 and 4).
	NotBefore int64 `cbor:"3,keyasint"`
	NotAfter  int64 `cbor:"4,keyasint"`
}

// SignTrustUpdate encodes u and signs it as a COSE_Sign (tag 98) with one signature per distinct key in
// signers: the previous version's root keys and the new version's. A key given twice (a root kept across
// versions) signs once.
func SignTrustUpdate(u *TrustUpdate, signers ...crypto.Signer) ([]byte, error) {
	payload, err := MarshalDeterministic(u)
	if err != nil {
		return nil, fmt.Errorf("encode trust update %d: %w", u.Version, err)
	}
	msg := cose.NewSignMessage()
	msg.Headers.Protected = cose.ProtectedHeader{cose.HeaderLabelContentType: ContentTypeTrustUpdate}
	msg.Payload = payload
	var coseSigners []cose.Signer
	var seen [][]byte
	for _, s := range signers {
		kid, err := KeyID(s.Public())
		if err != nil {
			return nil, err
		}
		dup := false
		for _, k := range seen {
			dup = dup || bytes.Equal(k, kid)
		}
		if dup {
			continue
		}
		seen = append(seen, kid)
		cs, err := COSESigner(s)
		if err != nil {
			return nil, err
		}
		sig := cose.NewSignature()
		sig.Headers.Protected = cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cs.Algorithm(), cose.HeaderLabelKeyID: kid}
		msg.Signatures = append(msg.Signatures, sig)
		coseSigners = append(coseSigners, cs)
	}
	if err := msg.Sign(rand.Reader, nil, coseSigners...); err != nil {
		return nil, fmt.Errorf("sign trust update %d: %w", u.Version, err)
	}
	return msg.MarshalCBOR()
}

// SignPQKeyCert encodes c and signs it with the ML-DSA-65 firmware root as a COSE_Sign1 (tag 18).
func SignPQKeyCert(c *PQKeyCert, root crypto.Signer) ([]byte, error) {
	payload, err := MarshalDeterministic(c)
	if err != nil {
		return nil, err
	}
	cs, err := COSESigner(root)
	if err != nil {
		return nil, err
	}
	kid, err := KeyID(root.Public())
	if err != nil {
		return nil, err
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected = cose.ProtectedHeader{
		cose.HeaderLabelAlgorithm: cs.Algorithm(), cose.HeaderLabelContentType: ContentTypePQKeyCert, cose.HeaderLabelKeyID: kid,
	}
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, cs); err != nil {
		return nil, fmt.Errorf("sign ML-DSA key certificate: %w", err)
	}
	return msg.MarshalCBOR()
}
