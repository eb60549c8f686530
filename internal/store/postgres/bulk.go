package postgres

// The bulk path of the benchmarks' fixtures (store.BulkLoader): millions of enrolled devices with COPY, one
// transaction per batch, the next batch gathered while the previous one is copied.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

var _ store.BulkLoader = (*Store)(nil)

// bulkRecords is the number of records a bulk load copies per transaction.
const bulkRecords = 50_000

var (
	certCopyColumns      = strings.Split(sqlrecord.CertificateColumns, ", ")
	deviceKeyCopyColumns = strings.Split(sqlrecord.DeviceKeyRowColumns, ", ")
	deviceCopyColumns    = strings.Split(sqlrecord.DeviceColumns, ", ")
)

// LoadEnrolled implements store.BulkLoader. next is called from a goroutine of its own, one call at a time,
// which also encodes the events' details, so that the next batch is gathered while the server copies the
// previous one.
func (s *Store) LoadEnrolled(ctx context.Context, next func() (*store.Enrolled, error), progress func(int64)) (int64, error) {
	batches, wait := sqlrecord.GatherEnrolled(ctx, next, bulkRecords, 1)
	var (
		total int64
		err   error
	)
	for b := range batches {
		if err = s.copyBatch(ctx, b); err != nil {
			break
		}
		total += int64(len(b.Recs))
		if progress != nil {
			progress(total)
		}
	}
	if werr := wait(); err == nil {
		err = werr
	}
	return total, err
}

// copyBatch stores recs in one transaction: the audit lock and chain head as AppendAudit takes them, then one
// COPY per table.
func (s *Store) copyBatch(ctx context.Context, batch sqlrecord.EnrolledBatch) (err error) {
	recs, details := batch.Recs, batch.Details
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("bulk load on %s: begin: %w", s.where, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// A fixture: a crash may lose the last batches, never their consistency.
	if _, err = tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return fmt.Errorf("bulk load on %s: %w", s.where, err)
	}
	seq, head := int64(0), audit.GenesisHash
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, auditLock)
	b.Queue(sqlrecord.AuditHead)
	b.Queue(`SELECT pg_notify($1, '')`, changesChannel)
	br := tx.SendBatch(ctx, b)
	_, err = br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&seq, &head)
		if errors.Is(err, pgx.ErrNoRows) {
			err = nil
		}
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bulk load on %s: read chain head: %w", s.where, err)
	}
	for _, r := range recs {
		if err = r.CheckDeviceKey(); err != nil {
			return fmt.Errorf("bulk load on %s: %w", s.where, err)
		}
		e := &r.Event
		audit.Seal(e, seq, head)
		seq, head = e.Seq, e.Hash
	}
	copies := []struct {
		table string
		cols  []string
		row   func(r *store.Enrolled, i int) []any
	}{
		{"certificates", certCopyColumns, func(r *store.Enrolled, _ int) []any { return codec.AppendCertificateArgs(nil, &r.Cert) }},
		// The binding that InsertCertificate makes in the same statement as the certificate.
		{"certificate_keys", []string{"spki_sha256", "subject"}, func(r *store.Enrolled, _ int) []any { return []any{r.Cert.SPKISHA256, r.Cert.Subject} }},
		{"device_keys", deviceKeyCopyColumns, func(r *store.Enrolled, _ int) []any { return codec.DeviceKeyRowArgs(&r.Key) }},
		{"devices", deviceCopyColumns, func(r *store.Enrolled, _ int) []any { return codec.DeviceArgs(&r.Device) }},
		{"audit_events", auditCopyColumns, func(r *store.Enrolled, i int) []any { return codec.AppendEventArgs(nil, &r.Event, details[i]) }},
	}
	for _, c := range copies {
		src := pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) { return c.row(recs[i], i), nil })
		if _, err = tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, src); err != nil {
			if pgCode(err) == uniqueViolation {
				err = fmt.Errorf("%w: %w", store.ErrExists, err)
			}
			return fmt.Errorf("bulk load on %s: copy %d rows into %s: %w", s.where, len(recs), c.table, err)
		}
	}
	if err = tx.Commit(ctx); err != nil {
		return fmt.Errorf("bulk load on %s: commit: %w", s.where, err)
	}
	return nil
}

// SettleBulk implements store.BulkLoader: VACUUM (ANALYZE) of the loaded tables, which sets their visibility
// maps and hint bits and gathers the statistics autovacuum would have gathered by then (and resets its
// counters, so that it does not start on them during the measurement), then a CHECKPOINT, so that the
// measurement does not share the disk with the writing out of the load. CHECKPOINT needs the pg_checkpoint
// role or a superuser; without either, the result says so.
func (s *Store) SettleBulk(ctx context.Context) (string, error) {
	if _, err := s.pool.Exec(ctx, `VACUUM (ANALYZE) certificates, certificate_keys, device_keys, devices, audit_events`); err != nil {
		return "", fmt.Errorf("settle %s: vacuum: %w", s.where, err)
	}
	done := "VACUUM (ANALYZE) of certificates, certificate_keys, device_keys, devices, audit_events; CHECKPOINT"
	if _, err := s.pool.Exec(ctx, `CHECKPOINT`); err != nil {
		if pgCode(err) != insufficientPrivilege {
			return "", fmt.Errorf("settle %s: checkpoint: %w", s.where, err)
		}
		done = "VACUUM (ANALYZE) of certificates, certificate_keys, device_keys, devices, audit_events; no CHECKPOINT (the role may not)"
	}
	return done, nil
}

// insufficientPrivilege is SQLSTATE 42501 (PostgreSQL appendix A).
const insufficientPrivilege = "42501"

// SizeBytes implements store.BulkLoader: the tables of the store's schema (the first of its search_path),
// with their indexes and TOAST.
func (s *Store) SizeBytes(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint
		FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
		WHERE ns.nspname = current_schema() AND c.relkind IN ('r', 'm', 'p')`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("size of the store on %s: %w", s.where, err)
	}
	return n, nil
}
