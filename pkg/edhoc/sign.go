package edhoc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// sigStructure is the COSE_Sign1 Sig_structure EDHOC signs (RFC 9528 sections 5.3.2 and 5.4.2):
// ["Signature1", << ID_CRED_x >>, << TH_x, CRED_x, ? EAD_x >>, MAC_x].
func sigStructure(idCred, externalAAD, mac []byte) []byte {
	b := []byte{0x84}
	b = appendTstr(b, "Signature1")
	b = appendBstr(b, idCred)
	b = appendBstr(b, externalAAD)
	return appendBstr(b, mac)
}

// checkSigningKey checks that key can make the suite's signatures.
func checkSigningKey(key crypto.PrivateKey, p *suiteParams) (crypto.Signer, error) {
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: a signature method needs a signing key, not %T", ErrConfig, key)
	}
	switch pub := s.Public().(type) {
	case ed25519.PublicKey:
		if p.signature == "EdDSA" {
			return s, nil
		}
	case *ecdsa.PublicKey:
		if p.signature == "ES256" && pub.Curve == elliptic.P256() {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: a %T key cannot sign with the suite's %s", ErrConfig, s.Public(), p.signature)
}

// sign signs msg with EdDSA or ES256. ES256 signatures are r || s, 32 bytes each (RFC 9053 section 2.1).
func sign(s crypto.Signer, p *suiteParams, msg []byte) ([]byte, error) {
	if p.signature == "EdDSA" {
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	digest := sha256.Sum256(msg)
	der, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	var r, ss big.Int
	var inner cryptobyte.String
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() || !inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&ss) || !inner.Empty() {
		return nil, fmt.Errorf("edhoc: signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	ss.FillBytes(out[32:])
	return out, nil
}

// verify checks a signature made by sign.
func verify(pub crypto.PublicKey, p *suiteParams, msg, sig []byte) error {
	if dk, ok := pub.(*dualKey); ok {
		pub = dk.sig
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if p.signature == "EdDSA" && len(sig) == ed25519.SignatureSize && ed25519.Verify(k, msg, sig) {
			return nil
		}
	case *ecdsa.PublicKey:
		if p.signature == "ES256" && k.Curve == elliptic.P256() && len(sig) == 64 {
			digest := sha256.Sum256(msg)
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			if ecdsa.Verify(k, digest[:], r, s) {
				return nil
			}
		}
	default:
		return fmt.Errorf("%w: peer credential holds a %T key, which cannot sign with %s", ErrAuthentication, pub, p.signature)
	}
	return fmt.Errorf("%w: signature does not verify", ErrAuthentication)
}
