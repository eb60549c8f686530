package ra

import (
	"context"
	"errors"
	"runtime"
	"sync"

	"github.com/keyward/keyward/internal/store"
)

// StreamOptions tunes IssueStream.
type StreamOptions struct {
	Workers   int // parallel check/lint/sign workers; default GOMAXPROCS
	BatchSize int // certificates committed per transaction; default 512
}

// StreamResult is the outcome of one request of a stream.
type StreamResult struct {
	Index int
	Cert  *store.Certificate
	Err   error
}

// IssueStream issues a stream of requests: next yields requests until it returns false; emit receives each
// outcome (in no particular order). Checking, linting and signing run on several workers; one committer writes
// certificates with their key rows and audit events in transactions of BatchSize, so a stream of any length
// holds at most a few batches in memory. A batch whose transaction fails on a conflict (a duplicate key slipped
// past the pre-check) is retried one request per transaction so only the conflicting request is refused.
func (r *RA) IssueStream(ctx context.Context, p Principal, opts StreamOptions, next func() (IssueRequest, bool), emit func(StreamResult)) error {
	if r.cfg.Site != nil {
		return r.errSiteIssue()
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type job struct {
		i   int
		req IssueRequest
	}
	type done struct {
		i   int
		req IssueRequest
		s   *signed
	}
	jobs := make(chan job, opts.Workers*4)
	signedCh := make(chan done, opts.BatchSize*2)
	var emitMu sync.Mutex
	report := func(res StreamResult) {
		emitMu.Lock()
		defer emitMu.Unlock()
		emit(res)
	}

	go func() {
		defer close(jobs)
		for i := 0; ; i++ {
			req, ok := next()
			if !ok {
				return
			}
			select {
			case jobs <- job{i, req}:
			case <-ctx.Done():
				return
			}
		}
	}()

	var wg sync.WaitGroup
	for w := 0; w < opts.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				prep, err := r.prepare(ctx, p, j.req, nil, true)
				if err != nil {
					r.refuseIssue(ctx, p, j.req, prep, err)
					report(StreamResult{Index: j.i, Err: err})
					continue
				}
				s, err := r.sign(ctx, prep)
				if err != nil {
					report(StreamResult{Index: j.i, Err: err})
					continue
				}
				select {
				case signedCh <- done{j.i, j.req, s}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(signedCh) }()

	var fatal error
	batch := make([]done, 0, opts.BatchSize)
	commit := func() {
		if len(batch) == 0 || fatal != nil {
			batch = batch[:0]
			return
		}
		err := r.tx(ctx, func(tx store.Tx) error {
			// A failure of any record fails the batch (and each is then retried alone): the records' writes
			// may go together (PostgreSQL: one round trip for the batch).
			tx.Pipeline()
			for _, d := range batch {
				if err := r.record(ctx, tx, p, d.s, ActionIssue, nil); err != nil {
					return err
				}
			}
			return nil
		})
		switch {
		case err == nil:
			for _, d := range batch {
				report(StreamResult{Index: d.i, Cert: d.s.row})
			}
		case errors.Is(err, store.ErrDuplicateKey) || errors.Is(err, store.ErrDuplicateSerial):
			for _, d := range batch {
				err := r.tx(ctx, func(tx store.Tx) error { return r.record(ctx, tx, p, d.s, ActionIssue, nil) })
				if err != nil {
					err = recordError(err, d.s)
					r.refuseIssue(ctx, p, d.req, d.s.prepared, err)
					report(StreamResult{Index: d.i, Err: err})
					continue
				}
				report(StreamResult{Index: d.i, Cert: d.s.row})
			}
		default:
			fatal = wrap(KindUnavailable, err)
			for _, d := range batch {
				report(StreamResult{Index: d.i, Err: fatal})
			}
			cancel()
		}
		batch = batch[:0]
	}
	for d := range signedCh {
		batch = append(batch, d)
		if len(batch) == opts.BatchSize {
			commit()
		}
	}
	commit()
	return fatal
}
