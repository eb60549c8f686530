package sqlrecord

import (
	"context"
	"errors"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// EnrolledBatch is a batch of a bulk load's records (store.BulkLoader), with each event's details encoded as
// audit.DetailsJSON encodes them: Details[i] belongs to Recs[i].
type EnrolledBatch struct {
	Recs    []*store.Enrolled
	Details [][]byte
}

// GatherEnrolled calls next from a goroutine of its own, one call at a time, and sends its records in batches
// of size, their details encoded, with up to ahead batches waiting: a backend writes while the next records
// are made and encoded. The channel is closed after the last batch, when next fails, or when ctx ends.
// wait, called once the channel is drained or abandoned, cancels the gathering, waits for the goroutine (it
// stops once the call of next it may be in returns) and returns next's or the encoding's error, if any.
func GatherEnrolled(parent context.Context, next func() (*store.Enrolled, error), size, ahead int) (<-chan EnrolledBatch, func() error) {
	ctx, cancel := context.WithCancel(parent)
	out := make(chan EnrolledBatch, ahead)
	done := make(chan error, 1)
	go func() {
		defer close(out)
		done <- gather(ctx, next, size, out)
	}()
	return out, func() error {
		cancel()
		for range out { // the gatherer stops at its next send or call of next
		}
		err := <-done
		if errors.Is(err, context.Canceled) && parent.Err() == nil {
			return nil // the cancellation above, not a failure of next
		}
		return err
	}
}

func gather(ctx context.Context, next func() (*store.Enrolled, error), size int, out chan<- EnrolledBatch) error {
	for {
		b := EnrolledBatch{Recs: make([]*store.Enrolled, 0, size), Details: make([][]byte, 0, size)}
		for len(b.Recs) < size {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := next()
			if err != nil {
				return err
			}
			if r == nil {
				break
			}
			d, err := audit.DetailsJSON(r.Event.Details)
			if err != nil {
				return err
			}
			b.Recs, b.Details = append(b.Recs, r), append(b.Details, d)
		}
		if len(b.Recs) > 0 {
			select {
			case out <- b:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if len(b.Recs) < size {
			return nil
		}
	}
}
