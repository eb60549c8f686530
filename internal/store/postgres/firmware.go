package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// Firmware signing records (migration 0004). Reads run on the pool outside transactions and on the transaction
// inside them; the same statements serve both through pgQuerier.

var (
	_ store.FirmwareTx    = (*tx)(nil)
	_ store.FirmwareStore = (*Store)(nil)
)

type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (t *tx) InsertFirmwareRoot(ctx context.Context, r *store.FirmwareRoot) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertFirmwareRoot+` ON CONFLICT DO NOTHING`, codec.FirmwareRootArgs(r)...)
	switch {
	case err != nil:
		return fmt.Errorf("insert firmware trust %s version %d: %w", r.Environment, r.Version, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert firmware trust %s version %d: %w", r.Environment, r.Version, store.ErrExists)
	}
	return nil
}

func latestFirmwareRoot(ctx context.Context, q pgQuerier, env string) (*store.FirmwareRoot, error) {
	r, err := codec.ScanFirmwareRoot(q.QueryRow(ctx, sqlrecord.LatestFirmwareRoot, env))
	if err != nil {
		return nil, fmt.Errorf("latest firmware trust of %s: %w", env, notFound(err))
	}
	return r, nil
}

func (t *tx) LatestFirmwareRoot(ctx context.Context, env string) (*store.FirmwareRoot, error) {
	return latestFirmwareRoot(ctx, t.tx, env)
}

func (t *tx) InsertFirmwareSigningKey(ctx context.Context, k *store.FirmwareSigningKey) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertFirmwareKey+` ON CONFLICT DO NOTHING`, codec.FirmwareKeyArgs(k)...)
	switch {
	case err != nil:
		return fmt.Errorf("insert firmware signing key %x: %w", k.KID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert firmware signing key %x: %w", k.KID, store.ErrExists)
	}
	return nil
}

func (t *tx) SetFirmwareSigningKeyStatus(ctx context.Context, kid []byte, status string, at time.Time) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.SetFirmwareKeyStatus, codec.SetFirmwareKeyStatusArgs(kid, status, at)...)
	switch {
	case err != nil:
		return fmt.Errorf("set firmware signing key %x status %s: %w", kid, status, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("set firmware signing key %x status %s: %w", kid, status, store.ErrNotFound)
	}
	return nil
}

func firmwareSigningKeys(ctx context.Context, q pgQuerier, env string) ([]*store.FirmwareSigningKey, error) {
	keys, err := collect(ctx, q, codec.ScanFirmwareKey, sqlrecord.FirmwareKeys, env)
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
	if err := t.tx.QueryRow(ctx, sqlrecord.NextFirmwareSequence, env, product).Scan(&n); err != nil {
		return 0, fmt.Errorf("next firmware sequence of %s/%s: %w", env, product, err)
	}
	return n, nil
}

// InsertFirmwareRelease stores r. Two nodes creating releases of one product line at once may pick the same
// sequence; the unique constraint refuses the second with store.ErrExists, and the caller retries.
func (t *tx) InsertFirmwareRelease(ctx context.Context, r *store.FirmwareRelease) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertFirmwareRelease+` ON CONFLICT DO NOTHING`,
		codec.FirmwareReleaseArgs(r)...)
	switch {
	case err != nil:
		return fmt.Errorf("insert firmware release %s: %w", r.ID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert firmware release %s (%s/%s version %s, sequence %d): %w", r.ID, r.Environment, r.ProductLine, r.Version, r.Sequence, store.ErrExists)
	}
	return nil
}

func (t *tx) GetFirmwareRelease(ctx context.Context, id string) (*store.FirmwareRelease, error) {
	// FOR UPDATE: approvals and signing of one release serialise on its row, at READ COMMITTED and across nodes.
	r, err := codec.ScanFirmwareRelease(t.tx.QueryRow(ctx, sqlrecord.SelectFirmwareRelease+` FOR UPDATE`, id))
	if err != nil {
		return nil, fmt.Errorf("get firmware release %q: %w", id, notFound(err))
	}
	return r, nil
}

func (t *tx) UpdateFirmwareRelease(ctx context.Context, r *store.FirmwareRelease) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.UpdateFirmwareRelease, codec.UpdateFirmwareReleaseArgs(r)...)
	switch {
	case err != nil:
		return fmt.Errorf("update firmware release %s: %w", r.ID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("update firmware release %s: %w", r.ID, store.ErrNotFound)
	}
	return nil
}

func (t *tx) InsertFirmwareApproval(ctx context.Context, a *store.FirmwareApproval) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertFirmwareApproval+` ON CONFLICT DO NOTHING`,
		codec.FirmwareApprovalArgs(a)...)
	switch {
	case err != nil && pgCode(err) == foreignKeyViolation:
		return fmt.Errorf("approve firmware release %s: %w", a.ReleaseID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("approve firmware release %s as %q: %w", a.ReleaseID, a.Signer, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("approve firmware release %s as %q: %w", a.ReleaseID, a.Signer, store.ErrExists)
	}
	return nil
}

func firmwareApprovals(ctx context.Context, q pgQuerier, id string) ([]*store.FirmwareApproval, error) {
	as, err := collect(ctx, q, codec.ScanFirmwareApproval, sqlrecord.FirmwareApprovals, id)
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
	rs, err := collect(ctx, s.pool, codec.ScanFirmwareRoot, sqlrecord.FirmwareRoots, env)
	if err != nil {
		return nil, fmt.Errorf("firmware trust of %s: %w", env, err)
	}
	return rs, nil
}

// FirmwareSigningKeys returns env's firmware signing keys ("" for all), oldest first.
func (s *Store) FirmwareSigningKeys(ctx context.Context, env string) ([]*store.FirmwareSigningKey, error) {
	return firmwareSigningKeys(ctx, s.pool, env)
}

// GetFirmwareRelease returns release id, or an error wrapping store.ErrNotFound.
func (s *Store) GetFirmwareRelease(ctx context.Context, id string) (*store.FirmwareRelease, error) {
	r, err := codec.ScanFirmwareRelease(s.pool.QueryRow(ctx, sqlrecord.SelectFirmwareRelease, id))
	if err != nil {
		return nil, fmt.Errorf("get firmware release %q: %w", id, notFound(err))
	}
	return r, nil
}

// ListFirmwareReleases returns the releases of env and product ("" matches any), by environment, product, sequence.
func (s *Store) ListFirmwareReleases(ctx context.Context, env, product string) ([]*store.FirmwareRelease, error) {
	rs, err := collect(ctx, s.pool, codec.ScanFirmwareRelease, sqlrecord.ListFirmwareReleases, env, product)
	if err != nil {
		return nil, fmt.Errorf("list firmware releases: %w", err)
	}
	return rs, nil
}

// FirmwareApprovals returns the approvals of release id, oldest first.
func (s *Store) FirmwareApprovals(ctx context.Context, id string) ([]*store.FirmwareApproval, error) {
	return firmwareApprovals(ctx, s.pool, id)
}
