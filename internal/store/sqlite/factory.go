package sqlite

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// Factory site records. Writes run in IMMEDIATE transactions, so LockFactorySite is a plain read.

var (
	_ store.FactoryStore = (*Store)(nil)
	_ store.FactoryTx    = (*tx)(nil)
)

// InsertFactorySite stores a new factory site.
func (t *tx) InsertFactorySite(ctx context.Context, s *store.FactorySite) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertFactorySite, codec.FactorySiteArgs(s)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert factory site %q: %w", s.CAID, store.ErrExists)
	default:
		return fmt.Errorf("insert factory site %q: %w", s.CAID, err)
	}
}

// LockFactorySite reads the site of CA caID.
func (t *tx) LockFactorySite(ctx context.Context, caID string) (*store.FactorySite, error) {
	s, err := codec.ScanFactorySite(t.tx.QueryRowContext(ctx, sqlrecord.SelectFactorySite, caID))
	if err != nil {
		return nil, fmt.Errorf("lock factory site %q: %w", caID, notFound(err))
	}
	return s, nil
}

// SetFactorySiteReserved writes the reserved count.
func (t *tx) SetFactorySiteReserved(ctx context.Context, caID string, reserved int64) error {
	res, err := t.tx.ExecContext(ctx, sqlrecord.SetFactorySiteReserved, reserved, caID)
	if err != nil {
		return fmt.Errorf("update factory site %q: %w", caID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update factory site %q: %w", caID, err)
	} else if n == 0 {
		return fmt.Errorf("update factory site %q: %w", caID, store.ErrNotFound)
	}
	return nil
}

// GetFactorySite returns the site of CA caID.
func (s *Store) GetFactorySite(ctx context.Context, caID string) (*store.FactorySite, error) {
	f, err := codec.ScanFactorySite(s.r.QueryRowContext(ctx, sqlrecord.SelectFactorySite, caID))
	if err != nil {
		return nil, fmt.Errorf("get factory site %q: %w", caID, notFound(err))
	}
	return f, nil
}

// LastFactoryExportSeq returns the highest export sequence number of batchID.
func (t *tx) LastFactoryExportSeq(ctx context.Context, batchID string) (int64, error) {
	var seq int64
	if err := t.tx.QueryRowContext(ctx, sqlrecord.LastFactoryExportSeq, batchID).Scan(&seq); err != nil {
		return 0, fmt.Errorf("last export of batch %s: %w", batchID, err)
	}
	return seq, nil
}

// InsertFactoryExport records an export.
func (t *tx) InsertFactoryExport(ctx context.Context, e *store.FactoryExport) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertFactoryExport, codec.FactoryExportArgs(e)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert export %d of batch %s: %w", e.Seq, e.BatchID, store.ErrExists)
	default:
		return fmt.Errorf("insert export %d of batch %s: %w", e.Seq, e.BatchID, err)
	}
}

// LockFactoryBatch reads the reconciled state of batchID.
func (t *tx) LockFactoryBatch(ctx context.Context, batchID string) (*store.FactoryBatch, error) {
	b, err := codec.ScanFactoryBatch(t.tx.QueryRowContext(ctx, sqlrecord.SelectFactoryBatch, batchID))
	if err != nil {
		return nil, fmt.Errorf("lock factory batch %s: %w", batchID, notFound(err))
	}
	return b, nil
}

// PutFactoryBatch inserts or replaces b.
func (t *tx) PutFactoryBatch(ctx context.Context, b *store.FactoryBatch) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.PutFactoryBatch, codec.FactoryBatchArgs(b)...)
	if err != nil {
		return fmt.Errorf("put factory batch %s: %w", b.BatchID, err)
	}
	return nil
}

// FactoryBatchCounts sums the counts of caID's reconciled batches other than exceptBatch.
func (t *tx) FactoryBatchCounts(ctx context.Context, caID, exceptBatch string) (int64, error) {
	var n int64
	if err := t.tx.QueryRowContext(ctx, sqlrecord.FactoryBatchCounts, caID, exceptBatch).Scan(&n); err != nil {
		return 0, fmt.Errorf("batches of %s: %w", caID, err)
	}
	return n, nil
}

// GetFactoryBatch returns the reconciled state of batchID.
func (s *Store) GetFactoryBatch(ctx context.Context, batchID string) (*store.FactoryBatch, error) {
	b, err := codec.ScanFactoryBatch(s.r.QueryRowContext(ctx, sqlrecord.SelectFactoryBatch, batchID))
	if err != nil {
		return nil, fmt.Errorf("get factory batch %s: %w", batchID, notFound(err))
	}
	return b, nil
}

// AppendFactorySiteLog appends e with the next index; the IMMEDIATE transaction serialises appenders.
func (t *tx) AppendFactorySiteLog(ctx context.Context, e *store.FactorySiteLogEntry) error {
	var next int64
	if err := t.tx.QueryRowContext(ctx, sqlrecord.SiteLogLength, e.CAID).Scan(&next); err != nil {
		return fmt.Errorf("site log of %s: %w", e.CAID, err)
	}
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertSiteLog, codec.SiteLogArgs(e, next)...)
	switch {
	case err == nil:
		e.Index = next
		return nil
	case isUnique(err):
		return fmt.Errorf("site log of %s: certificate %s: %w", e.CAID, e.CertSerial, store.ErrExists)
	default:
		return fmt.Errorf("site log of %s: certificate %s: %w", e.CAID, e.CertSerial, err)
	}
}

// WalkFactorySiteLog reads caID's site log from index from on, a page at a time.
func (s *Store) WalkFactorySiteLog(ctx context.Context, caID string, from int64, fn func(*store.FactorySiteLogEntry) error) error {
	for {
		rows, err := s.r.QueryContext(ctx, sqlrecord.WalkSiteLog, caID, from, walkPage)
		if err != nil {
			return fmt.Errorf("walk site log of %s: %w", caID, err)
		}
		page, err := collect(rows, codec.ScanSiteLogEntry)
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
	if err := s.r.QueryRowContext(ctx, sqlrecord.SiteLogLength, caID).Scan(&n); err != nil {
		return 0, fmt.Errorf("site log of %s: %w", caID, err)
	}
	return n, nil
}
