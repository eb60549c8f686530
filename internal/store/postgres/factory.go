package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
)

// Factory site records. LockFactorySite takes a row lock (SELECT ... FOR UPDATE), so "check the quota, then
// reserve" is atomic across nodes.

var (
	_ store.FactoryStore = (*Store)(nil)
	_ store.FactoryTx    = (*tx)(nil)
)

const factorySiteColumns = `ca_id, environment, product_line, site, profile, cn_pattern, quota, reserved, issue_until, created_at`

func scanFactorySite(r pgx.Row) (*store.FactorySite, error) {
	var s store.FactorySite
	if err := r.Scan(&s.CAID, &s.Environment, &s.ProductLine, &s.Site, &s.Profile, &s.CNPattern, &s.Quota, &s.Reserved, &s.IssueUntil, &s.CreatedAt); err != nil {
		return nil, err
	}
	s.IssueUntil, s.CreatedAt = utc(s.IssueUntil), utc(s.CreatedAt)
	return &s, nil
}

// InsertFactorySite stores a new factory site.
func (t *tx) InsertFactorySite(ctx context.Context, s *store.FactorySite) error {
	tag, err := t.tx.Exec(ctx, `INSERT INTO factory_sites (`+factorySiteColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (ca_id) DO NOTHING`,
		s.CAID, s.Environment, s.ProductLine, s.Site, s.Profile, s.CNPattern, s.Quota, s.Reserved, s.IssueUntil, s.CreatedAt)
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
	s, err := scanFactorySite(t.tx.QueryRow(ctx, `SELECT `+factorySiteColumns+` FROM factory_sites WHERE ca_id = $1 FOR UPDATE`, caID))
	if err != nil {
		return nil, fmt.Errorf("lock factory site %q: %w", caID, notFound(err))
	}
	return s, nil
}

// SetFactorySiteReserved writes the reserved count.
func (t *tx) SetFactorySiteReserved(ctx context.Context, caID string, reserved int64) error {
	tag, err := t.tx.Exec(ctx, `UPDATE factory_sites SET reserved = $1 WHERE ca_id = $2`, reserved, caID)
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
	f, err := scanFactorySite(s.pool.QueryRow(ctx, `SELECT `+factorySiteColumns+` FROM factory_sites WHERE ca_id = $1`, caID))
	if err != nil {
		return nil, fmt.Errorf("get factory site %q: %w", caID, notFound(err))
	}
	return f, nil
}
