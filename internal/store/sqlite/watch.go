package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// watchInterval is how often Watch reads PRAGMA data_version: the latency with which a commit made by another
// connection or process reaches the change feed. The pragma reads no page, so polling costs next to nothing.
const watchInterval = 100 * time.Millisecond

// WalkChanges calls fn for every successful audit event after seq, reading only its sequence number, action and
// subject, in pages of walkPage.
func (s *Store) WalkChanges(ctx context.Context, after int64, fn func(store.Change) error) error {
	for {
		rows, err := s.r.QueryContext(ctx, sqlrecord.WalkChanges, after, walkPage)
		if err != nil {
			return fmt.Errorf("walk changes after %d: %w", after, err)
		}
		page, err := collect(rows, sqlrecord.ScanChange)
		if err != nil {
			return fmt.Errorf("walk changes after %d: %w", after, err)
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
			after = c.Seq
		}
		if len(page) < walkPage {
			return nil
		}
	}
}

// Watch implements store.Store: a connection of its own reads PRAGMA data_version every watchInterval, which
// changes whenever another connection (of this process or another) has committed to the database.
func (s *Store) Watch(ctx context.Context) (<-chan struct{}, error) {
	db, err := sql.Open("sqlite", s.rdsn)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", s.path, err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("watch %s: %w", s.path, err)
	}
	version := func() (int64, error) {
		var v int64
		err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v)
		return v, err
	}
	last, err := version()
	if err != nil {
		_ = conn.Close()
		_ = db.Close()
		return nil, fmt.Errorf("watch %s: %w", s.path, err)
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		defer db.Close()
		defer conn.Close()
		t := time.NewTicker(watchInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			v, err := version()
			if err != nil || v == last {
				continue
			}
			last = v
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, nil
}
