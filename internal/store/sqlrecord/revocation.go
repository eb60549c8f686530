package sqlrecord

import (
	"github.com/keyward/keyward/internal/store"
)

// Column lists of the revocation records, in the order of the Scan and Args functions below.
const (
	// RevocationEntryColumns reads a certificate's revocation state; a certificate never revoked has
	// revocation_seq NULL, which reads as 0.
	RevocationEntryColumns = `serial, issuer_id, status, revocation_reason, revoked_at, invalidity_date, not_after, COALESCE(revocation_seq, 0)`
	// CRLEntryColumns is what a CRL entry needs (RFC 5280 5.1.2.6: serial, revocation date, reason, invalidity
	// date), and the expiry that decides whether it is listed.
	CRLEntryColumns         = `serial, revoked_at, revocation_reason, invalidity_date, not_after`
	CertStatusColumns       = `serial, issuer_id, status, revocation_reason, not_after`
	CRLColumns              = `issuer_id, number, delta, base_number, this_update, next_update, max_seq, entries, der, created_at`
	RevocationSignerColumns = `key_uri, issuer_id, purpose, cert_der, not_after, created_at`
	FilterColumns           = `scope, version, base_version, issued_at, next_update, data`
)

// ScanRevocationEntry reads a row of RevocationEntryColumns.
func (c Codec) ScanRevocationEntry(r Row) (*store.RevocationEntry, error) {
	var e store.RevocationEntry
	if err := r.Scan(&e.Serial, &e.IssuerID, &e.Status, &e.Reason, c.ScanNullTime(&e.RevokedAt),
		c.ScanNullTime(&e.InvalidityDate), c.ScanTime(&e.NotAfter), &e.Seq); err != nil {
		return nil, err
	}
	return &e, nil
}

// ScanCRLEntry reads a row of CRLEntryColumns into e, which the caller has given its issuer and status. It
// fills a caller's entry rather than returning a new one so that a CRL build, which reads every revoked
// certificate of a CA, allocates its entries a page at a time.
func (c Codec) ScanCRLEntry(r Row, e *store.RevocationEntry) error {
	return r.Scan(&e.Serial, c.ScanNullTime(&e.RevokedAt), &e.Reason, c.ScanNullTime(&e.InvalidityDate),
		c.ScanTime(&e.NotAfter))
}

// ScanCertStatus reads a row of CertStatusColumns.
func (c Codec) ScanCertStatus(r Row) (*store.CertStatus, error) {
	var s store.CertStatus
	if err := r.Scan(&s.Serial, &s.IssuerID, &s.Status, &s.Reason, c.ScanTime(&s.NotAfter)); err != nil {
		return nil, err
	}
	return &s, nil
}

// ScanCRL reads a row of CRLColumns.
func (c Codec) ScanCRL(r Row) (*store.PublishedCRL, error) {
	var x store.PublishedCRL
	if err := r.Scan(&x.IssuerID, &x.Number, c.ScanBool(&x.Delta), &x.BaseNumber, c.ScanTime(&x.ThisUpdate),
		c.ScanTime(&x.NextUpdate), &x.MaxSeq, &x.Entries, &x.DER, c.ScanTime(&x.CreatedAt)); err != nil {
		return nil, err
	}
	return &x, nil
}

// CRLArgs returns x's values in the order of CRLColumns.
func (c Codec) CRLArgs(x *store.PublishedCRL) []any {
	return []any{x.IssuerID, x.Number, x.Delta, x.BaseNumber, c.BindTime(x.ThisUpdate), c.BindTime(x.NextUpdate),
		x.MaxSeq, x.Entries, x.DER, c.BindTime(x.CreatedAt)}
}

// ScanRevocationSigner reads a row of RevocationSignerColumns.
func (c Codec) ScanRevocationSigner(r Row) (*store.RevocationSigner, error) {
	var s store.RevocationSigner
	if err := r.Scan(&s.KeyURI, &s.IssuerID, &s.Purpose, &s.CertDER, c.ScanTime(&s.NotAfter),
		c.ScanTime(&s.CreatedAt)); err != nil {
		return nil, err
	}
	return &s, nil
}

// RevocationSignerArgs returns s's values in the order of RevocationSignerColumns.
func (c Codec) RevocationSignerArgs(s *store.RevocationSigner) []any {
	return []any{s.KeyURI, s.IssuerID, s.Purpose, s.CertDER, c.BindTime(s.NotAfter), c.BindTime(s.CreatedAt)}
}

// ScanFilter reads a row of FilterColumns.
func (c Codec) ScanFilter(r Row) (*store.PublishedFilter, error) {
	var f store.PublishedFilter
	if err := r.Scan(&f.Scope, &f.Version, &f.BaseVersion, c.ScanTime(&f.IssuedAt), c.ScanTime(&f.NextUpdate),
		&f.Data); err != nil {
		return nil, err
	}
	return &f, nil
}

// FilterArgs returns f's values in the order of FilterColumns.
func (c Codec) FilterArgs(f *store.PublishedFilter) []any {
	return []any{f.Scope, f.Version, f.BaseVersion, c.BindTime(f.IssuedAt), c.BindTime(f.NextUpdate), f.Data}
}
