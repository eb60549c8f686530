package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// changesChannel is the notification channel of the change feed: every transaction that appends to the audit
// trail notifies it (tx.AppendAudit), and PostgreSQL delivers the notification at commit.
const changesChannel = "keyward_changes"

// watchFallback is how often Watch signals even without a notification: a notification is lost while the
// listening connection is down, and this bounds how late the feed then learns of a commit.
const watchFallback = time.Second

// WalkChanges calls fn for every successful audit event after seq, reading only its sequence number, action and
// subject, in pages of walkPage.
func (s *Store) WalkChanges(ctx context.Context, after int64, fn func(store.Change) error) error {
	for {
		page, err := collect(ctx, s.pool, sqlrecord.ScanChange, sqlrecord.WalkChanges, after, walkPage)
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

// Watch implements store.Store: a connection of its own (not one of the pool's) LISTENs on changesChannel, and
// the channel also receives a value every watchFallback, and while that connection is being re-established.
func (s *Store) Watch(ctx context.Context) (<-chan struct{}, error) {
	listen := func() (*pgx.Conn, error) {
		conn, err := pgx.ConnectConfig(ctx, s.cfg.Copy())
		if err != nil {
			return nil, err
		}
		if _, err := conn.Exec(ctx, `LISTEN `+changesChannel); err != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
			return nil, err
		}
		return conn, nil
	}
	conn, err := listen()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", s.where, err)
	}
	ch := make(chan struct{}, 1)
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(ch)
		defer func() {
			if conn != nil {
				_ = conn.Close(context.WithoutCancel(ctx))
			}
		}()
		for ctx.Err() == nil {
			if conn == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(watchFallback):
				}
				signal()
				if conn, err = listen(); err != nil {
					conn = nil
				}
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, watchFallback)
			_, err := conn.WaitForNotification(wctx)
			cancel()
			signal()
			if err != nil && ctx.Err() == nil && conn.IsClosed() {
				// The connection failed (a timeout leaves it open): reconnect.
				conn = nil
			}
		}
	}()
	return ch, nil
}
