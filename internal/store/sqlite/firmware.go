package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// Firmware signing records (migration 0004). Reads run on the reader pool outside transactions and on the
// writer inside them; the same statements serve both through sqlQuerier.

var (
	_ store.FirmwareTx    = (*tx)(nil)
	_ store.FirmwareStore = (*Store)(nil)
)

type sqlQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (t *tx) InsertFirmwareRoot(ctx context.Context, r *store.FirmwareRoot) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertFirmwareRoot, codec.FirmwareRootArgs(r)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert firmware trust %s version %d: %w", r.Environment, r.Version, store.ErrExists)
	default:
		return fmt.Errorf("insert firmware trust %s version %d: %w", r.Environment, r.Version, err)
	}
}

func latestFirmwareRoot(ctx context.Context, q sqlQuerier, env string) (*store.FirmwareRoot, error) {
	r, err := codec.ScanFirmwareRoot(q.QueryRowContext(ctx, sqlrecord.LatestFirmwareRoot, env))
	if err != nil {
		return nil, fmt.Errorf("latest firmware trust of %s: %w", env, notFound(err))
	}
	return r, nil
}

func (t *tx) LatestFirmwareRoot(ctx context.Context, env string) (*store.FirmwareRoot, error) {
	return latestFirmwareRoot(ctx, t.tx, env)
}

func (t *tx) InsertFirmwareSigningKey(ctx context.Context, k *store.FirmwareSigningKey) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertFirmwareKey, codec.FirmwareKeyArgs(k)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert firmware signing key %x: %w", k.KID, store.ErrExists)
	default:
		return fmt.Errorf("insert firmware signing key %x: %w", k.KID, err)
	}
}

func (t *tx) SetFirmwareSigningKeyStatus(ctx context.Context, kid []byte, status string, at time.Time) error {
	res, err := t.tx.ExecContext(ctx, sqlrecord.SetFirmwareKeyStatus, codec.SetFirmwareKeyStatusArgs(kid, status, at)...)
	if err != nil {
		return fmt.Errorf("set firmware signing key %x status %s: %w", kid, status, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("set firmware signing key %x status %s: %w", kid, status, store.ErrNotFound)
	}
	return nil
}

func firmwareSigningKeys(ctx context.Context, q sqlQuerier, env string) ([]*store.FirmwareSigningKey, error) {
	rows, err := q.QueryContext(ctx, sqlrecord.FirmwareKeys, env)
	if err != nil {
		return nil, fmt.Errorf("firmware signing keys of %q: %w", env, err)
	}
	keys, err := collect(rows, codec.ScanFirmwareKey)
	if err != nil {
		return nil, fmt.Errorf("firmware signing keys of %q: %w", env, err)
	}
	return keys, nil
}

func (t *tx) FirmwareSigningKeys(ctx context.Context, env string) ([]*store.FirmwareSigningKey, error) {
	return firmwareSigningKeys(ctx, t.tx, env)
}

func (t *tx) NextFirmwareSequence(ctx context.Context, env, product string) (int64, error) {
	var n int64
	if err := t.tx.QueryRowContext(ctx, sqlrecord.NextFirmwareSequence, env, product).Scan(&n); err != nil {
		return 0, fmt.Errorf("next firmware sequence of %s/%s: %w", env, product, err)
	}
	return n, nil
}

func (t *tx) InsertFirmwareRelease(ctx context.Context, r *store.FirmwareRelease) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertFirmwareRelease, codec.FirmwareReleaseArgs(r)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert firmware release %s (%s/%s version %s, sequence %d): %w", r.ID, r.Environment, r.ProductLine, r.Version, r.Sequence, store.ErrExists)
	default:
		return fmt.Errorf("insert firmware release %s: %w", r.ID, err)
	}
}

func getFirmwareRelease(ctx context.Context, q sqlQuerier, id string) (*store.FirmwareRelease, error) {
	r, err := codec.ScanFirmwareRelease(q.QueryRowContext(ctx, sqlrecord.SelectFirmwareRelease, id))
	if err != nil {
		return nil, fmt.Errorf("get firmware release %q: %w", id, notFound(err))
	}
	return r, nil
}

// GetFirmwareRelease reads release id; the IMMEDIATE transaction already holds the write lock, so nothing else can
// change it before commit.
func (t *tx) GetFirmwareRelease(ctx context.Context, id string) (*store.FirmwareRelease, error) {
	return getFirmwareRelease(ctx, t.tx, id)
}

func (t *tx) UpdateFirmwareRelease(ctx context.Context, r *store.FirmwareRelease) error {
	res, err := t.tx.ExecContext(ctx, sqlrecord.UpdateFirmwareRelease, codec.UpdateFirmwareReleaseArgs(r)...)
	if err != nil {
		return fmt.Errorf("update firmware release %s: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("update firmware release %s: %w", r.ID, store.ErrNotFound)
	}
	return nil
}

func (t *tx) InsertFirmwareApproval(ctx context.Context, a *store.FirmwareApproval) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertFirmwareApproval, codec.FirmwareApprovalArgs(a)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("approve firmware release %s as %q: %w", a.ReleaseID, a.Signer, store.ErrExists)
	case isForeignKey(err):
		return fmt.Errorf("approve firmware release %s: %w", a.ReleaseID, store.ErrNotFound)
	default:
		return fmt.Errorf("approve firmware release %s as %q: %w", a.ReleaseID, a.Signer, err)
	}
}

func firmwareApprovals(ctx context.Context, q sqlQuerier, id string) ([]*store.FirmwareApproval, error) {
	rows, err := q.QueryContext(ctx, sqlrecord.FirmwareApprovals, id)
	if err != nil {
		return nil, fmt.Errorf("approvals of firmware release %s: %w", id, err)
	}
	as, err := collect(rows, codec.ScanFirmwareApproval)
	if err != nil {
		return nil, fmt.Errorf("approvals of firmware release %s: %w", id, err)
	}
	return as, nil
}

func (t *tx) FirmwareApprovals(ctx context.Context, id string) ([]*store.FirmwareApproval, error) {
	return firmwareApprovals(ctx, t.tx, id)
}

// FirmwareRoots returns every trust version of env, oldest first.
func (s *Store) FirmwareRoots(ctx context.Context, env string) ([]*store.FirmwareRoot, error) {
	rows, err := s.r.QueryContext(ctx, sqlrecord.FirmwareRoots, env)
	if err != nil {
		return nil, fmt.Errorf("firmware trust of %s: %w", env, err)
	}
	rs, err := collect(rows, codec.ScanFirmwareRoot)
	if err != nil {
		return nil, fmt.Errorf("firmware trust of %s: %w", env, err)
	}
	return rs, nil
}

// FirmwareSigningKeys returns env's firmware signing keys ("" for all), oldest first.
func (s *Store) FirmwareSigningKeys(ctx context.Context, env string) ([]*store.FirmwareSigningKey, error) {
	return firmwareSigningKeys(ctx, s.r, env)
}

// GetFirmwareRelease returns release id, or an error wrapping store.ErrNotFound.
func (s *Store) GetFirmwareRelease(ctx context.Context, id string) (*store.FirmwareRelease, error) {
	return getFirmwareRelease(ctx, s.r, id)
}

// ListFirmwareReleases returns the releases of env and product ("" matches any), by environment, product, sequence.
func (s *Store) ListFirmwareReleases(ctx context.Context, env, product string) ([]*store.FirmwareRelease, error) {
	rows, err := s.r.QueryContext(ctx, sqlrecord.ListFirmwareReleases, env, product)
	if err != nil {
		return nil, fmt.Errorf("list firmware releases: %w", err)
	}
	rs, err := collect(rows, codec.ScanFirmwareRelease)
	if err != nil {
		return nil, fmt.Errorf("list firmware releases: %w", err)
	}
	return rs, nil
}

// FirmwareApprovals returns the approvals of release id, oldest first.
func (s *Store) FirmwareApprovals(ctx context.Context, id string) ([]*store.FirmwareApproval, error) {
	return firmwareApprovals(ctx, s.r, id)
}
