package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// Times are stored as INTEGER unix microseconds in UTC: the precision audit.Seal truncates to, so every time
// reads back exactly as it was written once truncated to the microsecond.

func micros(t time.Time) int64 { return t.UnixMicro() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// blob returns b for binding, NULL for an empty slice so that nil round-trips as nil.
func blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// nonEmpty returns nil for an empty slice, so a stored empty value reads back as nil.
func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
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

type scanner interface{ Scan(dest ...any) error }

func scanCA(r scanner) (*store.CA, error) {
	var (
		ca                          store.CA
		parent                      sql.NullString
		notBefore, notAfter, create int64
	)
	if err := r.Scan(&ca.ID, &ca.Environment, &ca.ProductLine, &ca.Kind, &parent, &ca.KeyURI, &ca.CertDER,
		&ca.Subject, &notBefore, &notAfter, &ca.Status, &create); err != nil {
		return nil, err
	}
	ca.ParentID = parent.String
	ca.CertDER = nonEmpty(ca.CertDER)
	ca.NotBefore, ca.NotAfter, ca.CreatedAt = fromMicros(notBefore), fromMicros(notAfter), fromMicros(create)
	return &ca, nil
}

func scanKey(r scanner) (*store.Key, error) {
	var (
		k                store.Key
		created, changed int64
		destroyed        sql.NullInt64
	)
	if err := r.Scan(&k.URI, &k.Purpose, &k.Algorithm, &k.Location, &k.State, &k.Owner, &k.SPKISHA256,
		&created, &changed, &destroyed); err != nil {
		return nil, err
	}
	k.SPKISHA256 = nonEmpty(k.SPKISHA256)
	k.CreatedAt, k.StateChangedAt, k.DestroyedAt = fromMicros(created), fromMicros(changed), fromNullMicros(destroyed)
	return &k, nil
}

func scanCert(r scanner) (*store.Certificate, error) {
	var (
		c                           store.Certificate
		notBefore, notAfter, create int64
		revoked                     sql.NullInt64
	)
	if err := r.Scan(&c.Serial, &c.IssuerID, &c.Profile, &c.ProfileVersion, &c.Subject, &notBefore, &notAfter,
		&c.SPKISHA256, &c.DER, &c.Status, &revoked, &c.RevocationReason, &create); err != nil {
		return nil, err
	}
	c.SPKISHA256, c.DER = nonEmpty(c.SPKISHA256), nonEmpty(c.DER)
	c.NotBefore, c.NotAfter, c.CreatedAt = fromMicros(notBefore), fromMicros(notAfter), fromMicros(create)
	c.RevokedAt = fromNullMicros(revoked)
	return &c, nil
}

func scanEvent(r scanner) (*audit.Event, error) {
	var (
		e       audit.Event
		t       int64
		details string
	)
	if err := r.Scan(&e.Seq, &t, &e.Actor, &e.Action, &e.Subject, &e.Outcome, &details, &e.PrevHash, &e.Hash); err != nil {
		return nil, err
	}
	e.Time = fromMicros(t)
	d, err := decodeDetails(e.Seq, details)
	if err != nil {
		return nil, err
	}
	e.Details = d
	return &e, nil
}

// appendRows scans every row with scan, appends to dst and closes rows.
func appendRows[T any](dst []T, rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return dst, err
		}
		dst = append(dst, v)
	}
	return dst, rows.Err()
}

func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	return appendRows(nil, rows, scan)
}
