package store

import (
	"context"
	"time"
)

// This file holds the records the fleet key-hygiene scan reads besides the certificates themselves: what is
// kept of each accepted CSR's signature, and certificates issued elsewhere that are imported for the scan only.

// CSRSignature is what is kept of the signature on the CSR a certificate was issued from (RFC 2986 4.2), enough
// to find a signature nonce used twice and, for ECDSA, to solve for the private key: about a hundred octets a
// certificate instead of the whole request. InsertCertificate writes it, in the same statement or transaction
// as the certificate, when Certificate.CSR is set.
type CSRSignature struct {
	Algorithm int    // the x509.SignatureAlgorithm of the CSR's signature
	Digest    []byte // ECDSA: the hash of the signed CertificationRequestInfo under the signature's hash; Ed25519: its SHA-256
	R, S      []byte // the signature's halves, unsigned big-endian (ECDSA r and s; Ed25519 R and S)
}

// SignedCertificate is a certificate with the CSR signature kept for it.
type SignedCertificate struct {
	Cert *Certificate
	Sig  CSRSignature
}

// ImportedCertificate is a certificate issued by another system, imported so that the fleet scan looks at its
// key too. It is never trusted, served, revoked or counted as issued; it lives in a table of its own.
type ImportedCertificate struct {
	Environment string // the environment whose scans include it
	ProductLine string // "" when the importer named none
	DERSHA256   []byte // SHA-256 of DER: the same certificate is imported once per environment
	SPKISHA256  []byte
	Subject     string // the subject DN as Certificate.Subject writes one (pkix.Name.String)
	Serial      string // lower-case hex, no leading zeros
	Issuer      string // the issuer DN
	NotAfter    time.Time
	Source      string // where it came from: file name and position in the file
	DER         []byte
	ImportedAt  time.Time
}

// HygieneTx is what a transaction offers the fleet scan's imports; Tx embeds it.
type HygieneTx interface {
	// InsertImportedCertificate stores c (ErrExists if the same certificate is imported for its environment).
	InsertImportedCertificate(ctx context.Context, c *ImportedCertificate) error
}

// HygieneStore is what the fleet scan reads; Reader embeds it. Every method reads the whole store once: the
// scan is a batch job, and no index is kept for it that issuance would pay for.
type HygieneStore interface {
	// WalkCertificates calls fn for every certificate, in serial order, reading in pages so that no query stays
	// open while fn runs; it stops at fn's first error and returns it unwrapped.
	WalkCertificates(ctx context.Context, fn func(*Certificate) error) error
	// WalkImportedCertificates calls fn for every certificate imported for env, in the order of their DER
	// hashes, reading in pages; it stops at fn's first error and returns it unwrapped.
	WalkImportedCertificates(ctx context.Context, env string, fn func(*ImportedCertificate) error) error
	// ImportedBySPKI returns the imported certificates whose SPKI hash is h, of every environment.
	ImportedBySPKI(ctx context.Context, h []byte) ([]*ImportedCertificate, error)
	// SharedKeys returns the SPKI hashes that certificates, issued here or imported, bind to more than one
	// subject, in byte order.
	SharedKeys(ctx context.Context) ([][]byte, error)
	// CSRNonceCollisions returns every certificate whose CSR signature's R is the R of another kept CSR
	// signature, with that signature, ordered by R and serial.
	CSRNonceCollisions(ctx context.Context) ([]*SignedCertificate, error)
}
