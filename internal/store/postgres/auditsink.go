package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// AdvanceAuditSink moves sink name's cursor forward to seq (never back).
func (t *tx) AdvanceAuditSink(ctx context.Context, name string, seq int64, at time.Time) error {
	if _, err := t.tx.Exec(ctx, sqlrecord.AdvanceAuditSink, name, seq, codec.BindTime(at)); err != nil {
		return fmt.Errorf("advance audit sink %q to %d: %w", name, seq, err)
	}
	return nil
}

// AuditSinkCursor returns sink name's cursor (0 for a sink never advanced).
func (s *Store) AuditSinkCursor(ctx context.Context, name string) (*store.AuditSink, error) {
	c, err := codec.ScanAuditSink(s.pool.QueryRow(ctx, sqlrecord.SelectAuditSink, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return &store.AuditSink{Name: name}, nil
	} else if err != nil {
		return nil, fmt.Errorf("audit sink %q: %w", name, err)
	}
	return c, nil
}

// ListAuditSinks returns every sink's cursor, by name.
func (s *Store) ListAuditSinks(ctx context.Context) ([]*store.AuditSink, error) {
	out, err := collect(ctx, s.pool, codec.ScanAuditSink, sqlrecord.ListAuditSinks)
	if err != nil {
		return nil, fmt.Errorf("list audit sinks: %w", err)
	}
	return out, nil
}
