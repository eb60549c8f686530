package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// tx is one READ COMMITTED transaction.
//
// Every insert that can meet an existing row uses ON CONFLICT rather than failing: in PostgreSQL an error
// aborts the whole transaction, and the contract lets a caller carry on after ErrExists, ErrDuplicateKey or
// ErrDuplicateSerial (retrying with a new serial, for one) as it can on SQLite.
type tx struct {
	tx pgx.Tx

	// The audit chain head, read once under the audit lock and then advanced by each append: the lock is held
	// until the transaction ends, so no one else can move it.
	headKnown bool
	headSeq   int64
	headHash  []byte

	// pending holds sealed audit events not yet written; see AppendAudit.
	pending [][]any
	// nested counts the savepoints open (Savepoint): the pending events are not written inside one, where a
	// rollback would take earlier, committed-to events with it.
	nested int

	// pipeline is set by Pipeline: InsertCertificate and InsertKey queue their statements in batch, whose
	// results are checked when it is sent (sendBatch): at the end of the savepoint, before the audit events are
	// written, or before commit. checks holds one result check per queued statement.
	pipeline bool
	batch    *pgx.Batch
	checks   []queuedCheck
	// releases counts the savepoints that succeeded and are not released yet (Savepoint).
	releases int
}

// queuedCheck reads the result of one pipelined statement: a row (row set) or a command tag.
type queuedCheck struct {
	row  func(pgx.Row) error
	exec func(pgconn.CommandTag) error
}

// Pipeline makes InsertCertificate and InsertKey queue their statements until the savepoint, the audit
// events' write or the commit sends them in one round trip (see store.Tx.Pipeline).
func (t *tx) Pipeline() { t.pipeline = true }

func (t *tx) queue(sql string, args ...any) {
	if t.batch == nil {
		t.batch = &pgx.Batch{}
	}
	t.batch.Queue(sql, args...)
}

// sendBatch sends the pipelined statements, then the statements tail (without arguments), in one round trip,
// and returns the first failure among their results.
func (t *tx) sendBatch(ctx context.Context, tail ...string) error {
	if len(t.checks) == 0 {
		if len(tail) == 0 {
			return nil
		}
		_, err := t.tx.Exec(ctx, strings.Join(tail, "; "))
		return err
	}
	for _, q := range tail {
		t.queue(q)
		t.checks = append(t.checks, queuedCheck{exec: func(pgconn.CommandTag) error { return nil }})
	}
	checks, b := t.checks, t.batch
	t.batch, t.checks = nil, nil
	br := t.tx.SendBatch(ctx, b)
	var first error
	for _, c := range checks {
		var err error
		if c.row != nil {
			err = c.row(br.QueryRow())
		} else {
			var tag pgconn.CommandTag
			if tag, err = br.Exec(); err == nil {
				err = c.exec(tag)
			}
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if err := br.Close(); err != nil && first == nil {
		first = err
	}
	return first
}

// maxPending bounds the audit events a transaction buffers before writing them, so a transaction of any size
// holds a bounded number in memory.
const maxPending = 1024

var _ store.Tx = (*tx)(nil)

// auditCopyColumns names the columns of a buffered event, in the order of codec.AppendEventArgs.
var auditCopyColumns = strings.Split(sqlrecord.AuditColumns, ", ")

// flush sends the pipelined writes and writes the buffered audit events with one COPY. Tx calls it before
// commit.
func (t *tx) flush(ctx context.Context) error {
	if err := t.sendBatch(ctx); err != nil {
		return err
	}
	if len(t.pending) == 0 {
		return nil
	}
	first := t.pending[0][0]
	if _, err := t.tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, auditCopyColumns, pgx.CopyFromRows(t.pending)); err != nil {
		return fmt.Errorf("write audit events %d to %d: %w", first, t.headSeq, err)
	}
	t.pending = t.pending[:0]
	return nil
}

func (t *tx) InsertCA(ctx context.Context, ca *store.CA) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertCA+` ON CONFLICT (id) DO NOTHING`, codec.CAArgs(ca)...)
	switch {
	case err == nil && tag.RowsAffected() == 0:
		return fmt.Errorf("insert CA %q: %w", ca.ID, store.ErrExists)
	case err == nil:
		return nil
	case pgCode(err) == foreignKeyViolation:
		return fmt.Errorf("insert CA %q: parent CA %q: %w", ca.ID, ca.ParentID, store.ErrNotFound)
	default:
		return fmt.Errorf("insert CA %q: %w", ca.ID, err)
	}
}

func (t *tx) SetCAStatus(ctx context.Context, id, status string) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.SetCAStatus, status, id)
	switch {
	case err != nil:
		return fmt.Errorf("set CA %q status %s: %w", id, status, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("set CA %q status %s: %w", id, status, store.ErrNotFound)
	}
	return nil
}

func (t *tx) InsertToken(ctx context.Context, tok *store.Token) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertToken+` ON CONFLICT DO NOTHING`, codec.TokenArgs(tok)...)
	switch {
	case err != nil:
		return fmt.Errorf("insert token %s: %w", tok.ID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert token %s: %w", tok.ID, store.ErrExists)
	}
	return nil
}

func (t *tx) RevokeToken(ctx context.Context, id string, at time.Time, reason string) error {
	return t.updateToken(ctx, "revoke token "+id, sqlrecord.RevokeToken, codec.BindTime(at), reason, id)
}

func (t *tx) SetTokenLastUsed(ctx context.Context, id string, at time.Time) error {
	return t.updateToken(ctx, "token "+id+" last used", sqlrecord.SetTokenLastUsed, codec.BindTime(at), id)
}

// updateToken runs an UPDATE of one token, ErrNotFound if it changed none.
func (t *tx) updateToken(ctx context.Context, what, q string, args ...any) error {
	tag, err := t.tx.Exec(ctx, q, args...)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

func (t *tx) InsertKey(ctx context.Context, k *store.Key) error {
	if t.pipeline {
		// Pipelined, a key already in the glossary is no failure (store.Tx.Pipeline).
		t.queue(sqlrecord.InsertKey+` ON CONFLICT (uri) DO NOTHING`, codec.KeyArgs(k)...)
		t.checks = append(t.checks, queuedCheck{exec: func(pgconn.CommandTag) error { return nil }})
		return nil
	}
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertKey+` ON CONFLICT (uri) DO NOTHING`, codec.KeyArgs(k)...)
	switch {
	case err == nil && tag.RowsAffected() == 0:
		return fmt.Errorf("insert key %q: %w", k.URI, store.ErrExists)
	case err == nil:
		return nil
	default:
		return fmt.Errorf("insert key %q: %w", k.URI, err)
	}
}

// insertCertificateKey is Tx.InsertCertificateKey's statement: $1 serial, $2 algorithm, $3 state, $4 time,
// $5 SPKI hash, $6 URI. The certificates_spki_sha256 entries it reads are those InsertCertificate just wrote.
const insertCertificateKey = `INSERT INTO device_keys (serial, algorithm, state, state_changed_at, destroyed_at)
	SELECT $1::text, $2::text, $3::text, $4::timestamptz, NULL
	WHERE NOT EXISTS (SELECT 1 FROM certificates c JOIN device_keys d ON d.serial = c.serial WHERE c.spki_sha256 = $5::bytea)
	AND NOT EXISTS (SELECT 1 FROM keys WHERE uri = $6::text)`

func (t *tx) InsertCertificateKey(ctx context.Context, c *store.Certificate, algorithm string) error {
	args := []any{c.Serial, algorithm, store.KeyActive, codec.BindTime(c.CreatedAt), c.SPKISHA256, store.DeviceKeyURI(c.SPKISHA256)}
	if t.pipeline {
		t.queue(insertCertificateKey, args...)
		t.checks = append(t.checks, queuedCheck{exec: func(pgconn.CommandTag) error { return nil }})
		return nil
	}
	if _, err := t.tx.Exec(ctx, insertCertificateKey, args...); err != nil {
		return fmt.Errorf("insert key of certificate %s: %w", c.Serial, err)
	}
	return nil
}

func (t *tx) SetKeyState(ctx context.Context, uri, state string, at time.Time) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.SetKeyState, codec.SetKeyStateArgs(uri, state, at)...)
	if spki, ok := store.DeviceKeySPKI(uri); ok && err == nil && tag.RowsAffected() == 0 {
		args := codec.SetKeyStateArgs(uri, state, at)
		args[2] = spki
		tag, err = t.tx.Exec(ctx, sqlrecord.SetDeviceKeyState, args...)
	}
	switch {
	case err != nil:
		return fmt.Errorf("set key %q state %s: %w", uri, state, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("set key %q state %s: %w", uri, state, store.ErrNotFound)
	}
	return nil
}

// insertCertificate binds the key to the subject in certificate_keys (or finds the subject it is bound to,
// waiting for a concurrent transaction that is binding it), then inserts the certificate if the subjects
// match and the serial is free. It returns the subject the key is bound to and whether the certificate was
// inserted. The no-op DO UPDATE is there to lock and return the existing row; it writes only on a re-issue.
const insertCertificate = `WITH owner AS (
	INSERT INTO certificate_keys AS k (spki_sha256, subject) VALUES ($8, $5)
	ON CONFLICT (spki_sha256) DO UPDATE SET subject = k.subject
	RETURNING k.subject
), inserted AS (
	INSERT INTO certificates (` + sqlrecord.CertificateColumns + `)
	SELECT $1::text, $2::text, $3::text, $4::integer, $5::text, $6::timestamptz, $7::timestamptz, $8::bytea,
		$9::bytea, $10::text, $11::timestamptz, $12::integer, $13::timestamptz
	FROM owner WHERE owner.subject = $5
	ON CONFLICT (serial) DO NOTHING
	RETURNING 1
)
SELECT (SELECT subject FROM owner), EXISTS (SELECT 1 FROM inserted)`

// insertCertificateCSR is insertCertificate that also writes the certificate's CSR signature ($14-$17, see
// store.CSRSignature) keyed by its serial, in the same statement: a data-modifying WITH runs to completion
// whether or not the query reads it, and inserts the row only if the certificate was inserted.
var insertCertificateCSR = strings.Replace(insertCertificate, `RETURNING 1
)`, `RETURNING serial
), csr AS (
	INSERT INTO csr_signatures (`+sqlrecord.CSRSignatureColumns+`)
	SELECT serial, $14::integer, $15::bytea, $16::bytea, $17::bytea FROM inserted
)`, 1)

// InsertCertificate stores c. A key may be certified again for the same subject (a re-issue to the same
// device) but never for another one: the architecture refuses a key shared by two devices. If the serial is
// taken, nothing is stored but the key's binding to c.Subject, which only a certificate for c.Subject can use.
func (t *tx) InsertCertificate(ctx context.Context, c *store.Certificate) error {
	if len(c.SPKISHA256) != sha256.Size {
		return fmt.Errorf("insert certificate %s: SPKI SHA-256 is %d bytes, want %d", c.Serial, len(c.SPKISHA256), sha256.Size)
	}
	q, args := insertCertificate, codec.AppendCertificateArgs(make([]any, 0, 17), c)
	if c.CSR != nil {
		q, args = insertCertificateCSR, append(args, c.CSR.Algorithm, c.CSR.Digest, c.CSR.R, c.CSR.S)
	}
	if t.pipeline {
		t.queue(q, args...)
		t.checks = append(t.checks, queuedCheck{row: func(r pgx.Row) error { return insertedCertificate(c, r) }})
		return nil
	}
	return insertedCertificate(c, t.tx.QueryRow(ctx, q, args...))
}

// insertedCertificate reads the result of insertCertificate for c.
func insertedCertificate(c *store.Certificate, r pgx.Row) error {
	var (
		owner    string
		inserted bool
	)
	err := r.Scan(&owner, &inserted)
	switch {
	case err == nil && owner != c.Subject:
		return fmt.Errorf("insert certificate %s for %q: key %x is certified for %q: %w",
			c.Serial, c.Subject, c.SPKISHA256, owner, store.ErrDuplicateKey)
	case err == nil && !inserted:
		return fmt.Errorf("insert certificate %s: %w", c.Serial, store.ErrDuplicateSerial)
	case err == nil:
		return nil
	case pgCode(err) == uniqueViolation:
		return fmt.Errorf("insert certificate %s: %w", c.Serial, store.ErrDuplicateSerial)
	case pgCode(err) == foreignKeyViolation:
		return fmt.Errorf("insert certificate %s: issuer CA %q: %w", c.Serial, c.IssuerID, store.ErrNotFound)
	default:
		return fmt.Errorf("insert certificate %s: %w", c.Serial, err)
	}
}

func (t *tx) CertificatesBySPKI(ctx context.Context, h []byte) ([]*store.Certificate, error) {
	certs, err := collect(ctx, t.tx, codec.ScanCertificate, sqlrecord.CertificatesBySPKI, h)
	if err != nil {
		return nil, fmt.Errorf("certificates by SPKI %x: %w", h, err)
	}
	return certs, nil
}

// AppendAudit seals e after the chain head and stores it. The first append of a transaction takes the audit
// advisory lock, which serialises appenders on every node until their transactions end, and then reads the
// head: the two statements go in one round trip, and at READ COMMITTED the read takes its snapshot after the
// lock is granted, so it sees the event of the previous holder.
//
// Sealed events are buffered and written with COPY, maxPending at a time and before commit, which saves a
// round trip per event: a batch of certificates and their events costs one round trip per certificate. The
// buffered events are part of the transaction as much as the written ones: they commit or roll back with it.
func (t *tx) AppendAudit(ctx context.Context, e *audit.Event) error {
	if !t.headKnown {
		b := &pgx.Batch{}
		b.Queue(`SELECT pg_advisory_xact_lock($1)`, auditLock)
		b.Queue(sqlrecord.AuditHead)
		// The change feed's signal (watch.go): delivered to listeners when, and only if, this transaction commits.
		b.Queue(`SELECT pg_notify($1, '')`, changesChannel)
		br := t.tx.SendBatch(ctx, b)
		_, err := br.Exec()
		if err == nil {
			err = br.QueryRow().Scan(&t.headSeq, &t.headHash)
			if errors.Is(err, pgx.ErrNoRows) {
				t.headSeq, t.headHash, err = 0, audit.GenesisHash, nil
			}
		}
		if err == nil {
			_, err = br.Exec()
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("append audit %s %q: read chain head: %w", e.Action, e.Subject, err)
		}
		t.headKnown = true
	}
	details, err := audit.DetailsJSON(e.Details)
	if err != nil {
		return fmt.Errorf("append audit %s %q: %w", e.Action, e.Subject, err)
	}
	audit.Seal(e, t.headSeq, t.headHash)
	t.pending = append(t.pending, codec.AppendEventArgs(nil, e, details))
	t.headSeq, t.headHash = e.Seq, e.Hash
	if len(t.pending) >= maxPending && t.nested == 0 {
		return t.flush(ctx)
	}
	return nil
}

// Savepoint runs fn inside a savepoint of t. If fn fails (or panics), the database is rolled back to the
// savepoint (which also releases the audit lock if fn took it, and drops its change notification) and so is
// what t holds: the chain head, the buffered audit events and the pipelined writes fn made.
//
// Round trips: the savepoint is opened together with the writes pipelined before it and the release of the
// savepoint before it (a savepoint that succeeded is released lazily, so its release costs no round trip of its
// own), and fn's pipelined writes are sent at its end; a group of issuances costs two round trips a request.
func (t *tx) Savepoint(ctx context.Context, fn func() error) (err error) {
	// Buffered events of earlier work are written before the savepoint, never inside it.
	if len(t.pending) >= maxPending/2 && t.nested == 0 {
		if err := t.flush(ctx); err != nil {
			return err
		}
	}
	known, seq, hash, n := t.headKnown, t.headSeq, t.headHash, len(t.pending)
	// Writes pipelined before the savepoint are sent with it, outside it, after the pending releases.
	open := make([]string, 0, t.releases+1)
	for range t.releases {
		open = append(open, `RELEASE SAVEPOINT request`)
	}
	t.releases = 0
	if err := t.sendBatch(ctx, append(open, `SAVEPOINT request`)...); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	t.nested++
	pipeline := t.pipeline
	undo := func() error {
		t.headKnown, t.headSeq, t.headHash, t.pending = known, seq, hash, t.pending[:n]
		t.batch, t.checks = nil, nil
		// Savepoints fn opened and that succeeded are not released yet: each is rolled back and released in
		// turn (a rollback first, since the transaction may be in error), down to this one.
		q := strings.Repeat(`ROLLBACK TO SAVEPOINT request; RELEASE SAVEPOINT request; `, t.releases+1)
		t.releases = 0
		if _, err := t.tx.Exec(context.WithoutCancel(ctx), q); err != nil {
			return fmt.Errorf("roll back to savepoint: %w", err)
		}
		return nil
	}
	finished := false
	defer func() {
		t.nested--
		t.pipeline = pipeline
		if !finished {
			_ = undo()
		}
	}()
	if err := fn(); err != nil {
		finished = true
		if uerr := undo(); uerr != nil {
			return errors.Join(err, uerr)
		}
		return err
	}
	finished = true
	// fn's pipelined writes; one that failed rolls fn back.
	if err := t.sendBatch(ctx); err != nil {
		if uerr := undo(); uerr != nil {
			return errors.Join(err, uerr)
		}
		return err
	}
	t.releases++
	return nil
}

func (t *tx) InsertKDK(ctx context.Context, k *store.KDK) error {
	_, err := t.tx.Exec(ctx, sqlrecord.InsertKDK, codec.KDKArgs(k)...)
	switch {
	case err == nil:
		return nil
	case pgCode(err) == uniqueViolation:
		return fmt.Errorf("insert KDK %s/%s/%s v%d: %w", k.Environment, k.ProductLine, k.Purpose, k.Version, store.ErrExists)
	case pgCode(err) == foreignKeyViolation:
		return fmt.Errorf("insert KDK %s: no key row: %w", k.URI, store.ErrNotFound)
	default:
		return fmt.Errorf("insert KDK %s: %w", k.URI, err)
	}
}
