package ca

import (
	"context"
	"crypto"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/pkg/firmware/manifest"
)

// Firmware signatures (pkg/firmware/manifest): manifests by firmware-signing keys, trust updates and ML-DSA key
// certificates by firmware roots (purpose root-signing). Which keys sign, and whether a release may be signed
// at all, is the registration authority's decision.

// FirmwareKey names one firmware-signing key and its certificate: an ECDSA key with its X.509 certificate, or an
// ML-DSA-65 key with its COSE key certificate.
type FirmwareKey struct {
	KeyURI string
	Cert   []byte
}

// SignManifest signs the encoded manifest payload with the ECDSA key, and with the ML-DSA-65 key too when pq is
// not nil (a hybrid COSE_Sign).
func (c *Custodian) SignManifest(ctx context.Context, payload []byte, classical FirmwareKey, pq *FirmwareKey) ([]byte, error) {
	cs, err := c.signer(ctx, classical.KeyURI, keystore.PurposeFirmwareSigning, false)
	if err != nil {
		return nil, err
	}
	var p *manifest.PQSigner
	if pq != nil {
		ps, err := c.signer(ctx, pq.KeyURI, keystore.PurposeFirmwareSigning, false)
		if err != nil {
			return nil, err
		}
		p = &manifest.PQSigner{Key: ps, KeyCert: pq.Cert}
	}
	return manifest.SignManifest(payload, manifest.ClassicalSigner{Key: cs, CertDER: classical.Cert}, p)
}

// SignTrustUpdate signs u with each of the firmware root keys at rootURIs (purpose root-signing): the previous
// trust version's roots and the new version's.
func (c *Custodian) SignTrustUpdate(ctx context.Context, u *manifest.TrustUpdate, rootURIs ...string) ([]byte, error) {
	signers := make([]crypto.Signer, 0, len(rootURIs))
	for _, uri := range rootURIs {
		s, err := c.signer(ctx, uri, keystore.PurposeRootSigning, false)
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	return manifest.SignTrustUpdate(u, signers...)
}

// SignPQKeyCert signs an ML-DSA-65 signing key's certificate with the ML-DSA-65 firmware root at rootURI.
func (c *Custodian) SignPQKeyCert(ctx context.Context, rootURI string, kc *manifest.PQKeyCert) ([]byte, error) {
	s, err := c.signer(ctx, rootURI, keystore.PurposeRootSigning, false)
	if err != nil {
		return nil, err
	}
	return manifest.SignPQKeyCert(kc, s)
}

// PublicKey returns the public key of the key at uri (purpose), for a record of a key this process did not
// generate (a firmware root that signs a trust update).
func (c *Custodian) PublicKey(ctx context.Context, uri string, purpose keystore.Purpose) (crypto.PublicKey, error) {
	s, err := c.signer(ctx, uri, purpose, false)
	if err != nil {
		return nil, err
	}
	return s.Public(), nil
}
