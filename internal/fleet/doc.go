// Package fleet is the fleet key-hygiene scan: it looks across every key and signature Keyward has seen (the
// keys of the certificates it issued and of certificates imported from other systems, the CSR signatures kept
// at issuance, the CA and firmware-signing keys) for what a weak or broken device random number generator
// leaves behind: one public key on two devices, RSA moduli sharing a prime (batch GCD), ECDSA signatures by one
// key that reuse a nonce (the private key recovered and confirmed), a signature nonce repeated across keys, and
// keys on weak or invalid curves or of too small sizes. Each finding names the devices and certificates and
// recommends revocation; Revoke carries it out through the RA. It also reads the files of 'fleet import-certs'
// (ParseCertFile) and writes the scan's report where 'keyward evidence' finds it (SaveReport).
//
// It may import internal/hygiene (the detectors), internal/ra (revocation and imports, which are decisions)
// and internal/store (read-only: it reads through store.Reader). It must never write to the store itself, keep
// or print a recovered private key, or revoke a certificate another system issued.
package fleet
