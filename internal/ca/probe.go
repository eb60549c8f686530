package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
)

// probeLabel separates a readiness probe's message from anything a CA key signs for real: the probe signs the
// SHA-256 of this label and 32 fresh random bytes, which is no DER structure (certificate, CRL, OCSP response)
// and is never stored or returned.
const probeLabel = "keyward readiness probe\x00"

// ProbeKey proves that CA id's key is reachable and signs: it signs a fresh probe message through the CA's own
// guard and backend (PKCS#11 token, software keystore), checks the signature with the CA certificate's public
// key and discards it. It fails for a CA that may not sign now (retired, its key destroyed) and reports
// ErrOffline for an offline root, whose key is not held here.
func (c *Custodian) ProbeKey(ctx context.Context, id string) error {
	iss, err := c.Issuer(ctx, id)
	if err != nil {
		return err
	}
	if err := iss.Usable(); err != nil {
		return err
	}
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("probe of CA %s: %w", id, err)
	}
	msg := append([]byte(probeLabel), nonce[:]...)
	digest := sha256.Sum256(msg)
	pub := iss.cert.PublicKey
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		sig, err := iss.guard.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return fmt.Errorf("CA %s key cannot sign: %w", id, err)
		}
		if !ecdsa.VerifyASN1(k, digest[:], sig) {
			return fmt.Errorf("CA %s key signed a probe that its certificate's key does not verify", id)
		}
	case ed25519.PublicKey:
		sig, err := iss.guard.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			return fmt.Errorf("CA %s key cannot sign: %w", id, err)
		}
		if !ed25519.Verify(k, msg, sig) {
			return fmt.Errorf("CA %s key signed a probe that its certificate's key does not verify", id)
		}
	case *rsa.PublicKey:
		sig, err := iss.guard.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return fmt.Errorf("CA %s key cannot sign: %w", id, err)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig); err != nil {
			return fmt.Errorf("CA %s key signed a probe that its certificate's key does not verify", id)
		}
	default:
		return fmt.Errorf("CA %s: a probe of a %T key is not supported", id, pub)
	}
	return nil
}
