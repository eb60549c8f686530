package ra

// What the publisher (internal/revocation) stores: CRLs and revocation filters. Publishing decides nothing about
// any certificate, but what it stores goes through the RA like every change, so that no other package opens a
// transaction: CRL numbers and filter versions are taken here, and a filter is recorded with its audit event.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// NextCRLNumber takes the next CRL number of CA issuerID, in a short transaction of its own: not while the CRL
// is signed, so a large CRL does not hold the database's write lock. A crash in between only skips a number:
// RFC 5280 5.2.3 requires the sequence to increase, not to be gapless.
func (r *RA) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := r.counter(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.NextCRLNumber(ctx, issuerID)
		return err
	})
	return n, err
}

// RecordCRLs stores published CRLs (a complete CRL and its empty delta together, or one delta) in one
// transaction. CRLs are derived from the revocations already audited, so they add no audit event.
func (r *RA) RecordCRLs(ctx context.Context, crls ...*store.PublishedCRL) error {
	return r.counter(ctx, func(tx store.Tx) error {
		for _, c := range crls {
			if err := tx.InsertCRL(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// crlChunksPerTx is how many chunks of a large CRL one transaction stores: the database's write lock is held for
// a few megabytes at a time, never for a whole CRL of millions of entries, and SQLite's write-ahead log can
// start over between them instead of growing by the size of the CRL.
const crlChunksPerTx = 4

// StoreCRLChunks stores the DER CRL that der reads as chunks of store.CRLChunkSize, a few per transaction, and
// returns its size; RecordCRLs then stores the CRL itself (with that size and no DER), which makes them
// visible. Only one chunk is in memory at a time. Chunks of a publication that fails before RecordCRLs are
// pruned with the CRLs published after it.
func (r *RA) StoreCRLChunks(ctx context.Context, issuerID string, delta bool, number int64, der io.Reader) (int64, error) {
	buf := make([]byte, store.CRLChunkSize)
	var size int64
	for seq, done := 0, false; !done; {
		err := r.counter(ctx, func(tx store.Tx) error {
			for range crlChunksPerTx {
				n, err := io.ReadFull(der, buf)
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					done = true
				} else if err != nil {
					return fmt.Errorf("read CRL %d of %s: %w", number, issuerID, err)
				}
				if n > 0 {
					if err := tx.InsertCRLChunk(ctx, issuerID, delta, number, seq, buf[:n]); err != nil {
						return err
					}
					seq++
					size += int64(n)
				}
				if done {
					return nil
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return size, nil
}

// PruneCRLChunks deletes the chunks of issuerID's CRLs of that kind that are no longer stored, a few per
// transaction: deleting a chunk reads it whole (SQLite follows its chain of overflow pages, about 20 ms a
// chunk), and a CRL of ten million entries has hundreds of them, which must not hold the write lock at once.
// Called after RecordCRLs; chunks it misses (a crash) go next time.
func (r *RA) PruneCRLChunks(ctx context.Context, issuerID string, delta bool) error {
	for {
		var n int
		err := r.counter(ctx, func(tx store.Tx) error {
			var err error
			n, err = tx.PruneCRLChunks(ctx, issuerID, delta, crlChunksPerTx)
			return err
		})
		if err != nil || n == 0 {
			return err
		}
	}
}

// NextFilterVersion takes the next version number of the revocation filters of scope.
func (r *RA) NextFilterVersion(ctx context.Context, scope string) (int64, error) {
	var v int64
	err := r.counter(ctx, func(tx store.Tx) error {
		var err error
		v, err = tx.NextFilterVersion(ctx, scope)
		return err
	})
	return v, err
}

// AuthorizeFilter refuses, audited, a principal that may not publish revocation filters.
func (r *RA) AuthorizeFilter(ctx context.Context, p Principal, scope string) error {
	return r.authorize(ctx, p, audit.ActionFilter, scope, "publish revocation filters", revokers...)
}

// RecordFilter stores a published revocation filter with its audit event (details: what it covers).
func (r *RA) RecordFilter(ctx context.Context, p Principal, f *store.PublishedFilter, details map[string]string) error {
	d := map[string]string{"version": fmt.Sprint(f.Version), "bytes": fmt.Sprint(len(f.Data))}
	for k, v := range details {
		d[k] = v
	}
	return r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertFilter(ctx, f); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionFilter, f.Scope, f.IssuedAt.UTC().Truncate(time.Second), d)
	})
}
