package manifest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"filippo.io/mldsa"
	"github.com/veraison/go-cose"
)

// COSE parameters of Keyward's signed structures.
const (
	// AlgMLDSA65 is the COSE algorithm identifier of ML-DSA-65 (FIPS 204), as assigned by
	// draft-ietf-cose-dilithium. go-cose has no ML-DSA, so this package supplies the signer and verifier.
	AlgMLDSA65 cose.Algorithm = -49

	// HeaderPQKeyCert is the (private-use, RFC 9052 section 16.2) header label of the ML-DSA signing key's
	// certificate: a COSE_Sign1 by the environment's ML-DSA firmware root (see SignPQKeyCert).
	HeaderPQKeyCert int64 = -65537

	// ContentTypeManifest, ContentTypeTrustUpdate and ContentTypePQKeyCert are the content types (COSE header
	// 3) of the three signed structures. They are in the protected header, so a signature over one structure
	// can never be passed off as a signature over another.
	ContentTypeManifest    = "application/kw-fw-manifest+cbor"
	ContentTypeTrustUpdate = "application/kw-fw-trust+cbor"
	ContentTypePQKeyCert   = "application/kw-fw-pqkey+cbor"

	// MaxEnvelopeSize bounds a signed manifest or trust update as read from outside. A classical manifest is
	// about 600 bytes; a hybrid one about 9 KiB, mostly ML-DSA-65 signatures and key.
	MaxEnvelopeSize = 32 << 10
)

// KeyID returns the key identifier Keyward uses for pub: the SHA-256 of the DER SubjectPublicKeyInfo of an
// ECDSA key, or of the FIPS 204 encoding of an ML-DSA public key.
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	if k, ok := pub.(*mldsa.PublicKey); ok {
		h := sha256.Sum256(k.Bytes())
		return h[:], nil
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	h := sha256.Sum256(der)
	return h[:], nil
}

// COSESigner returns a go-cose signer for key: ES256 for a P-256 key, ES384 for P-384, ML-DSA-65 for an ML-DSA-65
// key. key may live in an HSM (any crypto.Signer); ML-DSA signs the whole message, ECDSA a digest of it.
func COSESigner(key crypto.Signer) (cose.Signer, error) {
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return cose.NewSigner(cose.AlgorithmES256, key)
		case elliptic.P384():
			return cose.NewSigner(cose.AlgorithmES384, key)
		}
		return nil, fmt.Errorf("COSE signer: ECDSA curve %s is not accepted; use P-256 or P-384", pub.Curve.Params().Name)
	case *mldsa.PublicKey:
		if pub.Parameters() != mldsa.MLDSA65() {
			return nil, fmt.Errorf("COSE signer: %s is not accepted; use ML-DSA-65", pub.Parameters())
		}
		return mldsaSigner{key}, nil
	}
	return nil, fmt.Errorf("COSE signer: key type %T is not accepted; use ECDSA P-256/P-384 or ML-DSA-65", key.Public())
}

type mldsaSigner struct{ key crypto.Signer }

func (s mldsaSigner) Algorithm() cose.Algorithm { return AlgMLDSA65 }

// Sign signs content itself (pure ML-DSA, FIPS 204 algorithm 2 with an empty context): a zero hash in the
// options tells the signer not to expect a digest.
func (s mldsaSigner) Sign(r io.Reader, content []byte) ([]byte, error) {
	return s.key.Sign(r, content, crypto.Hash(0))
}

// MLDSAVerifier is a go-cose verifier for an ML-DSA-65 public key.
type MLDSAVerifier struct{ Key *mldsa.PublicKey }

// Algorithm returns AlgMLDSA65.
func (v MLDSAVerifier) Algorithm() cose.Algorithm { return AlgMLDSA65 }

// Verify checks an ML-DSA-65 signature over content with an empty context.
func (v MLDSAVerifier) Verify(content, sig []byte) error {
	if v.Key == nil {
		return errors.New("ML-DSA-65 verifier has no key")
	}
	return mldsa.Verify(v.Key, content, sig, nil)
}

// ClassicalSigner is the ECDSA firmware-signing key and its certificate (DER, issued by the environment's
// firmware root), carried in the x5chain header (RFC 9360) so a device needs only the pinned root.
type ClassicalSigner struct {
	Key     crypto.Signer
	CertDER []byte
}

// PQSigner is the ML-DSA-65 firmware-signing key and its key certificate (see SignPQKeyCert).
type PQSigner struct {
	Key     crypto.Signer
	KeyCert []byte
}

// SignManifest signs the encoded manifest payload. Without pq it returns a COSE_Sign1 (tag 18) by the ECDSA key;
// with pq, a COSE_Sign (tag 98) with two signatures, ECDSA and ML-DSA-65, both of which a verifier requires.
func SignManifest(payload []byte, classical ClassicalSigner, pq *PQSigner) ([]byte, error) {
	cs, err := COSESigner(classical.Key)
	if err != nil {
		return nil, err
	}
	kid, err := KeyID(classical.Key.Public())
	if err != nil {
		return nil, err
	}
	if pq == nil {
		msg := cose.NewSign1Message()
		msg.Headers.Protected = cose.ProtectedHeader{
			cose.HeaderLabelAlgorithm:   cs.Algorithm(),
			cose.HeaderLabelContentType: ContentTypeManifest,
			cose.HeaderLabelKeyID:       kid,
			cose.HeaderLabelX5Chain:     classical.CertDER,
		}
		msg.Payload = payload
		if err := msg.Sign(rand.Reader, nil, cs); err != nil {
			return nil, fmt.Errorf("sign manifest: %w", err)
		}
		return msg.MarshalCBOR()
	}
	ps, err := COSESigner(pq.Key)
	if err != nil {
		return nil, err
	}
	pqKID, err := KeyID(pq.Key.Public())
	if err != nil {
		return nil, err
	}
	msg := cose.NewSignMessage()
	msg.Headers.Protected = cose.ProtectedHeader{cose.HeaderLabelContentType: ContentTypeManifest}
	msg.Payload = payload
	s1 := cose.NewSignature()
	s1.Headers.Protected = cose.ProtectedHeader{
		cose.HeaderLabelAlgorithm: cs.Algorithm(), cose.HeaderLabelKeyID: kid, cose.HeaderLabelX5Chain: classical.CertDER,
	}
	s2 := cose.NewSignature()
	s2.Headers.Protected = cose.ProtectedHeader{
		cose.HeaderLabelAlgorithm: ps.Algorithm(), cose.HeaderLabelKeyID: pqKID, HeaderPQKeyCert: pq.KeyCert,
	}
	msg.Signatures = []*cose.Signature{s1, s2}
	if err := msg.Sign(rand.Reader, nil, cs, ps); err != nil {
		return nil, fmt.Errorf("sign hybrid manifest: %w", err)
	}
	return msg.MarshalCBOR()
}
