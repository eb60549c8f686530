package sqlrecord

import (
	"fmt"
	"strconv"

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
	CRLColumns              = `issuer_id, number, delta, base_number, this_update, next_update, max_seq, entries, size, der, created_at`
	RevocationSignerColumns = `key_uri, issuer_id, purpose, cert_der, not_after, created_at`
	FilterColumns           = `scope, version, base_version, issued_at, next_update, data`
)

// Statements on the revocation records that both dialects run as they are.
const (
	// NextCounter increments counter $1, creating it at 1, and returns its new value.
	NextCounter = `INSERT INTO revocation_counters (name, value) VALUES ($1, 1)
		ON CONFLICT (name) DO UPDATE SET value = revocation_counters.value + 1 RETURNING value`
	// RevocationHead reads the counter every revoke and release from hold advances.
	RevocationHead = `SELECT value FROM revocation_counters WHERE name = 'changes'`

	SelectRevocationEntry = `SELECT ` + RevocationEntryColumns + ` FROM certificates WHERE serial = $1`
	// Revoke revokes a certificate unless it is revoked already, except that a certificate on hold may be
	// revoked for a permanent reason (RFC 5280 5.3.1); see RevokeArgs.
	Revoke = `UPDATE certificates SET status = $1, revoked_at = $2, revocation_reason = $3,
		invalidity_date = $4, revocation_seq = $5
		WHERE serial = $6 AND (status <> $1 OR (revocation_reason = $7 AND $3 <> $7))`
	// Unhold releases certificate $3 from hold with revocation sequence number $2; see UnholdArgs.
	Unhold = `UPDATE certificates SET status = $1, revoked_at = NULL, revocation_reason = 0,
		invalidity_date = NULL, revocation_seq = $2 WHERE serial = $3 AND status = $4 AND revocation_reason = $5`
	// WalkRevocationChanges reads the certificates of issuer $1 whose revocation sequence number is after $2,
	// at most $3 of them.
	WalkRevocationChanges = `SELECT ` + RevocationEntryColumns + ` FROM certificates
		WHERE issuer_id = $1 AND revocation_seq > $2 ORDER BY revocation_seq LIMIT $3`

	InsertCRL = `INSERT INTO published_crls (` + CRLColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	// PruneCRLs deletes the CRLs of issuer $1 and kind $2 (delta or complete) but the newest $3.
	PruneCRLs = `DELETE FROM published_crls WHERE issuer_id = $1 AND delta = $2 AND number NOT IN
		(SELECT number FROM published_crls WHERE issuer_id = $1 AND delta = $2 ORDER BY number DESC LIMIT $3)`
	// PruneCRLChunks deletes up to $3 chunks of issuer $1 and kind $2 numbered below the oldest CRL of that kind
	// stored (PruneCRLs leaves the newest few): those of the CRLs PruneCRLs deleted, and of publications that
	// failed before storing their CRL. Deleting a chunk reads all of it (SQLite follows its overflow pages), so
	// they go a few at a time, each batch in a short transaction of its own.
	PruneCRLChunks = `DELETE FROM published_crl_chunks WHERE issuer_id = $1 AND delta = $2 AND (number, seq) IN
		(SELECT number, seq FROM published_crl_chunks WHERE issuer_id = $1 AND delta = $2 AND number <
		(SELECT COALESCE(MIN(number), 0) FROM published_crls WHERE issuer_id = $1 AND delta = $2) ORDER BY number, seq LIMIT $3)`
	// InsertCRLChunk stores chunk $4 of CRL $3 of issuer $1 and kind $2.
	InsertCRLChunk = `INSERT INTO published_crl_chunks (issuer_id, delta, number, seq, data) VALUES ($1, $2, $3, $4, $5)`
	// CRLChunkTotals counts the chunks of CRL $3 of issuer $1 and kind $2 and their octets.
	CRLChunkTotals = `SELECT COUNT(*), COALESCE(SUM(length(data)), 0) FROM published_crl_chunks
		WHERE issuer_id = $1 AND delta = $2 AND number = $3`
	// SelectCRLChunk reads chunk $4 of CRL $3 of issuer $1 and kind $2.
	SelectCRLChunk = `SELECT data FROM published_crl_chunks WHERE issuer_id = $1 AND delta = $2 AND number = $3 AND seq = $4`
	// LatestCRL reads the newest CRL of issuer $1 and kind $2.
	LatestCRL = `SELECT ` + CRLColumns + ` FROM published_crls WHERE issuer_id = $1 AND delta = $2 ORDER BY number DESC LIMIT 1`

	InsertRevocationSigner = `INSERT INTO revocation_signers (` + RevocationSignerColumns + `) VALUES ($1, $2, $3, $4, $5, $6)`
	// LatestRevocationSigner reads the newest signer of issuer $1 for purpose $2.
	LatestRevocationSigner = `SELECT ` + RevocationSignerColumns + ` FROM revocation_signers
		WHERE issuer_id = $1 AND purpose = $2 ORDER BY created_at DESC LIMIT 1`

	InsertFilter = `INSERT INTO published_filters (` + FilterColumns + `) VALUES ($1, $2, $3, $4, $5, $6)`
	// SelectFilter reads the filter of scope $1, version $2 and base version $3.
	SelectFilter = `SELECT ` + FilterColumns + ` FROM published_filters WHERE scope = $1 AND version = $2 AND base_version = $3`
	// LatestFilter reads the newest full filter of scope $1.
	LatestFilter = `SELECT ` + FilterColumns + ` FROM published_filters WHERE scope = $1 AND base_version = 0 ORDER BY version DESC LIMIT 1`
)

// RevokeArgs returns the arguments of Revoke, with revocation sequence number seq.
func (c Codec) RevokeArgs(r *store.Revocation, seq int64) []any {
	return []any{store.CertStatusRevoked, c.BindTime(r.RevokedAt), r.Reason, c.BindNullTime(r.InvalidityDate), seq,
		r.Serial, store.ReasonCertificateHold}
}

// UnholdArgs returns the arguments of Unhold, with revocation sequence number seq.
func UnholdArgs(serial string, seq int64) []any {
	return []any{store.CertStatusValid, seq, serial, store.CertStatusRevoked, store.ReasonCertificateHold}
}

// certQuery adds the conditions of q.
func (c Codec) certQuery(w *where, q store.CertQuery) {
	w.in("issuer_id", q.IssuerIDs)
	w.eq("profile", q.Profile)
	w.eq("subject", q.Subject)
	w.eq("status", q.Status)
	if !q.IssuedFrom.IsZero() {
		w.cond("created_at", ">=", c.BindTime(q.IssuedFrom))
	}
	if !q.IssuedTo.IsZero() {
		w.cond("created_at", "<", c.BindTime(q.IssuedTo))
	}
	if !q.NotAfterFrom.IsZero() {
		w.cond("not_after", ">=", c.BindTime(q.NotAfterFrom))
	}
}

// WalkCertStatus returns the query that reads a page of the certificates matching q in serial order, and its
// arguments but the last two, which are the serial to read after and the page size.
func (c Codec) WalkCertStatus(q store.CertQuery) (string, []any) {
	var w where
	c.certQuery(&w, q)
	after := "$" + strconv.Itoa(len(w.args)+1)
	w.conds = append(w.conds, "serial > "+after)
	limit := "$" + strconv.Itoa(len(w.args)+2)
	return `SELECT ` + CertStatusColumns + ` FROM certificates` + w.clause() + ` ORDER BY serial LIMIT ` + limit, w.args
}

// CountCertificates returns the query that counts the certificates matching q, and its arguments.
func (c Codec) CountCertificates(q store.CertQuery) (string, []any) {
	var w where
	c.certQuery(&w, q)
	return `SELECT count(*) FROM certificates` + w.clause(), w.args
}

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
		c.ScanTime(&x.NextUpdate), &x.MaxSeq, &x.Entries, &x.Size, &x.DER, c.ScanTime(&x.CreatedAt)); err != nil {
		return nil, err
	}
	if len(x.DER) == 0 {
		x.DER = nil // stored in chunks
	}
	return &x, nil
}

// CRLArgs returns x's values in the order of CRLColumns. A CRL stored in chunks keeps an empty der.
func (c Codec) CRLArgs(x *store.PublishedCRL) []any {
	size, der := x.Size, x.DER
	if size == 0 {
		size = int64(len(der))
	}
	if der == nil {
		der = []byte{}
	}
	return []any{x.IssuerID, x.Number, x.Delta, x.BaseNumber, c.BindTime(x.ThisUpdate), c.BindTime(x.NextUpdate),
		x.MaxSeq, x.Entries, size, der, c.BindTime(x.CreatedAt)}
}

// CheckCRLChunks checks what CRLChunkTotals counted for c against c's size: the chunks of a CRL stored in
// chunks must all be there, and none may be stored for a CRL stored whole.
func CheckCRLChunks(c *store.PublishedCRL, chunks, octets int64) error {
	size := c.Size
	if size == 0 {
		size = int64(len(c.DER))
	}
	switch {
	case len(c.DER) > 0 && int64(len(c.DER)) != size:
		return fmt.Errorf("CRL %d of %s: %d octets of DER but size %d: store a CRL whole or in chunks", c.Number, c.IssuerID, len(c.DER), size)
	case len(c.DER) > 0 && chunks != 0:
		return fmt.Errorf("CRL %d of %s is stored whole but has %d chunks", c.Number, c.IssuerID, chunks)
	case len(c.DER) == 0 && (chunks != int64(store.CRLChunks(size)) || octets != size):
		return fmt.Errorf("CRL %d of %s: %d chunks of %d octets stored, want %d of %d", c.Number, c.IssuerID, chunks, octets,
			store.CRLChunks(size), size)
	}
	return nil
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
