package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// RevokeCA marks a CA revoked.
func (t *tx) RevokeCA(ctx context.Context, id string, at time.Time, reason int) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.RevokeCA, store.CAStatusRevoked, codec.BindTime(at), reason, id)
	switch {
	case err != nil:
		return fmt.Errorf("revoke CA %q: %w", id, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("revoke CA %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// InsertCARequest stores a pending CA request.
func (t *tx) InsertCARequest(ctx context.Context, r *store.CARequest) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertCARequest+` ON CONFLICT DO NOTHING`, codec.CARequestArgs(r)...)
	switch {
	case err != nil:
		return fmt.Errorf("insert request for CA %q: %w", r.CAID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert request for CA %q: %w", r.CAID, store.ErrExists)
	}
	return nil
}

// CloseCARequest closes a CA request; a cancelled one is deleted.
func (t *tx) CloseCARequest(ctx context.Context, caID, state string, at time.Time) error {
	q, args := sqlrecord.CloseCARequest, []any{state, codec.BindTime(at), caID}
	if state != store.CARequestImported {
		q, args = sqlrecord.DeleteCARequest, []any{caID}
	}
	tag, err := t.tx.Exec(ctx, q, args...)
	switch {
	case err != nil:
		return fmt.Errorf("close request for CA %q: %w", caID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("close request for CA %q: %w", caID, store.ErrNotFound)
	}
	return nil
}

// ListCARequests returns every CA request.
func (s *Store) ListCARequests(ctx context.Context) ([]*store.CARequest, error) {
	out, err := collect(ctx, s.pool, codec.ScanCARequest, sqlrecord.ListCARequests)
	if err != nil {
		return nil, fmt.Errorf("list CA requests: %w", err)
	}
	return out, nil
}
