package sqlite

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/internal/store"
)

// Factory site records. Writes run in IMMEDIATE transactions, so LockFactorySite is a plain read.

var (
	_ store.FactoryStore = (*Store)(nil)
	_ store.FactoryTx    = (*tx)(nil)
)

const factorySiteColumns = `ca_id, environment, product_line, site, profile, cn_pattern, quota, reserved, issue_until, created_at`

func scanFactorySite(r scanner) (*store.FactorySite, error) {
	var (
		s              store.FactorySite
		until, created int64
	)
	if err := r.Scan(&s.CAID, &s.Environment, &s.ProductLine, &s.Site, &s.Profile, &s.CNPattern, &s.Quota, &s.Reserved, &until, &created); err != nil {
		return nil, err
	}
	s.IssueUntil, s.CreatedAt = fromMicros(until), fromMicros(created)
	return &s, nil
}

// InsertFactorySite stores a new factory site.
func (t *tx) InsertFactorySite(ctx context.Context, s *store.FactorySite) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO factory_sites (`+factorySiteColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.CAID, s.Environment, s.ProductLine, s.Site, s.Profile, s.CNPattern, s.Quota, s.Reserved, micros(s.IssueUntil), micros(s.CreatedAt))
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
	s, err := scanFactorySite(t.tx.QueryRowContext(ctx, `SELECT `+factorySiteColumns+` FROM factory_sites WHERE ca_id = ?`, caID))
	if err != nil {
		return nil, fmt.Errorf("lock factory site %q: %w", caID, notFound(err))
	}
	return s, nil
}

// SetFactorySiteReserved writes the reserved count.
func (t *tx) SetFactorySiteReserved(ctx context.Context, caID string, reserved int64) error {
	res, err := t.tx.ExecContext(ctx, `UPDATE factory_sites SET reserved = ? WHERE ca_id = ?`, reserved, caID)
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
	f, err := scanFactorySite(s.r.QueryRowContext(ctx, `SELECT `+factorySiteColumns+` FROM factory_sites WHERE ca_id = ?`, caID))
	if err != nil {
		return nil, fmt.Errorf("get factory site %q: %w", caID, notFound(err))
	}
	return f, nil
}
