package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// This file implements store.RevocationStore and store.RevocationTx (see internal/store/revocation.go).

var (
	_ store.RevocationStore = (*Store)(nil)
	_ store.RevocationTx    = (*tx)(nil)
)

// certPage is the number of certificates WalkCertStatus and WalkRevocationChanges read per query.
const certPage = 5000

// publisherLease bounds how long a crashed publisher keeps others from publishing.
const publisherLease = 5 * time.Minute

// nextCounter increments the named counter (creating it at 1) and returns its new value. The write lock the
// IMMEDIATE transaction holds serialises it with every other writer.
func (t *tx) nextCounter(ctx context.Context, name string) (int64, error) {
	var v int64
	err := t.tx.QueryRowContext(ctx, sqlrecord.NextCounter, name).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("next value of counter %s: %w", name, err)
	}
	return v, nil
}

func (t *tx) entry(ctx context.Context, serial string) (*store.RevocationEntry, error) {
	e, err := codec.ScanRevocationEntry(t.tx.QueryRowContext(ctx, sqlrecord.SelectRevocationEntry, serial))
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
	// RFC 5280 5.3.1: a certificate on hold may be revoked for good; anything else revoked stays as it is.
	res, err := t.tx.ExecContext(ctx, sqlrecord.Revoke, codec.RevokeArgs(r, seq)...)
	if err != nil {
		return nil, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	e, err := t.entry(ctx, r.Serial)
	if err != nil {
		return nil, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	if n == 0 {
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
	res, err := t.tx.ExecContext(ctx, sqlrecord.Unhold, sqlrecord.UnholdArgs(serial, seq)...)
	if err != nil {
		return nil, fmt.Errorf("release %s from hold: %w", serial, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, fmt.Errorf("release %s from hold: %w", serial, err)
	}
	e, err := t.entry(ctx, serial)
	if err != nil {
		return nil, fmt.Errorf("release %s from hold: %w", serial, err)
	}
	if n == 0 {
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

// keepCRLs is how many CRLs of each kind per issuer stay stored; older ones are pruned at insert.
const keepCRLs = 3

// InsertCRL implements store.RevocationTx.
func (t *tx) InsertCRL(ctx context.Context, c *store.PublishedCRL) error {
	var chunks, octets int64
	if err := t.tx.QueryRowContext(ctx, sqlrecord.CRLChunkTotals, c.IssuerID, c.Delta, c.Number).Scan(&chunks, &octets); err != nil {
		return fmt.Errorf("insert CRL %d of %s: count chunks: %w", c.Number, c.IssuerID, err)
	}
	if err := sqlrecord.CheckCRLChunks(c, chunks, octets); err != nil {
		return fmt.Errorf("insert %w", err)
	}
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertCRL, codec.CRLArgs(c)...)
	switch {
	case isUnique(err):
		return fmt.Errorf("insert CRL %d of %s: %w", c.Number, c.IssuerID, store.ErrExists)
	case isForeignKey(err):
		return fmt.Errorf("insert CRL %d: issuer CA %q: %w", c.Number, c.IssuerID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("insert CRL %d of %s: %w", c.Number, c.IssuerID, err)
	}
	_, err = t.tx.ExecContext(ctx, sqlrecord.PruneCRLs, c.IssuerID, c.Delta, keepCRLs)
	if err != nil {
		return fmt.Errorf("prune CRLs of %s: %w", c.IssuerID, err)
	}
	return nil
}

// PruneCRLChunks implements store.RevocationTx.
func (t *tx) PruneCRLChunks(ctx context.Context, issuerID string, delta bool, limit int) (int, error) {
	res, err := t.tx.ExecContext(ctx, sqlrecord.PruneCRLChunks, issuerID, delta, limit)
	if err != nil {
		return 0, fmt.Errorf("prune CRL chunks of %s: %w", issuerID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune CRL chunks of %s: %w", issuerID, err)
	}
	return int(n), nil
}

// InsertCRLChunk implements store.RevocationTx.
func (t *tx) InsertCRLChunk(ctx context.Context, issuerID string, delta bool, number int64, seq int, data []byte) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertCRLChunk, issuerID, delta, number, seq, data)
	switch {
	case isUnique(err):
		return fmt.Errorf("insert chunk %d of CRL %d of %s: %w", seq, number, issuerID, store.ErrExists)
	case isForeignKey(err):
		return fmt.Errorf("insert chunk %d of CRL %d: issuer CA %q: %w", seq, number, issuerID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("insert chunk %d of CRL %d of %s: %w", seq, number, issuerID, err)
	}
	return nil
}

// InsertRevocationSigner implements store.RevocationTx.
func (t *tx) InsertRevocationSigner(ctx context.Context, s *store.RevocationSigner) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertRevocationSigner, codec.RevocationSignerArgs(s)...)
	switch {
	case isUnique(err):
		return fmt.Errorf("insert revocation signer %s: %w", s.KeyURI, store.ErrExists)
	case isForeignKey(err):
		return fmt.Errorf("insert revocation signer %s: issuer CA %q: %w", s.KeyURI, s.IssuerID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("insert revocation signer %s: %w", s.KeyURI, err)
	}
	return nil
}

// InsertFilter implements store.RevocationTx.
func (t *tx) InsertFilter(ctx context.Context, f *store.PublishedFilter) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertFilter, codec.FilterArgs(f)...)
	switch {
	case isUnique(err):
		return fmt.Errorf("insert filter %s v%d: %w", f.Scope, f.Version, store.ErrExists)
	case err != nil:
		return fmt.Errorf("insert filter %s v%d: %w", f.Scope, f.Version, err)
	}
	return nil
}

// WalkCertStatus implements store.RevocationStore.
func (s *Store) WalkCertStatus(ctx context.Context, q store.CertQuery, fn func(*store.CertStatus) error) error {
	query, args := codec.WalkCertStatus(q)
	after := ""
	page := make([]*store.CertStatus, 0, certPage)
	for {
		rows, err := s.r.QueryContext(ctx, query, append(append(args[:len(args):len(args)], after), certPage)...)
		if err != nil {
			return fmt.Errorf("walk certificates: %w", err)
		}
		page, err = appendRows(page[:0], rows, codec.ScanCertStatus)
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
	if err := s.r.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	return n, nil
}

// revokedPage is the number of rows WalkRevoked reads per query. A CRL walks every revoked certificate of a
// CA (millions in the CRL benchmark), several serial ranges at once, so pages are large: each page costs one
// index seek and one query.
const revokedPage = 8192

// walkRevokedQuery reads only what a CRL entry needs (RFC 5280 5.1.2.6: serial, revocation date, reason,
// invalidity date) from the partial covering index certificates_revoked (0003_revocation.sql): the scan stays
// in the index, in serial order, and never visits the table rows with their DER. The status is a literal so
// that SQLite can prove the partial index applies; INDEXED BY makes a missing index an error, not a silent
// table scan. walkRevokedRangeQuery also bounds the serial from above: a range scan in the index, not a filter.
const (
	walkRevokedSelect = `SELECT ` + sqlrecord.CRLEntryColumns + `
	FROM certificates INDEXED BY certificates_revoked
	WHERE issuer_id = ? AND status = '` + store.CertStatusRevoked + `' AND not_after >= ? AND serial > ?`
	walkRevokedQuery      = walkRevokedSelect + ` ORDER BY serial LIMIT ?`
	walkRevokedRangeQuery = walkRevokedSelect + ` AND serial <= ? ORDER BY serial LIMIT ?`
	// The lowest and the highest revoked serial of a CA, each one seek in the index (SQLite answers a lone
	// MIN or MAX from an index, not both in one query).
	firstRevokedQuery = `SELECT serial FROM certificates INDEXED BY certificates_revoked
	WHERE issuer_id = ? AND status = '` + store.CertStatusRevoked + `' ORDER BY serial LIMIT 1`
	lastRevokedQuery = `SELECT serial FROM certificates INDEXED BY certificates_revoked
	WHERE issuer_id = ? AND status = '` + store.CertStatusRevoked + `' ORDER BY serial DESC LIMIT 1`
)

// crlRow is one entry of a page of WalkRevoked, with room for its times, so that reading an entry allocates
// little beyond its serial. The entry's time pointers are set to that room only when fn gets it: the page may
// still move while it is filled.
type crlRow struct {
	e                     store.RevocationEntry
	revokedAt, invalidity time.Time
	hasRevokedAt, hasInv  bool
}

// entry returns the row's entry, its times pointing into the row.
func (r *crlRow) entry() *store.RevocationEntry {
	r.e.RevokedAt, r.e.InvalidityDate = nil, nil
	if r.hasRevokedAt {
		r.e.RevokedAt = &r.revokedAt
	}
	if r.hasInv {
		r.e.InvalidityDate = &r.invalidity
	}
	return &r.e
}

// WalkRevoked implements store.RevocationStore. The entries of one page share one allocation, and two pages
// take turns.
func (s *Store) WalkRevoked(ctx context.Context, q store.RevokedQuery, fn func(*store.RevocationEntry) error) error {
	// fn's own error is returned as it is; a read's names the walk.
	return sqlrecord.WalkPrefetched(revokedPage, q.After,
		func(after string, buf []crlRow) ([]crlRow, error) {
			page, err := s.revokedPage(ctx, q, after, buf)
			if err != nil {
				return nil, fmt.Errorf("walk revoked certificates of %s: %w", q.IssuerID, err)
			}
			return page, nil
		},
		func(r *crlRow) string { return r.e.Serial }, func(r *crlRow) error { return fn(r.entry()) })
}

// revokedPage reads a page of the walk through the driver's own rows, not database/sql's Scan: a CRL reads
// millions of rows, and converting each value through Scan cost a fifth of the walk. The reader connections
// return INTEGER columns as int64 (no time conversion in their DSN) and TEXT as string.
func (s *Store) revokedPage(ctx context.Context, q store.RevokedQuery, after string, page []crlRow) ([]crlRow, error) {
	query, args := walkRevokedQuery, []driver.NamedValue{{Ordinal: 1, Value: q.IssuerID}, {Ordinal: 2, Value: micros(q.NotAfterFrom)},
		{Ordinal: 3, Value: after}, {Ordinal: 4, Value: int64(revokedPage)}}
	if q.UpTo != "" {
		query = walkRevokedRangeQuery
		args = append(args[:3], driver.NamedValue{Ordinal: 4, Value: q.UpTo}, driver.NamedValue{Ordinal: 5, Value: int64(revokedPage)})
	}
	if page == nil {
		page = make([]crlRow, 0, revokedPage)
	}
	conn, err := s.r.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		qc, ok := dc.(driver.QueryerContext)
		if !ok {
			return fmt.Errorf("sqlite driver connection %T cannot query", dc)
		}
		rows, err := qc.QueryContext(ctx, query, args)
		if err != nil {
			return err
		}
		defer rows.Close()
		dest := make([]driver.Value, 5) // sqlrecord.CRLEntryColumns
		for {
			if err := rows.Next(dest); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
			page = append(page, crlRow{})
			if err := page[len(page)-1].read(dest, q.IssuerID); err != nil {
				return err
			}
		}
	})
	return page, err
}

// read fills r from the values of a row of sqlrecord.CRLEntryColumns.
func (r *crlRow) read(v []driver.Value, issuerID string) error {
	serial, ok1 := v[0].(string)
	reason, ok2 := v[2].(int64)
	notAfter, ok3 := v[4].(int64)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("CRL entry row of types %T, %T, %T", v[0], v[2], v[4])
	}
	r.e = store.RevocationEntry{Serial: serial, IssuerID: issuerID, Status: store.CertStatusRevoked, Reason: int(reason), NotAfter: fromMicros(notAfter)}
	var err error
	if r.hasRevokedAt, err = nullMicros(v[1], &r.revokedAt); err != nil {
		return err
	}
	r.hasInv, err = nullMicros(v[3], &r.invalidity)
	return err
}

// nullMicros reads a nullable INTEGER of unix microseconds into t, and reports whether it was not NULL.
func nullMicros(v driver.Value, t *time.Time) (bool, error) {
	switch m := v.(type) {
	case nil:
		return false, nil
	case int64:
		*t = fromMicros(m)
		return true, nil
	}
	return false, fmt.Errorf("CRL entry time of type %T", v)
}

// RevokedSerialRange implements store.RevocationStore.
func (s *Store) RevokedSerialRange(ctx context.Context, issuerID string) (string, string, error) {
	var first, last string
	for _, r := range []struct {
		q   string
		dst *string
	}{{firstRevokedQuery, &first}, {lastRevokedQuery, &last}} {
		err := s.r.QueryRowContext(ctx, r.q, issuerID).Scan(r.dst)
		if errors.Is(err, sql.ErrNoRows) {
			return "", "", nil
		} else if err != nil {
			return "", "", fmt.Errorf("revoked serial range of %s: %w", issuerID, err)
		}
	}
	return first, last, nil
}

// WalkRevocationChanges implements store.RevocationStore.
func (s *Store) WalkRevocationChanges(ctx context.Context, issuerID string, afterSeq int64, fn func(*store.RevocationEntry) error) error {
	page := make([]*store.RevocationEntry, 0, certPage)
	for {
		rows, err := s.r.QueryContext(ctx, sqlrecord.WalkRevocationChanges, issuerID, afterSeq, certPage)
		if err != nil {
			return fmt.Errorf("walk revocation changes of %s: %w", issuerID, err)
		}
		if page, err = appendRows(page[:0], rows, codec.ScanRevocationEntry); err != nil {
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
	if err := s.r.QueryRowContext(ctx, sqlrecord.RevocationHead).Scan(&v); err != nil {
		return 0, fmt.Errorf("revocation head: %w", err)
	}
	return v, nil
}

// LatestCRL implements store.RevocationStore.
func (s *Store) LatestCRL(ctx context.Context, issuerID string, delta bool) (*store.PublishedCRL, error) {
	c, err := codec.ScanCRL(s.r.QueryRowContext(ctx, sqlrecord.LatestCRL, issuerID, delta))
	if err != nil {
		return nil, fmt.Errorf("latest CRL of %s: %w", issuerID, notFound(err))
	}
	return c, nil
}

// ReadCRLChunk implements store.RevocationStore.
func (s *Store) ReadCRLChunk(ctx context.Context, issuerID string, delta bool, number int64, seq int) ([]byte, error) {
	var data []byte
	if err := s.r.QueryRowContext(ctx, sqlrecord.SelectCRLChunk, issuerID, delta, number, seq).Scan(&data); err != nil {
		return nil, fmt.Errorf("chunk %d of CRL %d of %s: %w", seq, number, issuerID, notFound(err))
	}
	return data, nil
}

// LatestRevocationSigner implements store.RevocationStore.
func (s *Store) LatestRevocationSigner(ctx context.Context, issuerID, purpose string) (*store.RevocationSigner, error) {
	r, err := codec.ScanRevocationSigner(s.r.QueryRowContext(ctx, sqlrecord.LatestRevocationSigner, issuerID, purpose))
	if err != nil {
		return nil, fmt.Errorf("%s signer of %s: %w", purpose, issuerID, notFound(err))
	}
	return r, nil
}

func (s *Store) filter(ctx context.Context, query string, args ...any) (*store.PublishedFilter, error) {
	f, err := codec.ScanFilter(s.r.QueryRowContext(ctx, query, args...))
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

// TryPublisherLock implements store.RevocationStore with a lease row: SQLite has no advisory locks, and a
// lease also works between processes sharing the file. A holder that crashes keeps the lease for at most
// publisherLease.
func (s *Store) TryPublisherLock(ctx context.Context, holder string) (func(), bool, error) {
	now := time.Now()
	res, err := s.w.ExecContext(ctx, `INSERT INTO publisher_lease (name, holder, expires_at) VALUES ('revocation', ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE publisher_lease.expires_at < ? OR publisher_lease.holder = excluded.holder`,
		holder, micros(now.Add(publisherLease)), micros(now))
	if err != nil {
		return nil, false, fmt.Errorf("take publisher lease: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, false, fmt.Errorf("take publisher lease: %w", err)
	}
	if n == 0 {
		return nil, false, nil
	}
	release := func() {
		_, _ = s.w.ExecContext(context.WithoutCancel(ctx), `DELETE FROM publisher_lease WHERE name = 'revocation' AND holder = ?`, holder)
	}
	return release, true, nil
}
