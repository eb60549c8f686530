package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// busyTimeout is how long a connection waits for another process's lock before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// walkPage is the number of audit events WalkAudit reads per query.
const walkPage = 1000

// Store is a Keyward database in one SQLite file. It is safe for concurrent use.
//
// Writes go through a pool of exactly one connection: SQLite admits one writer at a time, so queuing writers in
// database/sql is cheaper than letting them race for the file lock, and it lets prepared statements live for
// the life of the store. Reads use a separate pool of read-only connections that WAL lets run beside the
// writer: with one pool for both, a GetCertificate waited behind every batch transaction (72 reads/s against
// 41,000 reads/s with the split pools, BenchmarkGetCertificateDuringWrites on the 2-core test machine).
type Store struct {
	path string
	rdsn string // the read-only connections' DSN, for Watch
	w    *sql.DB
	r    *sql.DB
	// cp checkpoints the WAL in the background (checkpointer) until cpStop closes.
	cp             *sql.DB
	cpStop, cpDone chan struct{}
	cpOnce         sync.Once
	checkpoints    atomic.Int64 // checkpoints run, for tests
	restarts       atomic.Int64 // checkpoints finished on the writer's connection, for tests
	catchUps       atomic.Int64 // passes made before one on the writer's connection, for tests
	ws             [numWriteStmts]*sql.Stmt
	rs             [numReadStmts]*sql.Stmt
	keys           *keyFilter // which keys the certificates may hold (keyfilter.go)
	// dataVersion is the writer connection's PRAGMA data_version when last read (tx.checkForeign).
	dataVersion atomic.Int64
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Warmer = (*Store)(nil)
)

// Open opens the SQLite database at path, creating it if needed, and applies any pending schema migrations.
//
// The database runs in WAL mode with synchronous=FULL: Commit returns once the transaction is in the WAL and
// the WAL is fsynced, so a certificate Keyward has answered with survives a crash of the process, of the
// operating system and a power loss. The RA pays that fsync once per group of concurrent requests (group
// commit, internal/ra/group.go), not once per request. busy_timeout makes other processes that share the file
// wait for the lock instead of failing, and write transactions begin IMMEDIATE (they take the write lock at
// BEGIN), so two writers serialise rather than one failing with SQLITE_BUSY when it upgrades a read lock
// halfway through a transaction.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, checkpointEvery, walRestartFrames)
}

// open is Open with the checkpointer's interval and the WAL size from which the writer starts it over.
func open(ctx context.Context, path string, every time.Duration, restartFrames int) (*Store, error) {
	if path == "" {
		return nil, errors.New("open sqlite store: empty path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite store %q: path must not contain '?' or '#'", path)
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeout.Milliseconds())
	// Issuance inserts into one index on random keys (the SPKI hash; serials ascend, issuer.NewSerial, and a
	// device key's glossary row is keyed by its serial), so a transaction of a few hundred certificates dirties
	// a few hundred index pages.
	// cache_size keeps up to 64 MiB of pages in the writer so that they are not re-read. No commit checkpoints (wal_autocheckpoint 0): the checkpointer
	// copies the WAL into the database once a second on a connection of its own, so a page rewritten by many
	// transactions within that second is copied and fsynced once, and no request waits for a checkpoint.
	// Once the WAL passes walRestartFrames the checkpointer has the writer start it over; the file keeps its size
	// (journal_size_limit -1): truncating it at each restart cost a stall of its own, and it is reused.
	wdsn := path + "?" + common + "&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=cache_size(-65536)&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(-1)" +
		"&_pragma=temp_store(MEMORY)&_txlock=immediate"
	// Every issuance reads the certificates' SPKI index at a random place before signing (the duplicate-key
	// pre-check) on a reader connection; with SQLite's default 2 MB cache, on a store of millions each lookup
	// re-read and re-parsed most of its path from the file. cache_size gives each reader what the writer has.
	rdsn := path + "?" + common + "&_pragma=query_only(1)&_pragma=cache_size(-65536)"

	// The file holds no key material, but it does hold the audit trail and the device inventory: create it
	// readable by its owner only. SQLite gives the -wal and -shm files the same mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		_ = f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	s := &Store{path: path, rdsn: rdsn}
	var err error
	if s.w, err = sql.Open("sqlite", wdsn); err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := ping(ctx, s.w); err != nil {
		_ = s.w.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if err := migrate(ctx, s.w); err != nil {
		_ = s.w.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	// The reader pool opens after the writer has created the file and switched it to WAL.
	if s.r, err = sql.Open("sqlite", rdsn); err != nil {
		_ = s.w.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(n)
	s.r.SetMaxIdleConns(n)
	if err := s.prepare(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	s.keys = newKeyFilter(s.r, s.writerIdle, keyFilterMinKeys)
	var v int64
	if err := s.w.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	s.dataVersion.Store(v)
	if s.cp, err = sql.Open("sqlite", path+"?"+common); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	s.cp.SetMaxOpenConns(1)
	s.cpStop, s.cpDone = make(chan struct{}), make(chan struct{})
	go s.checkpointer(every, restartFrames)
	return s, nil
}

// Warm implements store.Warmer: it builds the filter of certified keys (keyfilter.go) unless it is built, and
// returns once it is.
func (s *Store) Warm(ctx context.Context) error { return s.keys.warm(ctx) }

// WarmStats implements store.Warmer: the key filter's memory and keys.
func (s *Store) WarmStats() store.WarmStats { return s.keys.stats() }

// writerIdle returns once no write transaction is open on the writer connection (or ctx ends).
func (s *Store) writerIdle(ctx context.Context) error {
	c, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	return c.Close()
}

// checkpointer copies the WAL into the database in the background, on a connection of its own, so that no
// committing transaction does it: with SQLite's automatic checkpoint the commit that crosses the threshold
// copies the whole WAL and fsyncs the database while holding the writer, and every request queued behind it
// waits (the > 100 ms stalls under load). A PASSIVE checkpoint never blocks readers or writers; it copies what
// no reader still needs, and the writer starts the WAL over once a checkpoint has copied all of it.
func (s *Store) checkpointer(every time.Duration, restartFrames int) {
	defer close(s.cpDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.cpStop:
			return
		case <-t.C:
			frames, err := s.passiveCheckpoint()
			if err != nil {
				continue
			}
			s.checkpoints.Add(1)
			// Under a steady stream of commits a background pass never copies the very last frames, and the WAL
			// only starts over when a transaction begins after a checkpoint copied all of it: without this it
			// would grow for as long as the load lasts. So, once it is large, the frames committed since the
			// last pass are copied on the writer's own connection, between two of its transactions, and the next
			// transaction starts the WAL over.
			if frames < restartFrames {
				continue
			}
			// That copy, and the fsync of the database file that ends it, hold the writer: every commit waits.
			// On a store of millions each committed frame is a random page of the database (an index on a
			// random key), and a pass copies only up to where the WAL ended when it began: the writer was left
			// what was committed while the previous pass ran, 900 to 3,800 frames, 0.05 to 0.44 s of stall at
			// 5 million certificates. So further passes on the checkpointer's connection copy what was committed
			// during the previous one, each shorter than the one before, until one found at most
			// writerCopyFrames new frames. The writer is then left at most the group that was committing when
			// its pass asked for the connection (about 950 frames, 0.02 to 0.09 s; 4 runs of 60,000 each way).
			for pass := 0; pass < catchUpPasses; pass++ {
				var more int
				if more, err = s.passiveCheckpoint(); err != nil {
					break
				}
				s.catchUps.Add(1)
				grew := more - frames
				frames = more
				if grew <= writerCopyFrames {
					break
				}
			}
			if err != nil {
				continue
			}
			if _, err := s.w.Exec(`PRAGMA wal_checkpoint(PASSIVE)`); err == nil {
				s.restarts.Add(1)
			}
		}
	}
}

// passiveCheckpoint runs a PASSIVE checkpoint on the checkpointer's connection and returns the WAL's frames
// when it began (it copied up to there, unless a reader still needed some of them).
func (s *Store) passiveCheckpoint() (frames int, err error) {
	var busy, copied int
	err = s.cp.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
	return frames, err
}

// writerCopyFrames is the most frames a catch-up pass may find new before the checkpointer leaves the rest to
// the writer's own pass (a hundred-odd certificates' pages; under load a group commits about 950 frames at
// once); catchUpPasses bounds the passes it makes to get there.
const (
	writerCopyFrames = 256
	catchUpPasses    = 8
)

// checkpointEvery is how often the checkpointer runs: the WAL holds about a second of writes (tens of
// megabytes at full load). Every 200 ms cost bulk issuance about 4 % (pages rewritten within a second copied
// several times); once a second it costs nothing measurable and removes the stalls.
const checkpointEvery = time.Second

// walRestartFrames is the WAL size, in pages, from which the checkpointer has the writer start it over: 64 MiB.
const walRestartFrames = 16384

// ping opens the writer connection. Processes that open a new file at once race to switch it to WAL, which
// takes an exclusive lock, and SQLite refuses the losers with SQLITE_BUSY at once instead of waiting
// busy_timeout for the lock: ping retries them for as long as busy_timeout would have waited, after which the
// file is in WAL mode and the pragma needs no lock.
func ping(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := db.PingContext(ctx)
		if err == nil || sqliteCode(err)&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Statements prepared once per store. database/sql re-prepares them on a connection if it is ever replaced.
const (
	stInsertCA = iota
	stInsertKey
	stInsertCertKey
	stInsertNewCertKey
	stKeyRecorded
	stSetKeyState
	stKeyConflict
	stInsertCert
	stCertsBySPKI
	stAuditHead
	stInsertAudit
	stSetCAStatus
	stInsertToken
	stSavepoint
	stRelease
	stRollbackTo
	stInsertCSRSig
	numWriteStmts
)

const (
	stGetCA = iota
	stGetKey
	stGetDeviceKey
	stGetCert
	stWalkAudit
	stCertsBySPKIRead
	stTokenByHash
	stGetDevice
	numReadStmts
)

// prepare prepares the store's statements on the writer and the reader pools.
func (s *Store) prepare(ctx context.Context) error {
	writeSQL := [numWriteStmts]string{
		stInsertCA:         sqlrecord.InsertCA,
		stInsertKey:        sqlrecord.InsertKey,
		stInsertCertKey:    insertCertificateKey,
		stInsertNewCertKey: insertNewCertificateKey,
		stKeyRecorded:      `SELECT 1 FROM keys WHERE uri = ?`,
		stSetKeyState:      sqlrecord.SetKeyState,
		// The duplicate-key check of InsertCertificate; PostgreSQL makes it within its insert instead.
		// Another subject's certificate first, if there is one; no row at all: the key is new.
		stKeyConflict: `SELECT subject FROM certificates WHERE spki_sha256 = ?1 ORDER BY subject = ?2 LIMIT 1`,
		stInsertCert:  sqlrecord.InsertCertificate,
		stCertsBySPKI: sqlrecord.CertificatesBySPKI,
		stAuditHead:   sqlrecord.AuditHead,
		stInsertAudit: sqlrecord.InsertEvent,
		stSetCAStatus: sqlrecord.SetCAStatus,
		stInsertToken: sqlrecord.InsertToken,
		// Tx.Savepoint: one name, nested savepoints shadow it (the innermost is released or rolled back).
		stSavepoint:  `SAVEPOINT request`,
		stRelease:    `RELEASE request`,
		stRollbackTo: `ROLLBACK TO request`,
		// InsertCertificate's CSR signature row (hygiene.go), one per certificate issued from an ECDSA or
		// Ed25519 CSR.
		stInsertCSRSig: sqlrecord.InsertCSRSignature,
	}

	readSQL := [numReadStmts]string{
		stGetCA:           sqlrecord.SelectCA,
		stGetKey:          sqlrecord.SelectKey,
		stGetDeviceKey:    sqlrecord.SelectDeviceKey,
		stGetCert:         sqlrecord.SelectCertificate,
		stWalkAudit:       sqlrecord.WalkAudit,
		stCertsBySPKIRead: sqlrecord.CertificatesBySPKI,
		stTokenByHash:     sqlrecord.SelectTokenByHash,
		// Every issuance for a device serial consults the registry (the RA's checkRegistry).
		stGetDevice: sqlrecord.SelectDevice,
	}
	for i, q := range writeSQL {
		st, err := s.w.PrepareContext(ctx, positional(q))
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.ws[i] = st
	}
	for i, q := range readSQL {
		st, err := s.r.PrepareContext(ctx, positional(q))
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.rs[i] = st
	}
	return nil
}

// positional returns q with its placeholders $1, $2, ... rewritten to ?, if each appears once and in that order,
// and q itself otherwise. The driver copies the name of every named parameter out of SQLite each time it binds
// one, an allocation per argument per execution that an anonymous ? does not cost; the statements prepared at
// Open run for every certificate issued and read.
func positional(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	next := 1
	for i := 0; i < len(q); i++ {
		if q[i] != '$' {
			b.WriteByte(q[i])
			continue
		}
		j := i + 1
		for j < len(q) && q[j] >= '0' && q[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(q[i+1 : j]); err != nil || n != next {
			return q
		}
		next++
		b.WriteByte('?')
		i = j - 1
	}
	return b.String()
}

// Close closes the database. It deliberately does not run PRAGMA optimize: on a young database (a fresh data
// directory opened and closed by 'init' and 'station add') it records statistics of near-empty tables, and with
// a "0 0 0" row for the partial index certificates_revocation_seq SQLite then planned the duplicate-key check
// (spki_sha256 = ?) as a full scan of certificates, so every enrollment slowed as the table grew. Keyward's
// queries are all equality or range lookups on indexes the planner picks without statistics.
func (s *Store) Close() error {
	if s.keys != nil {
		s.keys.close()
	}
	s.cpOnce.Do(func() {
		if s.cpStop != nil {
			close(s.cpStop)
			<-s.cpDone
		}
		if s.cp != nil {
			_ = s.cp.Close()
		}
	})
	for _, st := range s.ws {
		if st != nil {
			_ = st.Close()
		}
	}
	for _, st := range s.rs {
		if st != nil {
			_ = st.Close()
		}
	}
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite store %s: %w", s.path, err)
	}
	return nil
}

// ExecRaw runs query on the writer connection, outside any transaction. It is a hook for tests and forensics
// tooling only (the conformance suite uses it to tamper with the audit chain); Keyward itself never calls it.
func (s *Store) ExecRaw(ctx context.Context, query string, args ...any) error {
	if _, err := s.w.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("exec raw sql on %s: %w", s.path, err)
	}
	return nil
}

// Tx runs fn in one IMMEDIATE transaction: it commits if fn returns nil, and rolls back if fn returns an error
// or panics (the panic then continues). fn must not call s.Tx: the store has one writer connection, so a nested
// transaction would wait for itself.
func (s *Store) Tx(ctx context.Context, fn func(store.Tx) error) error {
	sqltx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction on %s: %w", s.path, err)
	}
	t := &tx{s: s, tx: sqltx}
	finished := false
	defer func() {
		if !finished {
			// fn panicked or called runtime.Goexit (t.FailNow in a test): release the writer connection.
			_ = sqltx.Rollback()
		}
	}()
	if err := fn(t); err != nil {
		finished = true
		if rbErr := sqltx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			return errors.Join(err, fmt.Errorf("roll back transaction on %s: %w", s.path, rbErr))
		}
		return err
	}
	finished = true
	if err := sqltx.Commit(); err != nil {
		return fmt.Errorf("commit transaction on %s: %w", s.path, err)
	}
	return nil
}

// GetCA returns the CA with the given id, or an error wrapping store.ErrNotFound.
func (s *Store) GetCA(ctx context.Context, id string) (*store.CA, error) {
	ca, err := codec.ScanCA(s.rs[stGetCA].QueryRowContext(ctx, id))
	if err != nil {
		return nil, fmt.Errorf("get CA %q: %w", id, notFound(err))
	}
	return ca, nil
}

// ListCAs returns every CA, ordered by id.
func (s *Store) ListCAs(ctx context.Context) ([]*store.CA, error) {
	rows, err := s.r.QueryContext(ctx, sqlrecord.ListCAs)
	if err != nil {
		return nil, fmt.Errorf("list CAs: %w", err)
	}
	cas, err := collect(rows, codec.ScanCA)
	if err != nil {
		return nil, fmt.Errorf("list CAs: %w", err)
	}
	return cas, nil
}

// GetKey returns the key with the given URI, or an error wrapping store.ErrNotFound.
func (s *Store) GetKey(ctx context.Context, uri string) (*store.Key, error) {
	k, err := codec.ScanKey(s.rs[stGetKey].QueryRowContext(ctx, uri))
	if spki, ok := store.DeviceKeySPKI(uri); ok && errors.Is(err, sql.ErrNoRows) {
		k, err = codec.ScanDeviceKey(s.rs[stGetDeviceKey].QueryRowContext(ctx, spki))
	}
	if err != nil {
		return nil, fmt.Errorf("get key %q: %w", uri, notFound(err))
	}
	return k, nil
}

// ListKeys returns every key of the glossary, ordered by URI.
func (s *Store) ListKeys(ctx context.Context) ([]*store.Key, error) {
	var lists [2][]*store.Key
	for i, q := range []struct {
		sql  string
		scan func(sqlrecord.Row) (*store.Key, error)
	}{{sqlrecord.ListKeys, codec.ScanKey}, {sqlrecord.ListDeviceKeys, codec.ScanDeviceKey}} {
		rows, err := s.r.QueryContext(ctx, q.sql)
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		if lists[i], err = collect(rows, q.scan); err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
	}
	return store.MergeKeys(lists[0], lists[1]), nil
}

// CertificatesBySPKI returns the certificates whose SPKI hash is h, ordered by serial.
func (s *Store) CertificatesBySPKI(ctx context.Context, h []byte) ([]*store.Certificate, error) {
	rows, err := s.rs[stCertsBySPKIRead].QueryContext(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("certificates by SPKI %x: %w", h, err)
	}
	certs, err := collect(rows, codec.ScanCertificate)
	if err != nil {
		return nil, fmt.Errorf("certificates by SPKI %x: %w", h, err)
	}
	return certs, nil
}

// TokenByHash returns the operator token whose hash is h, or an error wrapping store.ErrNotFound.
func (s *Store) TokenByHash(ctx context.Context, h []byte) (*store.Token, error) {
	t, err := codec.ScanToken(s.rs[stTokenByHash].QueryRowContext(ctx, h))
	if err != nil {
		return nil, fmt.Errorf("token by hash: %w", notFound(err))
	}
	return t, nil
}

// TokenByName returns the operator token named name, or an error wrapping store.ErrNotFound.
func (s *Store) TokenByName(ctx context.Context, name string) (*store.Token, error) {
	t, err := codec.ScanToken(s.r.QueryRowContext(ctx, sqlrecord.SelectTokenByName, name))
	if err != nil {
		return nil, fmt.Errorf("token %q: %w", name, notFound(err))
	}
	return t, nil
}

// ListKDKs returns the key-derivation keys of (env, product, purpose); an empty argument matches any.
func (s *Store) ListKDKs(ctx context.Context, env, product, purpose string) ([]*store.KDK, error) {
	rows, err := s.r.QueryContext(ctx, sqlrecord.ListKDKs, env, product, purpose)
	if err != nil {
		return nil, fmt.Errorf("list KDKs: %w", err)
	}
	ks, err := collect(rows, codec.ScanKDK)
	if err != nil {
		return nil, fmt.Errorf("list KDKs: %w", err)
	}
	return ks, nil
}

// ListTokens returns every operator token in order of creation.
func (s *Store) ListTokens(ctx context.Context) ([]*store.Token, error) {
	rows, err := s.r.QueryContext(ctx, sqlrecord.ListTokens)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	toks, err := collect(rows, codec.ScanToken)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return toks, nil
}

// GetCertificate returns the certificate with the given serial, or an error wrapping store.ErrNotFound.
func (s *Store) GetCertificate(ctx context.Context, serial string) (*store.Certificate, error) {
	c, err := codec.ScanCertificate(s.rs[stGetCert].QueryRowContext(ctx, serial))
	if err != nil {
		return nil, fmt.Errorf("get certificate %s: %w", serial, notFound(err))
	}
	return c, nil
}

// ListCertificates returns the certificates that match every non-zero field of f, ordered by serial, at most
// f.Limit of them when f.Limit is positive.
func (s *Store) ListCertificates(ctx context.Context, f store.CertFilter) ([]*store.Certificate, error) {
	q, args := sqlrecord.ListCertificates(f)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list certificates %+v: %w", f, err)
	}
	certs, err := collect(rows, codec.ScanCertificate)
	if err != nil {
		return nil, fmt.Errorf("list certificates %+v: %w", f, err)
	}
	return certs, nil
}

// WalkAudit calls fn for every audit event with Seq > after, in sequence order, stopping at the first error,
// which it returns unwrapped. It reads pages of walkPage events by sequence number and holds no connection
// or read transaction while fn runs, so fn may use the store and a long walk does not hold back checkpoints.
func (s *Store) WalkAudit(ctx context.Context, after int64, fn func(*audit.Event) error) error {
	return s.walkEvents(ctx, fmt.Sprintf("walk audit after %d", after), after, func(after int64) (*sql.Rows, error) {
		return s.rs[stWalkAudit].QueryContext(ctx, after, walkPage)
	}, fn)
}

// WalkAuditBySubject calls fn for the events of subject in sequence order, a page at a time.
func (s *Store) WalkAuditBySubject(ctx context.Context, subject string, fn func(*audit.Event) error) error {
	return s.walkEvents(ctx, fmt.Sprintf("audit events of %q", subject), 0, func(after int64) (*sql.Rows, error) {
		return s.r.QueryContext(ctx, positional(sqlrecord.AuditBySubject), subject, after, walkPage)
	}, fn)
}

// walkEvents reads pages of walkPage events, each after the last one read, with query, and calls fn for each;
// fn's error is returned unwrapped, a read's names what.
func (s *Store) walkEvents(ctx context.Context, what string, after int64, query func(after int64) (*sql.Rows, error), fn func(*audit.Event) error) error {
	page := make([]*audit.Event, 0, walkPage)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		rows, err := query(after)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if page, err = appendRows(page[:0], rows, codec.ScanEvent); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
			after = e.Seq
		}
		if len(page) < walkPage {
			return nil
		}
	}
}

// appendRows scans every row with scan, appends to dst and closes rows.
func appendRows[T any](dst []T, rows *sql.Rows, scan func(sqlrecord.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	return sqlrecord.Append(dst, rows, scan)
}

func collect[T any](rows *sql.Rows, scan func(sqlrecord.Row) (T, error)) ([]T, error) {
	return appendRows(nil, rows, scan)
}

// notFound maps sql.ErrNoRows to store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// sqliteCode returns the extended SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

func isUnique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func isForeignKey(err error) bool { return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY }

// AuditHead returns the newest audit event's sequence number and hash.
func (s *Store) AuditHead(ctx context.Context) (int64, []byte, error) {
	var (
		seq  int64
		hash []byte
	)
	err := s.r.QueryRowContext(ctx, sqlrecord.AuditHead).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("audit head: %w", err)
	}
	return seq, hash, nil
}

// PoolStats reports the writer connection (one; requests queue for it) and the reader pool.
func (s *Store) PoolStats() []store.PoolStats {
	out := make([]store.PoolStats, 0, 2)
	for _, p := range []struct {
		name string
		db   *sql.DB
	}{{"writer", s.w}, {"reader", s.r}} {
		st := p.db.Stats()
		out = append(out, store.PoolStats{Name: p.name, Open: st.OpenConnections, InUse: st.InUse, Waits: st.WaitCount, WaitTime: st.WaitDuration})
	}
	return out
}
