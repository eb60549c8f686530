package sqlrecord

import (
	"encoding/json"
	"fmt"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// Column lists of the core tables, in the order of the Scan and Args functions below.
const (
	CAColumns          = `id, environment, product_line, kind, parent_id, key_uri, cert_der, subject, not_before, not_after, status, created_at`
	KeyColumns         = `uri, purpose, algorithm, location, state, owner, spki_sha256, created_at, state_changed_at, destroyed_at`
	CertificateColumns = `serial, issuer_id, profile, profile_version, subject, not_before, not_after, spki_sha256, der, status, ` +
		`revoked_at, revocation_reason, created_at`
	TokenColumns  = `id, name, role, hash, created_at, revoked_at`
	AuditColumns  = `seq, time, actor, action, subject, outcome, details, prev_hash, hash`
	ChangeColumns = `seq, action, subject`
)

// ScanCA reads a row of CAColumns.
func (c Codec) ScanCA(r Row) (*store.CA, error) {
	var ca store.CA
	if err := r.Scan(&ca.ID, &ca.Environment, &ca.ProductLine, &ca.Kind, (*nullString)(&ca.ParentID), &ca.KeyURI,
		&ca.CertDER, &ca.Subject, c.ScanTime(&ca.NotBefore), c.ScanTime(&ca.NotAfter), &ca.Status,
		c.ScanTime(&ca.CreatedAt)); err != nil {
		return nil, err
	}
	ca.CertDER = nonEmpty(ca.CertDER)
	return &ca, nil
}

// CAArgs returns ca's values in the order of CAColumns.
func (c Codec) CAArgs(ca *store.CA) []any {
	return []any{ca.ID, ca.Environment, ca.ProductLine, ca.Kind, NullString(ca.ParentID), ca.KeyURI, Blob(ca.CertDER),
		ca.Subject, c.BindTime(ca.NotBefore), c.BindTime(ca.NotAfter), ca.Status, c.BindTime(ca.CreatedAt)}
}

// ScanKey reads a row of KeyColumns.
func (c Codec) ScanKey(r Row) (*store.Key, error) {
	var k store.Key
	if err := r.Scan(&k.URI, &k.Purpose, &k.Algorithm, &k.Location, &k.State, &k.Owner, &k.SPKISHA256,
		c.ScanTime(&k.CreatedAt), c.ScanTime(&k.StateChangedAt), c.ScanNullTime(&k.DestroyedAt)); err != nil {
		return nil, err
	}
	k.SPKISHA256 = nonEmpty(k.SPKISHA256)
	return &k, nil
}

// KeyArgs returns k's values in the order of KeyColumns.
func (c Codec) KeyArgs(k *store.Key) []any {
	return []any{k.URI, k.Purpose, k.Algorithm, k.Location, k.State, k.Owner, Blob(k.SPKISHA256),
		c.BindTime(k.CreatedAt), c.BindTime(k.StateChangedAt), c.BindNullTime(k.DestroyedAt)}
}

// ScanCertificate reads a row of CertificateColumns.
func (c Codec) ScanCertificate(r Row) (*store.Certificate, error) {
	var x store.Certificate
	if err := r.Scan(&x.Serial, &x.IssuerID, &x.Profile, &x.ProfileVersion, &x.Subject, c.ScanTime(&x.NotBefore),
		c.ScanTime(&x.NotAfter), &x.SPKISHA256, &x.DER, &x.Status, c.ScanNullTime(&x.RevokedAt),
		&x.RevocationReason, c.ScanTime(&x.CreatedAt)); err != nil {
		return nil, err
	}
	x.SPKISHA256, x.DER = nonEmpty(x.SPKISHA256), nonEmpty(x.DER)
	return &x, nil
}

// CertificateArgs returns x's values in the order of CertificateColumns.
func (c Codec) CertificateArgs(x *store.Certificate) []any {
	return []any{x.Serial, x.IssuerID, x.Profile, x.ProfileVersion, x.Subject, c.BindTime(x.NotBefore),
		c.BindTime(x.NotAfter), x.SPKISHA256, Blob(x.DER), x.Status, c.BindNullTime(x.RevokedAt),
		x.RevocationReason, c.BindTime(x.CreatedAt)}
}

// ScanToken reads a row of TokenColumns.
func (c Codec) ScanToken(r Row) (*store.Token, error) {
	var t store.Token
	if err := r.Scan(&t.ID, &t.Name, &t.Role, &t.Hash, c.ScanTime(&t.CreatedAt), c.ScanNullTime(&t.RevokedAt)); err != nil {
		return nil, err
	}
	return &t, nil
}

// TokenArgs returns t's values in the order of TokenColumns.
func (c Codec) TokenArgs(t *store.Token) []any {
	return []any{t.ID, t.Name, t.Role, t.Hash, c.BindTime(t.CreatedAt), c.BindNullTime(t.RevokedAt)}
}

// ScanEvent reads a row of AuditColumns.
func (c Codec) ScanEvent(r Row) (*audit.Event, error) {
	var (
		e       audit.Event
		details string
	)
	if err := r.Scan(&e.Seq, c.ScanTime(&e.Time), &e.Actor, &e.Action, &e.Subject, &e.Outcome, &details,
		&e.PrevHash, &e.Hash); err != nil {
		return nil, err
	}
	d, err := decodeDetails(e.Seq, details)
	if err != nil {
		return nil, err
	}
	e.Details = d
	return &e, nil
}

// EventArgs returns the values of sealed event e in the order of AuditColumns; details is
// audit.DetailsJSON(e.Details), the text the event's hash covers.
func (c Codec) EventArgs(e *audit.Event, details []byte) []any {
	return []any{e.Seq, c.BindTime(e.Time), e.Actor, e.Action, e.Subject, e.Outcome, string(details), e.PrevHash, e.Hash}
}

// decodeDetails reads the details column; an empty object reads back as nil details, which hash the same.
func decodeDetails(seq int64, text string) (map[string]string, error) {
	var d map[string]string
	if err := json.Unmarshal([]byte(text), &d); err != nil {
		return nil, fmt.Errorf("audit event %d: details: %w", seq, err)
	}
	if len(d) == 0 {
		return nil, nil
	}
	return d, nil
}

// ScanChange reads a row of ChangeColumns.
func ScanChange(r Row) (store.Change, error) {
	var ch store.Change
	err := r.Scan(&ch.Seq, &ch.Action, &ch.Subject)
	return ch, err
}
