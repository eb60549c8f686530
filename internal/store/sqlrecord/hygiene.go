package sqlrecord

import "github.com/keyward/keyward/internal/store"

// Column lists of the fleet scan's tables (migration 0016), in the order of the Scan and Args functions below.
const (
	CSRSignatureColumns        = `serial, algorithm, digest, r, s`
	ImportedCertificateColumns = `environment, der_sha256, product_line, spki_sha256, subject, serial, issuer, not_after, source, der, imported_at`
)

// Statements on the fleet scan's tables that both dialects run as they are. PostgreSQL writes a certificate's
// CSR signature within the certificate's own insert statement (postgres.insertCertificate) instead of
// InsertCSRSignature.
const (
	InsertCSRSignature = `INSERT INTO csr_signatures (` + CSRSignatureColumns + `) VALUES ($1, $2, $3, $4, $5)`
	// WalkCertificates reads a page of every certificate: serials after $1, at most $2, in serial order (the
	// certificates' serial index answers it as a range scan).
	WalkCertificates = `SELECT ` + CertificateColumns + ` FROM certificates WHERE serial > $1 ORDER BY serial LIMIT $2`

	InsertImportedCertificate = `INSERT INTO imported_certificates (` + ImportedCertificateColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	// WalkImportedCertificates reads a page of the certificates imported for environment $1: DER hashes after
	// $2, at most $3, in that order.
	WalkImportedCertificates = `SELECT ` + ImportedCertificateColumns + ` FROM imported_certificates
		WHERE environment = $1 AND der_sha256 > $2 ORDER BY der_sha256 LIMIT $3`
	ImportedBySPKI = `SELECT ` + ImportedCertificateColumns + ` FROM imported_certificates WHERE spki_sha256 = $1 ORDER BY environment, der_sha256`

	// SharedKeys reads the SPKI hashes bound to more than one subject by certificates issued here or imported:
	// UNION keeps each (key, subject) pair once, so a count above one is a second subject.
	SharedKeys = `SELECT spki_sha256 FROM (
		SELECT spki_sha256, subject FROM certificates
		UNION
		SELECT spki_sha256, subject FROM imported_certificates
	) k GROUP BY spki_sha256 HAVING COUNT(*) > 1 ORDER BY spki_sha256`

	// CSRNonceCollisions reads every certificate whose CSR signature's R another kept signature shares, with
	// that signature: one full read of csr_signatures grouped by r, then the few rows of the shared values. The
	// certificate's columns are CertificateColumns of the table named c (TestStatements checks it).
	CSRNonceCollisions = `SELECT c.serial, c.issuer_id, c.profile, c.profile_version, c.subject, c.not_before, c.not_after,
		c.spki_sha256, c.der, c.status, c.revoked_at, c.revocation_reason, c.created_at, s.algorithm, s.digest, s.r, s.s
		FROM csr_signatures s JOIN certificates c ON c.serial = s.serial
		WHERE s.r IN (SELECT r FROM csr_signatures GROUP BY r HAVING COUNT(*) > 1)
		ORDER BY s.r, c.serial`
)

// CSRSignatureArgs returns the values of InsertCSRSignature for certificate serial.
func (c Codec) CSRSignatureArgs(serial string, s *store.CSRSignature) []any {
	return []any{serial, s.Algorithm, s.Digest, s.R, s.S}
}

// ScanSignedCertificate reads a row of CSRNonceCollisions.
func (c Codec) ScanSignedCertificate(r Row) (*store.SignedCertificate, error) {
	var x store.Certificate
	var s store.CSRSignature
	if err := r.Scan(&x.Serial, &x.IssuerID, &x.Profile, &x.ProfileVersion, &x.Subject, c.ScanTime(&x.NotBefore),
		c.ScanTime(&x.NotAfter), &x.SPKISHA256, &x.DER, &x.Status, c.ScanNullTime(&x.RevokedAt),
		&x.RevocationReason, c.ScanTime(&x.CreatedAt), &s.Algorithm, &s.Digest, &s.R, &s.S); err != nil {
		return nil, err
	}
	x.SPKISHA256, x.DER = nonEmpty(x.SPKISHA256), nonEmpty(x.DER)
	return &store.SignedCertificate{Cert: &x, Sig: s}, nil
}

// ImportedCertificateArgs returns x's values in the order of ImportedCertificateColumns.
func (c Codec) ImportedCertificateArgs(x *store.ImportedCertificate) []any {
	return []any{x.Environment, x.DERSHA256, x.ProductLine, x.SPKISHA256, x.Subject, x.Serial, x.Issuer,
		c.BindTime(x.NotAfter), x.Source, x.DER, c.BindTime(x.ImportedAt)}
}

// ScanImportedCertificate reads a row of ImportedCertificateColumns.
func (c Codec) ScanImportedCertificate(r Row) (*store.ImportedCertificate, error) {
	var x store.ImportedCertificate
	if err := r.Scan(&x.Environment, &x.DERSHA256, &x.ProductLine, &x.SPKISHA256, &x.Subject, &x.Serial, &x.Issuer,
		c.ScanTime(&x.NotAfter), &x.Source, &x.DER, c.ScanTime(&x.ImportedAt)); err != nil {
		return nil, err
	}
	return &x, nil
}
