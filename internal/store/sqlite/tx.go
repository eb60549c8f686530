package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// tx is one IMMEDIATE transaction on the writer connection. Because it holds SQLite's write lock from BEGIN to
// COMMIT, no other writer (in this process or another) can change the database meanwhile: the duplicate-key
// check and the audit chain head it reads stay true until it commits.
type tx struct {
	s     *Store
	tx    *sql.Tx
	stmts [numWriteStmts]*sql.Stmt

	// pipeline: see Pipeline.
	pipeline bool

	// foreignChecked: this transaction has compared PRAGMA data_version with the writer's last (checkForeign).
	foreignChecked bool

	// newKeySerial is the serial of the certificate InsertCertificate last stored for a key no certificate
	// held before (under this transaction's write lock): its InsertCertificateKey needs no second look.
	newKeySerial string

	// The audit chain head, read once per transaction and then advanced by each append.
	headKnown bool
	headSeq   int64
	headHash  []byte
}

var _ store.Tx = (*tx)(nil)

// stmt returns the store's prepared statement i bound to this transaction; on the single writer connection it
// is the statement prepared at Open, not a new one.
func (t *tx) stmt(ctx context.Context, i int) *sql.Stmt {
	if t.stmts[i] == nil {
		t.stmts[i] = t.tx.StmtContext(ctx, t.s.ws[i])
	}
	return t.stmts[i]
}

func (t *tx) InsertCA(ctx context.Context, ca *store.CA) error {
	_, err := t.stmt(ctx, stInsertCA).ExecContext(ctx, codec.CAArgs(ca)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert CA %q: %w", ca.ID, store.ErrExists)
	case isForeignKey(err):
		return fmt.Errorf("insert CA %q: parent CA %q: %w", ca.ID, ca.ParentID, store.ErrNotFound)
	default:
		return fmt.Errorf("insert CA %q: %w", ca.ID, err)
	}
}

func (t *tx) SetCAStatus(ctx context.Context, id, status string) error {
	res, err := t.stmt(ctx, stSetCAStatus).ExecContext(ctx, status, id)
	if err != nil {
		return fmt.Errorf("set CA %q status %s: %w", id, status, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("set CA %q status %s: %w", id, status, err)
	} else if n == 0 {
		return fmt.Errorf("set CA %q status %s: %w", id, status, store.ErrNotFound)
	}
	return nil
}

func (t *tx) InsertToken(ctx context.Context, tok *store.Token) error {
	_, err := t.stmt(ctx, stInsertToken).ExecContext(ctx, codec.TokenArgs(tok)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert token %s: %w", tok.ID, store.ErrExists)
	default:
		return fmt.Errorf("insert token %s: %w", tok.ID, err)
	}
}

func (t *tx) RevokeToken(ctx context.Context, id string, at time.Time, reason string) error {
	return t.updateToken(ctx, "revoke token "+id, sqlrecord.RevokeToken, codec.BindTime(at), reason, id)
}

func (t *tx) SetTokenLastUsed(ctx context.Context, id string, at time.Time) error {
	return t.updateToken(ctx, "token "+id+" last used", sqlrecord.SetTokenLastUsed, codec.BindTime(at), id)
}

// updateToken runs an UPDATE of one token, ErrNotFound if it changed none.
func (t *tx) updateToken(ctx context.Context, what, q string, args ...any) error {
	res, err := t.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	} else if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

func (t *tx) InsertKey(ctx context.Context, k *store.Key) error {
	_, err := t.stmt(ctx, stInsertKey).ExecContext(ctx, codec.KeyArgs(k)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err) && t.pipeline:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert key %q: %w", k.URI, store.ErrExists)
	default:
		return fmt.Errorf("insert key %q: %w", k.URI, err)
	}
}

// insertCertificateKey is Tx.InsertCertificateKey's statement: $1 serial, $2 algorithm, $3 state, $4 time,
// $5 SPKI hash, $6 URI. The certificates_spki_sha256 pages it reads are those InsertCertificate just wrote.
const insertCertificateKey = `INSERT INTO device_keys (serial, algorithm, state, state_changed_at, destroyed_at)
	SELECT $1, $2, $3, $4, NULL
	WHERE NOT EXISTS (SELECT 1 FROM certificates c JOIN device_keys d ON d.serial = c.serial WHERE c.spki_sha256 = $5)
	AND NOT EXISTS (SELECT 1 FROM keys WHERE uri = $6)`

// insertNewCertificateKey is insertCertificateKey for a key InsertCertificate found no certificate of, once
// stKeyRecorded found no key row of its URI: the certificates' SPKI index is not read a third time, and a
// one-row VALUES insert needs no statement journal (an INSERT ... SELECT opens one, and truncating it walks
// every page the group transaction has journaled so far).
const insertNewCertificateKey = `INSERT INTO device_keys (serial, algorithm, state, state_changed_at, destroyed_at)
	VALUES ($1, $2, $3, $4, NULL)`

func (t *tx) InsertCertificateKey(ctx context.Context, c *store.Certificate, algorithm string) error {
	at, uri := codec.BindTime(c.CreatedAt), store.DeviceKeyURI(c.SPKISHA256)
	if c.Serial != t.newKeySerial {
		if _, err := t.stmt(ctx, stInsertCertKey).ExecContext(ctx, c.Serial, algorithm, store.KeyActive, at, c.SPKISHA256, uri); err != nil {
			return fmt.Errorf("insert key of certificate %s: %w", c.Serial, err)
		}
		return nil
	}
	var one int
	switch err := t.stmt(ctx, stKeyRecorded).QueryRowContext(ctx, uri).Scan(&one); {
	case err == nil: // recorded before it was certified (a factory site's record): that row stays the key's
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("insert key of certificate %s: %w", c.Serial, err)
	}
	if _, err := t.stmt(ctx, stInsertNewCertKey).ExecContext(ctx, c.Serial, algorithm, store.KeyActive, at); err != nil {
		return fmt.Errorf("insert key of certificate %s: %w", c.Serial, err)
	}
	return nil
}

func (t *tx) SetKeyState(ctx context.Context, uri, state string, at time.Time) error {
	res, err := t.stmt(ctx, stSetKeyState).ExecContext(ctx, codec.SetKeyStateArgs(uri, state, at)...)
	if err != nil {
		return fmt.Errorf("set key %q state %s: %w", uri, state, err)
	}
	n, err := res.RowsAffected()
	if spki, ok := store.DeviceKeySPKI(uri); ok && err == nil && n == 0 {
		args := codec.SetKeyStateArgs(uri, state, at)
		args[2] = spki
		if res, err = t.tx.ExecContext(ctx, sqlrecord.SetDeviceKeyState, args...); err == nil {
			n, err = res.RowsAffected()
		}
	}
	if err != nil {
		return fmt.Errorf("set key %q state %s: %w", uri, state, err)
	}
	if n == 0 {
		return fmt.Errorf("set key %q state %s: %w", uri, state, store.ErrNotFound)
	}
	return nil
}

// InsertCertificate stores c. A key may be certified again for the same subject (a re-issue to the same
// device) but never for another one: the architecture refuses a key shared by two devices.
func (t *tx) InsertCertificate(ctx context.Context, c *store.Certificate) error {
	if len(c.SPKISHA256) != sha256.Size {
		return fmt.Errorf("insert certificate %s: SPKI SHA-256 is %d bytes, want %d", c.Serial, len(c.SPKISHA256), sha256.Size)
	}
	// The transaction holds the write lock, so no other writer can certify the key between check and insert.
	// A key the trusted filter has never seen is held by no certificate (keyfilter.go); any other is looked up.
	t.newKeySerial = ""
	newKey := t.checkForeign(ctx) && t.s.keys.absentForWrite(c.SPKISHA256)
	if !newKey {
		var other string
		err := t.stmt(ctx, stKeyConflict).QueryRowContext(ctx, c.SPKISHA256, c.Subject).Scan(&other)
		switch {
		case err == nil && other != c.Subject:
			return fmt.Errorf("insert certificate %s for %q: key %x is certified for %q: %w",
				c.Serial, c.Subject, c.SPKISHA256, other, store.ErrDuplicateKey)
		case errors.Is(err, sql.ErrNoRows):
			newKey = true
		case err != nil:
			return fmt.Errorf("insert certificate %s: check key: %w", c.Serial, err)
		}
	}
	var args [13]any // one per column: the statement does not keep them, so they stay off the heap
	_, err := t.stmt(ctx, stInsertCert).ExecContext(ctx, codec.AppendCertificateArgs(args[:0], c)...)
	switch {
	case err == nil:
		t.s.keys.add(c.SPKISHA256)
		if newKey {
			t.newKeySerial = c.Serial
		}
		return t.insertCSRSignature(ctx, c)
	case isUnique(err):
		return fmt.Errorf("insert certificate %s: %w", c.Serial, store.ErrDuplicateSerial)
	case isForeignKey(err):
		return fmt.Errorf("insert certificate %s: issuer CA %q: %w", c.Serial, c.IssuerID, store.ErrNotFound)
	default:
		return fmt.Errorf("insert certificate %s: %w", c.Serial, err)
	}
}

// checkForeign reads PRAGMA data_version once per transaction and tells the key filter if another
// connection has committed since the writer's previous look; it reports whether that look succeeded (if not,
// the filter is not trusted in this transaction).
func (t *tx) checkForeign(ctx context.Context) bool {
	if t.foreignChecked {
		return true
	}
	var v int64
	if err := t.tx.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
		return false
	}
	t.foreignChecked = true
	if old := t.s.dataVersion.Swap(v); old != v {
		t.s.keys.foreignCommit()
	}
	return true
}

// insertCSRSignature writes c.CSR, if set, keyed by c's serial: one row appended at the right edge of
// csr_signatures (serials ascend with issuance time).
func (t *tx) insertCSRSignature(ctx context.Context, c *store.Certificate) error {
	if c.CSR == nil {
		return nil
	}
	if _, err := t.stmt(ctx, stInsertCSRSig).ExecContext(ctx, codec.CSRSignatureArgs(c.Serial, c.CSR)...); err != nil {
		return fmt.Errorf("insert certificate %s: its CSR signature: %w", c.Serial, err)
	}
	return nil
}

func (t *tx) CertificatesBySPKI(ctx context.Context, h []byte) ([]*store.Certificate, error) {
	rows, err := t.stmt(ctx, stCertsBySPKI).QueryContext(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("certificates by SPKI %x: %w", h, err)
	}
	certs, err := collect(rows, codec.ScanCertificate)
	if err != nil {
		return nil, fmt.Errorf("certificates by SPKI %x: %w", h, err)
	}
	return certs, nil
}

// AppendAudit seals e after the chain head and stores it. The head is read once per transaction: the
// transaction holds the write lock, so no one else can append until it commits.
func (t *tx) AppendAudit(ctx context.Context, e *audit.Event) error {
	if !t.headKnown {
		err := t.stmt(ctx, stAuditHead).QueryRowContext(ctx).Scan(&t.headSeq, &t.headHash)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			t.headSeq, t.headHash = 0, audit.GenesisHash
		case err != nil:
			return fmt.Errorf("append audit %s %q: read chain head: %w", e.Action, e.Subject, err)
		}
		t.headKnown = true
	}
	details, err := audit.DetailsJSON(e.Details)
	if err != nil {
		return fmt.Errorf("append audit %s %q: %w", e.Action, e.Subject, err)
	}
	audit.Seal(e, t.headSeq, t.headHash)
	var args [9]any // as in InsertCertificate
	if _, err := t.stmt(ctx, stInsertAudit).ExecContext(ctx, codec.AppendEventArgs(args[:0], e, details)...); err != nil {
		return fmt.Errorf("append audit event %d %s %q: %w", e.Seq, e.Action, e.Subject, err)
	}
	t.headSeq, t.headHash = e.Seq, e.Hash
	return nil
}

// Savepoint runs fn inside a savepoint of t. If fn fails (or panics), the database is rolled back to the
// savepoint and so is the audit chain head t holds, so the transaction carries on as if fn had not run.
func (t *tx) Savepoint(ctx context.Context, fn func() error) (err error) {
	known, seq, hash, pipeline := t.headKnown, t.headSeq, t.headHash, t.pipeline
	defer func() { t.pipeline = pipeline }()
	if _, err := t.stmt(ctx, stSavepoint).ExecContext(ctx); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	undo := func() error {
		t.headKnown, t.headSeq, t.headHash = known, seq, hash
		// Whatever fn's context says, the rollback must happen: the transaction is shared.
		bg := context.WithoutCancel(ctx)
		if _, err := t.stmt(bg, stRollbackTo).ExecContext(bg); err != nil {
			return fmt.Errorf("roll back to savepoint: %w", err)
		}
		if _, err := t.stmt(bg, stRelease).ExecContext(bg); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
		return nil
	}
	finished := false
	defer func() {
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
	if _, err := t.stmt(ctx, stRelease).ExecContext(ctx); err != nil {
		if uerr := undo(); uerr != nil {
			return errors.Join(fmt.Errorf("release savepoint: %w", err), uerr)
		}
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

// Pipeline sends nothing later (a write to the embedded database costs no round trip); InsertKey then reports no
// ErrExists, as the contract says.
func (t *tx) Pipeline() { t.pipeline = true }

func (t *tx) InsertKDK(ctx context.Context, k *store.KDK) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertKDK, codec.KDKArgs(k)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert KDK %s/%s/%s v%d: %w", k.Environment, k.ProductLine, k.Purpose, k.Version, store.ErrExists)
	case isForeignKey(err):
		return fmt.Errorf("insert KDK %s: no key row: %w", k.URI, store.ErrNotFound)
	default:
		return fmt.Errorf("insert KDK %s: %w", k.URI, err)
	}
}
