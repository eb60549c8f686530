package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// RevokeCA marks a CA revoked.
func (t *tx) RevokeCA(ctx context.Context, id string, at time.Time, reason int) error {
	res, err := t.tx.ExecContext(ctx, sqlrecord.RevokeCA, store.CAStatusRevoked, codec.BindTime(at), reason, id)
	if err != nil {
		return fmt.Errorf("revoke CA %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("revoke CA %q: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("revoke CA %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// InsertCARequest stores a pending CA request.
func (t *tx) InsertCARequest(ctx context.Context, r *store.CARequest) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertCARequest, codec.CARequestArgs(r)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert request for CA %q: %w", r.CAID, store.ErrExists)
	default:
		return fmt.Errorf("insert request for CA %q: %w", r.CAID, err)
	}
}

// CloseCARequest closes a CA request; a cancelled one is deleted.
func (t *tx) CloseCARequest(ctx context.Context, caID, state string, at time.Time) error {
	q, args := sqlrecord.CloseCARequest, []any{state, codec.BindTime(at), caID}
	if state != store.CARequestImported {
		q, args = sqlrecord.DeleteCARequest, []any{caID}
	}
	res, err := t.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("close request for CA %q: %w", caID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("close request for CA %q: %w", caID, err)
	} else if n == 0 {
		return fmt.Errorf("close request for CA %q: %w", caID, store.ErrNotFound)
	}
	return nil
}

// ListCARequests returns every CA request.
func (s *Store) ListCARequests(ctx context.Context) ([]*store.CARequest, error) {
	rows, err := s.r.QueryContext(ctx, sqlrecord.ListCARequests)
	if err != nil {
		return nil, fmt.Errorf("list CA requests: %w", err)
	}
	out, err := collect(rows, codec.ScanCARequest)
	if err != nil {
		return nil, fmt.Errorf("list CA requests: %w", err)
	}
	return out, nil
}
