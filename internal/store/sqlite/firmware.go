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
	_, err := t.tx.ExecContext(ctx, `INSERT INTO firmware_roots (`+sqlrecord.FirmwareRootColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		codec.FirmwareRootArgs(r)...)
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
	r, err := codec.ScanFirmwareRoot(q.QueryRowContext(ctx, `SELECT `+sqlrecord.FirmwareRootColumns+` FROM firmware_roots WHERE environment = ? ORDER BY version DESC LIMIT 1`, env))
	if err != nil {
		return nil, fmt.Errorf("latest firmware trust of %s: %w", env, notFound(err))
	}
	return r, nil
}

func (t *tx) LatestFirmwareRoot(ctx context.Context, env string) (*store.FirmwareRoot, error) {
	return latestFirmwareRoot(ctx, t.tx, env)
}

func (t *tx) InsertFirmwareSigningKey(ctx context.Context, k *store.FirmwareSigningKey) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO firmware_signing_keys (`+sqlrecord.FirmwareKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		codec.FirmwareKeyArgs(k)...)
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
	var revoked any
	if status == store.FirmwareKeyRevoked {
		revoked = micros(at)
	}
	res, err := t.tx.ExecContext(ctx, `UPDATE firmware_signing_keys SET status = ?, revoked_at = COALESCE(?, revoked_at) WHERE kid = ?`, status, revoked, kid)
	if err != nil {
		return fmt.Errorf("set firmware signing key %x status %s: %w", kid, status, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("set firmware signing key %x status %s: %w", kid, status, store.ErrNotFound)
	}
	return nil
}

func firmwareSigningKeys(ctx context.Context, q sqlQuerier, env string) ([]*store.FirmwareSigningKey, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+sqlrecord.FirmwareKeyColumns+` FROM firmware_signing_keys WHERE ? = '' OR environment = ? ORDER BY created_at, kid`, env, env)
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
	if err := t.tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(sequence), 0) + 1 FROM firmware_releases WHERE environment = ? AND product_line = ?`,
		env, product).Scan(&n); err != nil {
		return 0, fmt.Errorf("next firmware sequence of %s/%s: %w", env, product, err)
	}
	return n, nil
}

func (t *tx) InsertFirmwareRelease(ctx context.Context, r *store.FirmwareRelease) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO firmware_releases (`+sqlrecord.FirmwareReleaseColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		codec.FirmwareReleaseArgs(r)...)
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
	r, err := codec.ScanFirmwareRelease(q.QueryRowContext(ctx, `SELECT `+sqlrecord.FirmwareReleaseColumns+` FROM firmware_releases WHERE id = ?`, id))
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
	res, err := t.tx.ExecContext(ctx, `UPDATE firmware_releases SET status = ?, manifest = ?, signer_kid = ?, signed_at = ? WHERE id = ?`,
		r.Status, sqlrecord.Blob(r.Manifest), sqlrecord.Blob(r.SignerKID), codec.BindNullTime(r.SignedAt), r.ID)
	if err != nil {
		return fmt.Errorf("update firmware release %s: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("update firmware release %s: %w", r.ID, store.ErrNotFound)
	}
	return nil
}

func (t *tx) InsertFirmwareApproval(ctx context.Context, a *store.FirmwareApproval) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO firmware_approvals (`+sqlrecord.FirmwareApprovalColumns+`) VALUES (?, ?, ?)`, codec.FirmwareApprovalArgs(a)...)
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
	rows, err := q.QueryContext(ctx, `SELECT `+sqlrecord.FirmwareApprovalColumns+` FROM firmware_approvals WHERE release_id = ? ORDER BY approved_at, signer`, id)
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
	rows, err := s.r.QueryContext(ctx, `SELECT `+sqlrecord.FirmwareRootColumns+` FROM firmware_roots WHERE environment = ? ORDER BY version`, env)
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
	rows, err := s.r.QueryContext(ctx, `SELECT `+sqlrecord.FirmwareReleaseColumns+` FROM firmware_releases
		WHERE (? = '' OR environment = ?) AND (? = '' OR product_line = ?) ORDER BY environment, product_line, sequence`, env, env, product, product)
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
