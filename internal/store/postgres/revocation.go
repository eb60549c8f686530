package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// This file implements store.RevocationStore and store.RevocationTx (see internal/store/revocation.go).

var (
	_ store.RevocationStore = (*Store)(nil)
	_ store.RevocationTx    = (*tx)(nil)
)

// publisherLock makes one node the revocation publisher: "keyward" and 3 (see the package comment for 1 and 2).
const publisherLock int64 = 0x6b65797761726403

// certPage is the number of certificates WalkCertStatus and WalkRevocationChanges read per query.
const certPage = 5000

// keepCRLs is how many CRLs of each kind per issuer stay stored; older ones are pruned at insert.
const keepCRLs = 3

// nextCounter increments the named counter (creating it at 1) and returns its new value. The row stays locked
// until the transaction ends, so a second transaction incrementing the same counter waits, and values commit in
// increasing order: a reader never sees value n committed while n-1 is still to come.
func (t *tx) nextCounter(ctx context.Context, name string) (int64, error) {
	var v int64
	err := t.tx.QueryRow(ctx, sqlrecord.NextCounter, name).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("next value of counter %s: %w", name, err)
	}
	return v, nil
}

func (t *tx) entry(ctx context.Context, serial string) (*store.RevocationEntry, error) {
	e, err := codec.ScanRevocationEntry(t.tx.QueryRow(ctx, sqlrecord.SelectRevocationEntry, serial))
	if err != nil {
		return nil, notFound(err)
	}
	return e, nil
}

// Revoke implements store.RevocationTx.
func (t *tx) Revoke(ctx context.Context, r *store.Revocation) (*store.RevocationEntry, error) {
	seq, err := t.nextCounter(ctx, "changes")
	if err != nil {
		return nil, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	// RFC 5280 5.3.1: a certificate on hold may be revoked for good; anything else revoked stays as it is. The
	// condition is evaluated on the row under its lock, so two concurrent revocations cannot both succeed.
	tag, err := t.tx.Exec(ctx, sqlrecord.Revoke, codec.RevokeArgs(r, seq)...)
	if err != nil {
		return nil, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	e, err := t.entry(ctx, r.Serial)
	if err != nil {
		return nil, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	if tag.RowsAffected() == 0 {
		return e, fmt.Errorf("revoke %s: %w", r.Serial, store.ErrAlreadyRevoked)
	}
	return e, nil
}

// Unhold implements store.RevocationTx.
func (t *tx) Unhold(ctx context.Context, serial string, at time.Time) (*store.RevocationEntry, error) {
	seq, err := t.nextCounter(ctx, "changes")
	if err != nil {
		return nil, fmt.Errorf("release %s from hold: %w", serial, err)
	}
	tag, err := t.tx.Exec(ctx, sqlrecord.Unhold, sqlrecord.UnholdArgs(serial, seq)...)
	if err != nil {
		return nil, fmt.Errorf("release %s from hold: %w", serial, err)
	}
	e, err := t.entry(ctx, serial)
	if err != nil {
		return nil, fmt.Errorf("release %s from hold: %w", serial, err)
	}
	if tag.RowsAffected() == 0 {
		return e, fmt.Errorf("release %s from hold: %w", serial, store.ErrNotOnHold)
	}
	return e, nil
}

// NextCRLNumber implements store.RevocationTx.
func (t *tx) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	return t.nextCounter(ctx, "crl:"+issuerID)
}

// NextFilterVersion implements store.RevocationTx.
func (t *tx) NextFilterVersion(ctx context.Context, scope string) (int64, error) {
	return t.nextCounter(ctx, "filter:"+scope)
}

// InsertCRL implements store.RevocationTx.
func (t *tx) InsertCRL(ctx context.Context, c *store.PublishedCRL) error {
	var chunks, octets int64
	if err := t.tx.QueryRow(ctx, sqlrecord.CRLChunkTotals, c.IssuerID, c.Delta, c.Number).Scan(&chunks, &octets); err != nil {
		return fmt.Errorf("insert CRL %d of %s: count chunks: %w", c.Number, c.IssuerID, err)
	}
	if err := sqlrecord.CheckCRLChunks(c, chunks, octets); err != nil {
		return fmt.Errorf("insert %w", err)
	}
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertCRL+` ON CONFLICT DO NOTHING`, codec.CRLArgs(c)...)
	switch {
	case pgCode(err) == foreignKeyViolation:
		return fmt.Errorf("insert CRL %d: issuer CA %q: %w", c.Number, c.IssuerID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("insert CRL %d of %s: %w", c.Number, c.IssuerID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert CRL %d of %s: %w", c.Number, c.IssuerID, store.ErrExists)
	}
	_, err = t.tx.Exec(ctx, sqlrecord.PruneCRLs, c.IssuerID, c.Delta, keepCRLs)
	if err != nil {
		return fmt.Errorf("prune CRLs of %s: %w", c.IssuerID, err)
	}
	return nil
}

// PruneCRLChunks implements store.RevocationTx.
func (t *tx) PruneCRLChunks(ctx context.Context, issuerID string, delta bool, limit int) (int, error) {
	tag, err := t.tx.Exec(ctx, sqlrecord.PruneCRLChunks, issuerID, delta, limit)
	if err != nil {
		return 0, fmt.Errorf("prune CRL chunks of %s: %w", issuerID, err)
	}
	return int(tag.RowsAffected()), nil
}

// InsertCRLChunk implements store.RevocationTx.
func (t *tx) InsertCRLChunk(ctx context.Context, issuerID string, delta bool, number int64, seq int, data []byte) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertCRLChunk+` ON CONFLICT DO NOTHING`, issuerID, delta, number, seq, data)
	switch {
	case pgCode(err) == foreignKeyViolation:
		return fmt.Errorf("insert chunk %d of CRL %d: issuer CA %q: %w", seq, number, issuerID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("insert chunk %d of CRL %d of %s: %w", seq, number, issuerID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert chunk %d of CRL %d of %s: %w", seq, number, issuerID, store.ErrExists)
	}
	return nil
}

// InsertRevocationSigner implements store.RevocationTx.
func (t *tx) InsertRevocationSigner(ctx context.Context, s *store.RevocationSigner) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertRevocationSigner+` ON CONFLICT DO NOTHING`, codec.RevocationSignerArgs(s)...)
	switch {
	case pgCode(err) == foreignKeyViolation:
		return fmt.Errorf("insert revocation signer %s: issuer CA %q: %w", s.KeyURI, s.IssuerID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("insert revocation signer %s: %w", s.KeyURI, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert revocation signer %s: %w", s.KeyURI, store.ErrExists)
	}
	return nil
}

// InsertFilter implements store.RevocationTx.
func (t *tx) InsertFilter(ctx context.Context, f *store.PublishedFilter) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertFilter+` ON CONFLICT DO NOTHING`, codec.FilterArgs(f)...)
	switch {
	case err != nil:
		return fmt.Errorf("insert filter %s v%d: %w", f.Scope, f.Version, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert filter %s v%d: %w", f.Scope, f.Version, store.ErrExists)
	}
	return nil
}

// WalkCertStatus implements store.RevocationStore.
func (s *Store) WalkCertStatus(ctx context.Context, q store.CertQuery, fn func(*store.CertStatus) error) error {
	query, args := codec.WalkCertStatus(q)
	after := ""
	for {
		page, err := collect(ctx, s.pool, codec.ScanCertStatus, query, append(append(args[:len(args):len(args)], after), certPage)...)
		if err != nil {
			return fmt.Errorf("walk certificates: %w", err)
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
			after = c.Serial
		}
		if len(page) < certPage {
			return nil
		}
	}
}

// CountCertificates implements store.RevocationStore.
func (s *Store) CountCertificates(ctx context.Context, q store.CertQuery) (int64, error) {
	query, args := codec.CountCertificates(q)
	var n int64
	if err := s.pool.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	return n, nil
}

// revokedPage is the number of rows WalkRevoked reads per query: a CRL walks every revoked certificate of a
// CA (millions in the CRL benchmark), several serial ranges at once, so pages are large.
const revokedPage = 8192

// walkRevokedQuery reads only what a CRL entry needs (RFC 5280 5.1.2.6) along the partial index
// certificates_revoked (0003_revocation.sql), in serial order with no sort. The status is a literal so that
// the planner can match the index's predicate for any plan, generic or custom. walkRevokedRangeQuery also
// bounds the serial from above, as the index range's end.
const (
	walkRevokedSelect = `SELECT ` + sqlrecord.CRLEntryColumns + ` FROM certificates
	WHERE issuer_id = $1 AND status = '` + store.CertStatusRevoked + `' AND not_after >= $2 AND serial > $3`
	walkRevokedQuery      = walkRevokedSelect + ` ORDER BY serial LIMIT $4`
	walkRevokedRangeQuery = walkRevokedSelect + ` AND serial <= $4 ORDER BY serial LIMIT $5`
	firstRevokedQuery     = `SELECT serial FROM certificates WHERE issuer_id = $1 AND status = '` + store.CertStatusRevoked + `' ORDER BY serial LIMIT 1`
	lastRevokedQuery      = `SELECT serial FROM certificates WHERE issuer_id = $1 AND status = '` + store.CertStatusRevoked + `' ORDER BY serial DESC LIMIT 1`
)

// WalkRevoked implements store.RevocationStore. The entries of one page share one allocation.
func (s *Store) WalkRevoked(ctx context.Context, q store.RevokedQuery, fn func(*store.RevocationEntry) error) error {
	// fn's own error is returned as it is; a read's names the walk.
	return sqlrecord.WalkPrefetched(revokedPage, q.After,
		func(after string, buf []store.RevocationEntry) ([]store.RevocationEntry, error) {
			page, err := s.revokedPage(ctx, q, after, buf)
			if err != nil {
				return nil, fmt.Errorf("walk revoked certificates of %s: %w", q.IssuerID, err)
			}
			return page, nil
		},
		func(e *store.RevocationEntry) string { return e.Serial }, fn)
}

func (s *Store) revokedPage(ctx context.Context, q store.RevokedQuery, after string, page []store.RevocationEntry) ([]store.RevocationEntry, error) {
	query, args := walkRevokedQuery, []any{q.IssuerID, q.NotAfterFrom, after, revokedPage}
	if q.UpTo != "" {
		query, args = walkRevokedRangeQuery, []any{q.IssuerID, q.NotAfterFrom, after, q.UpTo, revokedPage}
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if page == nil {
		page = make([]store.RevocationEntry, 0, revokedPage)
	}
	for rows.Next() {
		page = append(page, store.RevocationEntry{IssuerID: q.IssuerID, Status: store.CertStatusRevoked})
		if err := codec.ScanCRLEntry(rows, &page[len(page)-1]); err != nil {
			return nil, err
		}
	}
	return page, rows.Err()
}

// RevokedSerialRange implements store.RevocationStore.
func (s *Store) RevokedSerialRange(ctx context.Context, issuerID string) (string, string, error) {
	var first, last string
	for _, r := range []struct {
		q   string
		dst *string
	}{{firstRevokedQuery, &first}, {lastRevokedQuery, &last}} {
		err := s.pool.QueryRow(ctx, r.q, issuerID).Scan(r.dst)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", "", nil
		} else if err != nil {
			return "", "", fmt.Errorf("revoked serial range of %s: %w", issuerID, err)
		}
	}
	return first, last, nil
}

// WalkRevocationChanges implements store.RevocationStore.
func (s *Store) WalkRevocationChanges(ctx context.Context, issuerID string, afterSeq int64, fn func(*store.RevocationEntry) error) error {
	for {
		page, err := collect(ctx, s.pool, codec.ScanRevocationEntry, sqlrecord.WalkRevocationChanges, issuerID, afterSeq, certPage)
		if err != nil {
			return fmt.Errorf("walk revocation changes of %s: %w", issuerID, err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
			afterSeq = e.Seq
		}
		if len(page) < certPage {
			return nil
		}
	}
}

// RevocationHead implements store.RevocationStore.
func (s *Store) RevocationHead(ctx context.Context) (int64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, sqlrecord.RevocationHead).Scan(&v); err != nil {
		return 0, fmt.Errorf("revocation head: %w", err)
	}
	return v, nil
}

// LatestCRL implements store.RevocationStore.
func (s *Store) LatestCRL(ctx context.Context, issuerID string, delta bool) (*store.PublishedCRL, error) {
	c, err := codec.ScanCRL(s.pool.QueryRow(ctx, sqlrecord.LatestCRL, issuerID, delta))
	if err != nil {
		return nil, fmt.Errorf("latest CRL of %s: %w", issuerID, notFound(err))
	}
	return c, nil
}

// ReadCRLChunk implements store.RevocationStore.
func (s *Store) ReadCRLChunk(ctx context.Context, issuerID string, delta bool, number int64, seq int) ([]byte, error) {
	var data []byte
	if err := s.pool.QueryRow(ctx, sqlrecord.SelectCRLChunk, issuerID, delta, number, seq).Scan(&data); err != nil {
		return nil, fmt.Errorf("chunk %d of CRL %d of %s: %w", seq, number, issuerID, notFound(err))
	}
	return data, nil
}

// LatestRevocationSigner implements store.RevocationStore.
func (s *Store) LatestRevocationSigner(ctx context.Context, issuerID, purpose string) (*store.RevocationSigner, error) {
	r, err := codec.ScanRevocationSigner(s.pool.QueryRow(ctx, sqlrecord.LatestRevocationSigner, issuerID, purpose))
	if err != nil {
		return nil, fmt.Errorf("%s signer of %s: %w", purpose, issuerID, notFound(err))
	}
	return r, nil
}

func (s *Store) filter(ctx context.Context, query string, args ...any) (*store.PublishedFilter, error) {
	f, err := codec.ScanFilter(s.pool.QueryRow(ctx, query, args...))
	if err != nil {
		return nil, notFound(err)
	}
	return f, nil
}

// GetFilter implements store.RevocationStore.
func (s *Store) GetFilter(ctx context.Context, scope string, version, baseVersion int64) (*store.PublishedFilter, error) {
	f, err := s.filter(ctx, sqlrecord.SelectFilter, scope, version, baseVersion)
	if err != nil {
		return nil, fmt.Errorf("filter %s v%d: %w", scope, version, err)
	}
	return f, nil
}

// LatestFilter implements store.RevocationStore.
func (s *Store) LatestFilter(ctx context.Context, scope string) (*store.PublishedFilter, error) {
	f, err := s.filter(ctx, sqlrecord.LatestFilter, scope)
	if err != nil {
		return nil, fmt.Errorf("latest filter of %s: %w", scope, err)
	}
	return f, nil
}

// TryPublisherLock implements store.RevocationStore with a session-level advisory lock held on one pooled
// connection: every node that shares the database contends for the same key, and PostgreSQL releases the lock
// if the holder's connection dies, so a crashed publisher never blocks the others.
func (s *Store) TryPublisherLock(ctx context.Context, holder string) (func(), bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("publisher lock on %s: %w", s.where, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, publisherLock).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("publisher lock on %s: %w", s.where, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	release := func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, publisherLock); err != nil {
			// The lock would outlive us on this pooled connection: close it so PostgreSQL drops the lock.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
		conn.Release()
	}
	return release, true, nil
}
