package postgres

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// Factory site records. LockFactorySite takes a row lock (SELECT ... FOR UPDATE), so "check the quota, then
// reserve" is atomic across nodes.

var (
	_ store.FactoryStore = (*Store)(nil)
	_ store.FactoryTx    = (*tx)(nil)
)

// InsertFactorySite stores a new factory site.
func (t *tx) InsertFactorySite(ctx context.Context, s *store.FactorySite) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertFactorySite+` ON CONFLICT (ca_id) DO NOTHING`,
		codec.FactorySiteArgs(s)...)
	switch {
	case err != nil:
		return fmt.Errorf("insert factory site %q: %w", s.CAID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert factory site %q: %w", s.CAID, store.ErrExists)
	}
	return nil
}

// LockFactorySite reads the site of CA caID and locks its row until the transaction ends.
func (t *tx) LockFactorySite(ctx context.Context, caID string) (*store.FactorySite, error) {
	s, err := codec.ScanFactorySite(t.tx.QueryRow(ctx, sqlrecord.SelectFactorySite+` FOR UPDATE`, caID))
	if err != nil {
		return nil, fmt.Errorf("lock factory site %q: %w", caID, notFound(err))
	}
	return s, nil
}

// SetFactorySiteReserved writes the reserved count.
func (t *tx) SetFactorySiteReserved(ctx context.Context, caID string, reserved int64) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.SetFactorySiteReserved, reserved, caID)
	switch {
	case err != nil:
		return fmt.Errorf("update factory site %q: %w", caID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("update factory site %q: %w", caID, store.ErrNotFound)
	}
	return nil
}

// GetFactorySite returns the site of CA caID.
func (s *Store) GetFactorySite(ctx context.Context, caID string) (*store.FactorySite, error) {
	f, err := codec.ScanFactorySite(s.pool.QueryRow(ctx, sqlrecord.SelectFactorySite, caID))
	if err != nil {
		return nil, fmt.Errorf("get factory site %q: %w", caID, notFound(err))
	}
	return f, nil
}

// LastFactoryExportSeq returns the highest export sequence number of batchID.
func (t *tx) LastFactoryExportSeq(ctx context.Context, batchID string) (int64, error) {
	var seq int64
	if err := t.tx.QueryRow(ctx, sqlrecord.LastFactoryExportSeq, batchID).Scan(&seq); err != nil {
		return 0, fmt.Errorf("last export of batch %s: %w", batchID, err)
	}
	return seq, nil
}

// InsertFactoryExport records an export.
func (t *tx) InsertFactoryExport(ctx context.Context, e *store.FactoryExport) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertFactoryExport+` ON CONFLICT (batch_id, seq) DO NOTHING`,
		codec.FactoryExportArgs(e)...)
	switch {
	case err != nil:
		return fmt.Errorf("insert export %d of batch %s: %w", e.Seq, e.BatchID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert export %d of batch %s: %w", e.Seq, e.BatchID, store.ErrExists)
	}
	return nil
}

// LockFactoryBatch reads the reconciled state of batchID and locks its row until the transaction ends.
func (t *tx) LockFactoryBatch(ctx context.Context, batchID string) (*store.FactoryBatch, error) {
	b, err := codec.ScanFactoryBatch(t.tx.QueryRow(ctx, sqlrecord.SelectFactoryBatch+` FOR UPDATE`, batchID))
	if err != nil {
		return nil, fmt.Errorf("lock factory batch %s: %w", batchID, notFound(err))
	}
	return b, nil
}

// PutFactoryBatch inserts or replaces b.
func (t *tx) PutFactoryBatch(ctx context.Context, b *store.FactoryBatch) error {
	_, err := t.tx.Exec(ctx, sqlrecord.PutFactoryBatch, codec.FactoryBatchArgs(b)...)
	if err != nil {
		return fmt.Errorf("put factory batch %s: %w", b.BatchID, err)
	}
	return nil
}

// FactoryBatchCounts sums the counts of caID's reconciled batches other than exceptBatch.
func (t *tx) FactoryBatchCounts(ctx context.Context, caID, exceptBatch string) (int64, error) {
	var n int64
	if err := t.tx.QueryRow(ctx, sqlrecord.FactoryBatchCounts, caID, exceptBatch).Scan(&n); err != nil {
		return 0, fmt.Errorf("batches of %s: %w", caID, err)
	}
	return n, nil
}

// GetFactoryBatch returns the reconciled state of batchID.
func (s *Store) GetFactoryBatch(ctx context.Context, batchID string) (*store.FactoryBatch, error) {
	b, err := codec.ScanFactoryBatch(s.pool.QueryRow(ctx, sqlrecord.SelectFactoryBatch, batchID))
	if err != nil {
		return nil, fmt.Errorf("get factory batch %s: %w", batchID, notFound(err))
	}
	return b, nil
}

// AppendFactorySiteLog appends e with the next index; the caller holds the site row (LockFactorySite, FOR
// UPDATE), which serialises appenders of one site CA across nodes.
func (t *tx) AppendFactorySiteLog(ctx context.Context, e *store.FactorySiteLogEntry) error {
	var next int64
	if err := t.tx.QueryRow(ctx, sqlrecord.SiteLogLength, e.CAID).Scan(&next); err != nil {
		return fmt.Errorf("site log of %s: %w", e.CAID, err)
	}
	_, err := t.tx.Exec(ctx, sqlrecord.InsertSiteLog, codec.SiteLogArgs(e, next)...)
	switch {
	case err == nil:
		e.Index = next
		return nil
	case pgCode(err) == uniqueViolation:
		return fmt.Errorf("site log of %s: certificate %s: %w", e.CAID, e.CertSerial, store.ErrExists)
	default:
		return fmt.Errorf("site log of %s: certificate %s: %w", e.CAID, e.CertSerial, err)
	}
}

// WalkFactorySiteLog reads caID's site log from index from on, a page at a time.
func (s *Store) WalkFactorySiteLog(ctx context.Context, caID string, from int64, fn func(*store.FactorySiteLogEntry) error) error {
	for {
		page, err := collect(ctx, s.pool, codec.ScanSiteLogEntry, sqlrecord.WalkSiteLog, caID, from, walkPage)
		if err != nil {
			return fmt.Errorf("walk site log of %s: %w", caID, err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
			from = e.Index + 1
		}
		if len(page) < walkPage {
			return nil
		}
	}
}

// FactorySiteLogLength returns the length of caID's site log.
func (s *Store) FactorySiteLogLength(ctx context.Context, caID string) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, sqlrecord.SiteLogLength, caID).Scan(&n); err != nil {
		return 0, fmt.Errorf("site log of %s: %w", caID, err)
	}
	return n, nil
}
