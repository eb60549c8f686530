package ra

// What the publisher (internal/revocation) stores: CRLs and revocation filters. Publishing decides nothing about
// any certificate, but what it stores goes through the RA like every change, so that no other package opens a
// transaction: CRL numbers and filter versions are taken here, and a filter is recorded with its audit event.

import (
	"context"
	"fmt"
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
