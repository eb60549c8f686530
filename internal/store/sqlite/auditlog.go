package sqlite

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// InsertCheckpoint implements store.AuditLogTx.
func (t *tx) InsertCheckpoint(ctx context.Context, c *store.Checkpoint) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertCheckpoint, codec.CheckpointArgs(c)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert audit checkpoint of %d events: %w", c.Size, store.ErrExists)
	default:
		return fmt.Errorf("insert audit checkpoint of %d events: %w", c.Size, err)
	}
}

// LatestCheckpoint implements store.AuditLogStore.
func (s *Store) LatestCheckpoint(ctx context.Context) (*store.Checkpoint, error) {
	c, err := codec.ScanCheckpoint(s.r.QueryRowContext(ctx, sqlrecord.LatestCheckpoint))
	if err != nil {
		return nil, fmt.Errorf("latest audit checkpoint: %w", notFound(err))
	}
	return c, nil
}

// WalkCheckpoints implements store.AuditLogStore, a page at a time as WalkAudit does.
func (s *Store) WalkCheckpoints(ctx context.Context, fn func(*store.Checkpoint) error) error {
	var after int64 = -1
	for {
		rows, err := s.r.QueryContext(ctx, sqlrecord.WalkCheckpoints, after, walkPage)
		if err != nil {
			return fmt.Errorf("walk audit checkpoints: %w", err)
		}
		page, err := collect(rows, codec.ScanCheckpoint)
		if err != nil {
			return fmt.Errorf("walk audit checkpoints: %w", err)
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
			after = c.Size
		}
		if len(page) < walkPage {
			return nil
		}
	}
}

// InsertAuditLog implements store.AuditLogTx.
func (t *tx) InsertAuditLog(ctx context.Context, l *store.AuditLog) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertAuditLog, codec.AuditLogArgs(l)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("record audit log %q: %w", l.Origin, store.ErrExists)
	default:
		return fmt.Errorf("record audit log %q: %w", l.Origin, err)
	}
}

// GetAuditLog implements store.AuditLogStore.
func (s *Store) GetAuditLog(ctx context.Context) (*store.AuditLog, error) {
	l, err := codec.ScanAuditLog(s.r.QueryRowContext(ctx, sqlrecord.GetAuditLog))
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", notFound(err))
	}
	return l, nil
}
