package sqlite

// The bulk path of the benchmarks' fixtures (store.BulkLoader): millions of enrolled devices in large
// transactions on the writer connection, each table's insert prepared once per transaction.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

var _ store.BulkLoader = (*Store)(nil)

// bulkRecords is the number of records a bulk load commits per transaction. The indexes on random keys
// (serial, SPKI hash, key URI) take each record's entries on a random page; the larger the transaction, the
// more of those entries share a page that is then written to the WAL once. At 100,000 records a transaction
// holds about 250 MB of new rows and index pages.
const bulkRecords = 100_000

// bulkCacheKiB is the writer's page cache during a bulk load, restored afterwards: large enough that the
// random-key index pages a transaction touches stay in it instead of spilling to the WAL before commit.
const bulkCacheKiB = 2 << 20

// insertDeviceKey stores a device key's glossary row beside its certificate (store.Enrolled.CheckDeviceKey).
var insertDeviceKey = `INSERT INTO device_keys (` + sqlrecord.DeviceKeyRowColumns + `) VALUES ($1, $2, $3, $4, $5)`

// insertDevice stores a new device; the bulk load never replaces one.
var insertDevice = `INSERT INTO devices (` + sqlrecord.DeviceColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`

// LoadEnrolled implements store.BulkLoader. next is called from a goroutine of its own, one call at a time,
// which also encodes the events' details, so that the writer connection only seals and inserts.
func (s *Store) LoadEnrolled(ctx context.Context, next func() (*store.Enrolled, error), progress func(int64)) (int64, error) {
	var cache int64
	if err := s.w.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&cache); err != nil {
		return 0, fmt.Errorf("bulk load into %s: %w", s.path, err)
	}
	if _, err := s.w.ExecContext(ctx, fmt.Sprintf(`PRAGMA cache_size = %d`, -bulkCacheKiB)); err != nil {
		return 0, fmt.Errorf("bulk load into %s: %w", s.path, err)
	}
	// The writer's one connection keeps the pages it cached, within the limit it had.
	defer func() {
		_, _ = s.w.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA cache_size = %d`, cache))
	}()
	batches, wait := sqlrecord.GatherEnrolled(ctx, next, 256, 32)
	var (
		total int64
		err   error
		more  = true
	)
	for more && err == nil {
		var n int64
		n, more, err = s.loadTx(ctx, batches)
		total += n
		if n > 0 && progress != nil {
			progress(total)
		}
	}
	if werr := wait(); err == nil {
		err = werr
	}
	return total, err
}

// loadTx stores the records of batches, up to about bulkRecords, in one transaction and returns how many, and
// whether batches may hold more. Between two transactions the writer connection is free, so the checkpointer
// can start the WAL over.
func (s *Store) loadTx(ctx context.Context, batches <-chan sqlrecord.EnrolledBatch) (n int64, more bool, err error) {
	sqltx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("bulk load into %s: begin: %w", s.path, err)
	}
	defer func() {
		if err != nil {
			_ = sqltx.Rollback()
		}
	}()
	var st [4]*sql.Stmt
	defer func() {
		for _, x := range st {
			if x != nil {
				_ = x.Close()
			}
		}
	}()
	for i, q := range []string{sqlrecord.InsertCertificate, insertDeviceKey, insertDevice, sqlrecord.InsertEvent} {
		if st[i], err = sqltx.PrepareContext(ctx, positional(q)); err != nil {
			return 0, false, fmt.Errorf("bulk load into %s: prepare %q: %w", s.path, q, err)
		}
	}
	seq, head := int64(0), audit.GenesisHash
	if herr := sqltx.QueryRowContext(ctx, sqlrecord.AuditHead).Scan(&seq, &head); herr != nil && !errors.Is(herr, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("bulk load into %s: read chain head: %w", s.path, herr)
	}
	var args [13]any
	for n < bulkRecords {
		b, ok := <-batches
		if !ok {
			break
		}
		for i, r := range b.Recs {
			c := &r.Cert
			if _, err = st[0].ExecContext(ctx, codec.AppendCertificateArgs(args[:0], c)...); err != nil {
				return 0, false, bulkError("certificate "+c.Serial, err)
			}
			s.keys.add(c.SPKISHA256)
			if err = r.CheckDeviceKey(); err != nil {
				return 0, false, fmt.Errorf("bulk load: %w", err)
			}
			if _, err = st[1].ExecContext(ctx, codec.DeviceKeyRowArgs(&r.Key)...); err != nil {
				return 0, false, bulkError("key "+r.Key.URI, err)
			}
			d := &r.Device
			if _, err = st[2].ExecContext(ctx, codec.DeviceArgs(d)...); err != nil {
				return 0, false, bulkError("device "+d.Environment+"/"+d.ProductLine+"/"+d.Serial, err)
			}
			e := &r.Event
			audit.Seal(e, seq, head)
			if _, err = st[3].ExecContext(ctx, codec.AppendEventArgs(args[:0], e, b.Details[i])...); err != nil {
				return 0, false, bulkError(fmt.Sprintf("audit event %d", e.Seq), err)
			}
			seq, head = e.Seq, e.Hash
			n++
		}
	}
	if n == 0 {
		return 0, false, sqltx.Rollback()
	}
	if err = sqltx.Commit(); err != nil {
		return 0, false, fmt.Errorf("bulk load into %s: commit: %w", s.path, err)
	}
	return n, n >= bulkRecords, nil
}

// bulkError names the record whose insert failed; a taken identifier is store.ErrExists.
func bulkError(what string, err error) error {
	if isUnique(err) {
		return fmt.Errorf("bulk load: %s: %w", what, store.ErrExists)
	}
	return fmt.Errorf("bulk load: %s: %w", what, err)
}

// SettleBulk implements store.BulkLoader: it copies the WAL into the database and truncates it, so that the
// measurement neither reads the load's pages from the WAL nor pays for copying them. It does not ANALYZE:
// Keyward never gathers statistics on SQLite (Close says why), so a store that grew by issuance has none, and
// its queries are planned without them.
func (s *Store) SettleBulk(ctx context.Context) (string, error) {
	for try := 0; ; try++ {
		var busy, frames, copied int
		if err := s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied); err != nil {
			return "", fmt.Errorf("settle %s: checkpoint: %w", s.path, err)
		}
		if busy == 0 {
			return "WAL checkpointed into the database and truncated (no ANALYZE: Keyward never gathers SQLite statistics)", nil
		}
		// A reader held a snapshot that still needed the WAL; they are short.
		if try == 50 {
			return "", fmt.Errorf("settle %s: the WAL could not be checkpointed: readers kept it busy", s.path)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SizeBytes implements store.BulkLoader: the database file and its WAL.
func (s *Store) SizeBytes(context.Context) (int64, error) {
	var total int64
	for _, p := range []string{s.path, s.path + "-wal"} {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return 0, fmt.Errorf("size of %s: %w", s.path, err)
		default:
			total += fi.Size()
		}
	}
	return total, nil
}
