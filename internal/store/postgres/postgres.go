package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

const (
	// auditLock serialises appenders to the audit chain: "keyward" and 1.
	auditLock int64 = 0x6b65797761726401
	// migrationLock serialises nodes that migrate the schema at start: "keyward" and 2.
	migrationLock int64 = 0x6b65797761726402
)

// walkPage is the number of audit events WalkAudit reads per query.
const walkPage = 1000

// Store is a Keyward database on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	cfg   *pgx.ConnConfig // for Watch's own connection
	where string          // host:port/database, for errors; never the password
}

var _ store.Store = (*Store)(nil)

// Open connects to the PostgreSQL database named by dsn (a postgres:// URL or keyword/value string, as pgx
// accepts, including pool_max_conns and run-time parameters such as search_path) and applies any pending
// schema migrations.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err) // pgx redacts the password
	}
	s := &Store{cfg: cfg.ConnConfig, where: fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", s.where, err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", s.where, err)
	}
	if err := migrate(ctx, s.pool); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", s.where, err)
	}
	return s, nil
}

// Close closes every connection of the store.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// ExecRaw runs query outside any transaction. It is a hook for tests and forensics tooling only (the
// conformance suite uses it to tamper with the audit chain); Keyward itself never calls it.
func (s *Store) ExecRaw(ctx context.Context, query string, args ...any) error {
	if _, err := s.pool.Exec(ctx, query, args...); err != nil {
		return fmt.Errorf("exec raw sql on %s: %w", s.where, err)
	}
	return nil
}

// Tx runs fn in one READ COMMITTED transaction: it commits if fn returns nil, and rolls back if fn returns an
// error or panics (the panic then continues).
//
// READ COMMITTED, not REPEATABLE READ or SERIALIZABLE, because AppendAudit must see the chain head as it is
// once it holds the audit lock: at READ COMMITTED each statement takes a new snapshot, so the head read after
// the lock includes the event the previous holder committed. At a higher level the snapshot would date from the
// transaction's first statement, possibly before the lock, and the append would collide with the event it
// missed. The lock, not the isolation level, provides the serialisation.
func (s *Store) Tx(ctx context.Context, fn func(store.Tx) error) error {
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("begin transaction on %s: %w", s.where, err)
	}
	t := &tx{tx: ptx}
	finished := false
	defer func() {
		if !finished {
			// fn panicked or called runtime.Goexit (t.FailNow in a test).
			_ = ptx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(t); err != nil {
		finished = true
		if rbErr := ptx.Rollback(context.WithoutCancel(ctx)); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			return errors.Join(err, fmt.Errorf("roll back transaction on %s: %w", s.where, rbErr))
		}
		return err
	}
	finished = true
	if err := t.flush(ctx); err != nil {
		_ = ptx.Rollback(context.WithoutCancel(ctx))
		return fmt.Errorf("commit transaction on %s: %w", s.where, err)
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction on %s: %w", s.where, err)
	}
	return nil
}

// GetCA returns the CA with the given id, or an error wrapping store.ErrNotFound.
func (s *Store) GetCA(ctx context.Context, id string) (*store.CA, error) {
	ca, err := codec.ScanCA(s.pool.QueryRow(ctx, sqlrecord.SelectCA, id))
	if err != nil {
		return nil, fmt.Errorf("get CA %q: %w", id, notFound(err))
	}
	return ca, nil
}

// ListCAs returns every CA, ordered by id.
func (s *Store) ListCAs(ctx context.Context) ([]*store.CA, error) {
	cas, err := collect(ctx, s.pool, codec.ScanCA, sqlrecord.ListCAs)
	if err != nil {
		return nil, fmt.Errorf("list CAs: %w", err)
	}
	return cas, nil
}

// GetKey returns the key with the given URI, or an error wrapping store.ErrNotFound.
func (s *Store) GetKey(ctx context.Context, uri string) (*store.Key, error) {
	k, err := codec.ScanKey(s.pool.QueryRow(ctx, sqlrecord.SelectKey, uri))
	if spki, ok := store.DeviceKeySPKI(uri); ok && errors.Is(err, pgx.ErrNoRows) {
		k, err = codec.ScanDeviceKey(s.pool.QueryRow(ctx, sqlrecord.SelectDeviceKey, spki))
	}
	if err != nil {
		return nil, fmt.Errorf("get key %q: %w", uri, notFound(err))
	}
	return k, nil
}

// ListKeys returns every key of the glossary, ordered by URI.
func (s *Store) ListKeys(ctx context.Context) ([]*store.Key, error) {
	keys, err := collect(ctx, s.pool, codec.ScanKey, sqlrecord.ListKeys)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	device, err := collect(ctx, s.pool, codec.ScanDeviceKey, sqlrecord.ListDeviceKeys)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return store.MergeKeys(keys, device), nil
}

// CertificatesBySPKI returns the certificates whose SPKI hash is h, ordered by serial.
func (s *Store) CertificatesBySPKI(ctx context.Context, h []byte) ([]*store.Certificate, error) {
	certs, err := collect(ctx, s.pool, codec.ScanCertificate, sqlrecord.CertificatesBySPKI, h)
	if err != nil {
		return nil, fmt.Errorf("certificates by SPKI %x: %w", h, err)
	}
	return certs, nil
}

// IssuanceFacts sends CertificatesBySPKI and SelectDevice in one batch: one round trip.
func (s *Store) IssuanceFacts(ctx context.Context, spki []byte, env, product, serial string) ([]*store.Certificate, *store.Device, error) {
	b := &pgx.Batch{}
	b.Queue(sqlrecord.CertificatesBySPKI, spki)
	b.Queue(sqlrecord.SelectDevice, env, product, serial)
	br := s.pool.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()
	rows, err := br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("issuance facts: %w", err)
	}
	var certs []*store.Certificate
	for rows.Next() {
		c, err := codec.ScanCertificate(rows)
		if err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("issuance facts: %w", err)
		}
		certs = append(certs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("issuance facts: %w", err)
	}
	d, err := codec.ScanDevice(br.QueryRow())
	if errors.Is(err, pgx.ErrNoRows) {
		return certs, nil, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("issuance facts: device %s/%s/%s: %w", env, product, serial, err)
	}
	return certs, d, nil
}

// TokenByHash returns the operator token whose hash is h, or an error wrapping store.ErrNotFound.
func (s *Store) TokenByHash(ctx context.Context, h []byte) (*store.Token, error) {
	t, err := codec.ScanToken(s.pool.QueryRow(ctx, sqlrecord.SelectTokenByHash, h))
	if err != nil {
		return nil, fmt.Errorf("token by hash: %w", notFound(err))
	}
	return t, nil
}

// TokenByName returns the operator token named name, or an error wrapping store.ErrNotFound.
func (s *Store) TokenByName(ctx context.Context, name string) (*store.Token, error) {
	t, err := codec.ScanToken(s.pool.QueryRow(ctx, sqlrecord.SelectTokenByName, name))
	if err != nil {
		return nil, fmt.Errorf("token %q: %w", name, notFound(err))
	}
	return t, nil
}

// ListKDKs returns the key-derivation keys of (env, product, purpose); an empty argument matches any.
func (s *Store) ListKDKs(ctx context.Context, env, product, purpose string) ([]*store.KDK, error) {
	ks, err := collect(ctx, s.pool, codec.ScanKDK, sqlrecord.ListKDKs, env, product, purpose)
	if err != nil {
		return nil, fmt.Errorf("list KDKs: %w", err)
	}
	return ks, nil
}

// ListTokens returns every operator token in order of creation.
func (s *Store) ListTokens(ctx context.Context) ([]*store.Token, error) {
	toks, err := collect(ctx, s.pool, codec.ScanToken, sqlrecord.ListTokens)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return toks, nil
}

// GetCertificate returns the certificate with the given serial, or an error wrapping store.ErrNotFound.
func (s *Store) GetCertificate(ctx context.Context, serial string) (*store.Certificate, error) {
	c, err := codec.ScanCertificate(s.pool.QueryRow(ctx, sqlrecord.SelectCertificate, serial))
	if err != nil {
		return nil, fmt.Errorf("get certificate %s: %w", serial, notFound(err))
	}
	return c, nil
}

// ListCertificates returns the certificates that match every non-zero field of f, ordered by serial, at most
// f.Limit of them when f.Limit is positive.
func (s *Store) ListCertificates(ctx context.Context, f store.CertFilter) ([]*store.Certificate, error) {
	q, args := sqlrecord.ListCertificates(f)
	certs, err := collect(ctx, s.pool, codec.ScanCertificate, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list certificates %+v: %w", f, err)
	}
	return certs, nil
}

// WalkAudit calls fn for every audit event with Seq > after, in sequence order, stopping at the first error,
// which it returns unwrapped. It reads pages of walkPage events by sequence number and holds no connection or
// transaction while fn runs, so fn may use the store and a long walk does not hold back vacuum.
func (s *Store) WalkAudit(ctx context.Context, after int64, fn func(*audit.Event) error) error {
	return s.walkEvents(ctx, fmt.Sprintf("walk audit after %d", after), after, func(after int64) (string, []any) {
		return sqlrecord.WalkAudit, []any{after, walkPage}
	}, fn)
}

// WalkAuditBySubject calls fn for the events of subject in sequence order, a page at a time.
func (s *Store) WalkAuditBySubject(ctx context.Context, subject string, fn func(*audit.Event) error) error {
	return s.walkEvents(ctx, fmt.Sprintf("audit events of %q", subject), 0, func(after int64) (string, []any) {
		return sqlrecord.AuditBySubject, []any{subject, after, walkPage}
	}, fn)
}

// walkEvents reads pages of walkPage events, each after the last one read, with the query page names, and calls
// fn for each; fn's error is returned unwrapped, a read's names what.
func (s *Store) walkEvents(ctx context.Context, what string, after int64, page func(after int64) (string, []any), fn func(*audit.Event) error) error {
	for {
		q, args := page(after)
		events, err := collect(ctx, s.pool, codec.ScanEvent, q, args...)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, e := range events {
			if err := fn(e); err != nil {
				return err
			}
			after = e.Seq
		}
		if len(events) < walkPage {
			return nil
		}
	}
}

// querier is what reads need of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func collect[T any](ctx context.Context, q querier, scan func(sqlrecord.Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return sqlrecord.Append(nil, rows, scan)
}

func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// SQLSTATEs, PostgreSQL appendix A.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// AuditHead returns the newest audit event's sequence number and hash.
func (s *Store) AuditHead(ctx context.Context) (int64, []byte, error) {
	var (
		seq  int64
		hash []byte
	)
	err := s.pool.QueryRow(ctx, sqlrecord.AuditHead).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("audit head: %w", err)
	}
	return seq, hash, nil
}

// PoolStats reports the connection pool.
func (s *Store) PoolStats() []store.PoolStats {
	st := s.pool.Stat()
	return []store.PoolStats{{Name: "pool", Open: int(st.TotalConns()), InUse: int(st.AcquiredConns()), Waits: st.EmptyAcquireCount(), WaitTime: st.EmptyAcquireWaitTime()}}
}
