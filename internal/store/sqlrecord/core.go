package sqlrecord

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// Column lists of the core tables, in the order of the Scan and Args functions below.
const (
	CAColumns = `id, environment, product_line, kind, parent_id, key_uri, cert_der, subject, not_before, not_after, status, created_at, ` +
		`generation, revoked_at, revocation_reason`
	CARequestColumns = `ca_id, environment, product_line, kind, site, quota, valid_for, generation, replaces, key_uri, spki_sha256, ` +
		`csr_der, state, created_at, closed_at`
	KeyColumns         = `uri, purpose, algorithm, location, state, owner, spki_sha256, created_at, state_changed_at, destroyed_at`
	CertificateColumns = `serial, issuer_id, profile, profile_version, subject, not_before, not_after, spki_sha256, der, status, ` +
		`revoked_at, revocation_reason, created_at`
	// DeviceKeyColumns: a device key's glossary row, device_keys d joined with its certificate c.
	DeviceKeyColumns = `c.serial, c.spki_sha256, c.created_at, d.algorithm, d.state, d.state_changed_at, d.destroyed_at`
	KDKColumns       = `uri, environment, product_line, purpose, version, created_at`
	TokenColumns     = `id, name, role, hash, created_at, revoked_at, expires_at, last_used_at, revocation_reason`
	AuditColumns     = `seq, time, actor, action, subject, outcome, details, prev_hash, hash`
	ChangeColumns    = `seq, action, subject`
)

// Statements on the core tables that both dialects run as they are.
const (
	InsertCA    = `INSERT INTO cas (` + CAColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`
	SelectCA    = `SELECT ` + CAColumns + ` FROM cas WHERE id = $1`
	ListCAs     = `SELECT ` + CAColumns + ` FROM cas ORDER BY id`
	SetCAStatus = `UPDATE cas SET status = $1 WHERE id = $2`
	// RevokeCA marks CA $4 revoked (status $1) at $2 for reason $3.
	RevokeCA = `UPDATE cas SET status = $1, revoked_at = $2, revocation_reason = $3 WHERE id = $4`

	InsertCARequest = `INSERT INTO ca_requests (` + CARequestColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`
	ListCARequests  = `SELECT ` + CARequestColumns + ` FROM ca_requests ORDER BY ca_id`
	// CloseCARequest sets the state of the request for CA $3 to $1 at $2.
	CloseCARequest = `UPDATE ca_requests SET state = $1, closed_at = $2 WHERE ca_id = $3`
	// DeleteCARequest removes the request for CA $1 (a cancelled request).
	DeleteCARequest = `DELETE FROM ca_requests WHERE ca_id = $1`

	InsertKey = `INSERT INTO keys (` + KeyColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	SelectKey = `SELECT ` + KeyColumns + ` FROM keys WHERE uri = $1`
	ListKeys  = `SELECT ` + KeyColumns + ` FROM keys ORDER BY uri`
	// SetKeyState moves a key to state $1 at time $2, which is also its destruction time if $1 is $4
	// (store.KeyDestroyed); see SetKeyStateArgs.
	SetKeyState = `UPDATE keys SET state = $1, state_changed_at = $2,
		destroyed_at = CASE WHEN $1 = $4 THEN $2 ELSE destroyed_at END
		WHERE uri = $3`

	// SelectDeviceKey reads the glossary row of the device key whose SPKI hash is $1 (device_keys: a device key
	// certified by Keyward, its fields the first certificate's). ListDeviceKeys reads every one, in URI order.
	SelectDeviceKey = `SELECT ` + DeviceKeyColumns + ` FROM device_keys d JOIN certificates c ON c.serial = d.serial
		WHERE c.spki_sha256 = $1 ORDER BY c.serial LIMIT 1`
	ListDeviceKeys = `SELECT ` + DeviceKeyColumns + ` FROM device_keys d JOIN certificates c ON c.serial = d.serial
		ORDER BY c.spki_sha256, c.serial`
	// SetDeviceKeyState is SetKeyState for the device key whose SPKI hash is $3.
	SetDeviceKeyState = `UPDATE device_keys SET state = $1, state_changed_at = $2,
		destroyed_at = CASE WHEN $1 = $4 THEN $2 ELSE destroyed_at END
		WHERE serial IN (SELECT serial FROM certificates WHERE spki_sha256 = $3)`

	InsertCertificate  = `INSERT INTO certificates (` + CertificateColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`
	SelectCertificate  = `SELECT ` + CertificateColumns + ` FROM certificates WHERE serial = $1`
	CertificatesBySPKI = `SELECT ` + CertificateColumns + ` FROM certificates WHERE spki_sha256 = $1 ORDER BY serial`

	InsertKDK = `INSERT INTO kdks (` + KDKColumns + `) VALUES ($1, $2, $3, $4, $5, $6)`
	// ListKDKs reads the KDKs of environment $1, product line $2 and purpose $3, each '' for any.
	ListKDKs = `SELECT ` + KDKColumns + ` FROM kdks WHERE ($1 = '' OR environment = $1) AND ($2 = '' OR product_line = $2)
		AND ($3 = '' OR purpose = $3) ORDER BY environment, product_line, purpose, version`

	InsertToken       = `INSERT INTO tokens (` + TokenColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	SelectTokenByHash = `SELECT ` + TokenColumns + ` FROM tokens WHERE hash = $1`
	SelectTokenByName = `SELECT ` + TokenColumns + ` FROM tokens WHERE name = $1`
	ListTokens        = `SELECT ` + TokenColumns + ` FROM tokens ORDER BY created_at, id`
	// RevokeToken marks token $3 revoked at $1 for reason $2, unless it is revoked already.
	RevokeToken = `UPDATE tokens SET revoked_at = $1, revocation_reason = $2 WHERE id = $3 AND revoked_at IS NULL`
	// SetTokenLastUsed records that token $2 authenticated a request at $1.
	SetTokenLastUsed = `UPDATE tokens SET last_used_at = $1 WHERE id = $2`

	InsertEvent = `INSERT INTO audit_events (` + AuditColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	// WalkAudit reads the events after sequence number $1, at most $2 of them.
	WalkAudit = `SELECT ` + AuditColumns + ` FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`
	// AuditBySubject reads the events whose subject is $1 with seq > $2, at most $3 of them (forensics: a
	// device's, a certificate's or a key's events; index audit_events_subject).
	AuditBySubject = `SELECT ` + AuditColumns + ` FROM audit_events WHERE subject = $1 AND seq > $2 ORDER BY seq LIMIT $3`
	AuditHead      = `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`
	// WalkChanges reads the successful events after sequence number $1, at most $2 of them.
	WalkChanges = `SELECT ` + ChangeColumns + ` FROM audit_events WHERE seq > $1 AND outcome = '` + audit.OutcomeSuccess + `' ORDER BY seq LIMIT $2`
)

// SetKeyStateArgs returns the arguments of SetKeyState.
func (c Codec) SetKeyStateArgs(uri, state string, at time.Time) []any {
	return []any{state, c.BindTime(at), uri, store.KeyDestroyed}
}

// ListCertificates returns the query of store.Reader.ListCertificates and its arguments.
func ListCertificates(f store.CertFilter) (string, []any) {
	var w where
	w.eq("issuer_id", f.IssuerID)
	w.eq("profile", f.Profile)
	w.eq("status", f.Status)
	w.eq("subject", f.Subject)
	q := `SELECT ` + CertificateColumns + ` FROM certificates` + w.clause() + ` ORDER BY serial`
	if f.Limit > 0 {
		q += ` LIMIT ` + w.arg(f.Limit)
	}
	return q, w.args
}

// ScanCA reads a row of CAColumns.
func (c Codec) ScanCA(r Row) (*store.CA, error) {
	var ca store.CA
	if err := r.Scan(&ca.ID, &ca.Environment, &ca.ProductLine, &ca.Kind, (*nullString)(&ca.ParentID), &ca.KeyURI,
		&ca.CertDER, &ca.Subject, c.ScanTime(&ca.NotBefore), c.ScanTime(&ca.NotAfter), &ca.Status,
		c.ScanTime(&ca.CreatedAt), &ca.Generation, c.ScanNullTime(&ca.RevokedAt), &ca.RevocationReason); err != nil {
		return nil, err
	}
	ca.CertDER = nonEmpty(ca.CertDER)
	return &ca, nil
}

// CAArgs returns ca's values in the order of CAColumns.
func (c Codec) CAArgs(ca *store.CA) []any {
	return []any{ca.ID, ca.Environment, ca.ProductLine, ca.Kind, NullString(ca.ParentID), ca.KeyURI, Blob(ca.CertDER),
		ca.Subject, c.BindTime(ca.NotBefore), c.BindTime(ca.NotAfter), ca.Status, c.BindTime(ca.CreatedAt),
		ca.Generation, c.BindNullTime(ca.RevokedAt), ca.RevocationReason}
}

// ScanCARequest reads a row of CARequestColumns.
func (c Codec) ScanCARequest(r Row) (*store.CARequest, error) {
	var q store.CARequest
	var validFor int64
	if err := r.Scan(&q.CAID, &q.Environment, &q.ProductLine, &q.Kind, &q.Site, &q.Quota, &validFor, &q.Generation, &q.Replaces,
		&q.KeyURI, &q.SPKISHA256, &q.CSRDER, &q.State, c.ScanTime(&q.CreatedAt), c.ScanNullTime(&q.ClosedAt)); err != nil {
		return nil, err
	}
	q.ValidFor = time.Duration(validFor) * time.Second
	return &q, nil
}

// CARequestArgs returns q's values in the order of CARequestColumns.
func (c Codec) CARequestArgs(q *store.CARequest) []any {
	return []any{q.CAID, q.Environment, q.ProductLine, q.Kind, q.Site, q.Quota, int64(q.ValidFor / time.Second), q.Generation, q.Replaces,
		q.KeyURI, Blob(q.SPKISHA256), Blob(q.CSRDER), q.State, c.BindTime(q.CreatedAt), c.BindNullTime(q.ClosedAt)}
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

// ScanDeviceKey reads a row of DeviceKeyColumns as the glossary entry it stands for.
func (c Codec) ScanDeviceKey(r Row) (*store.Key, error) {
	k := store.Key{Purpose: store.DeviceKeyPurpose, Location: store.DeviceKeyLocation}
	if err := r.Scan(&k.Owner, &k.SPKISHA256, c.ScanTime(&k.CreatedAt), &k.Algorithm, &k.State,
		c.ScanTime(&k.StateChangedAt), c.ScanNullTime(&k.DestroyedAt)); err != nil {
		return nil, err
	}
	k.URI = store.DeviceKeyURI(k.SPKISHA256)
	return &k, nil
}

// DeviceKeyRowColumns are the columns of device_keys, in the order of DeviceKeyRowArgs.
const DeviceKeyRowColumns = `serial, algorithm, state, state_changed_at, destroyed_at`

// DeviceKeyRowArgs returns the device_keys row of k, a device key whose owner is its first certificate's serial
// (a bulk load's; store.Enrolled.CheckDeviceKey).
func (c Codec) DeviceKeyRowArgs(k *store.Key) []any {
	return []any{k.Owner, k.Algorithm, k.State, c.BindTime(k.StateChangedAt), c.BindNullTime(k.DestroyedAt)}
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

// AppendCertificateArgs appends x's values to dst in the order of CertificateColumns. It appends, unlike the
// other records' Args, so that issuance can bind from a buffer on its stack rather than allocate a slice per
// certificate.
func (c Codec) AppendCertificateArgs(dst []any, x *store.Certificate) []any {
	return append(dst, x.Serial, x.IssuerID, x.Profile, x.ProfileVersion, x.Subject, c.BindTime(x.NotBefore),
		c.BindTime(x.NotAfter), x.SPKISHA256, Blob(x.DER), x.Status, c.BindNullTime(x.RevokedAt),
		x.RevocationReason, c.BindTime(x.CreatedAt))
}

// ScanKDK reads a row of KDKColumns.
func (c Codec) ScanKDK(r Row) (*store.KDK, error) {
	var k store.KDK
	if err := r.Scan(&k.URI, &k.Environment, &k.ProductLine, &k.Purpose, &k.Version, c.ScanTime(&k.CreatedAt)); err != nil {
		return nil, err
	}
	return &k, nil
}

// KDKArgs returns k's values in the order of KDKColumns.
func (c Codec) KDKArgs(k *store.KDK) []any {
	return []any{k.URI, k.Environment, k.ProductLine, k.Purpose, k.Version, c.BindTime(k.CreatedAt)}
}

// ScanToken reads a row of TokenColumns.
func (c Codec) ScanToken(r Row) (*store.Token, error) {
	var t store.Token
	if err := r.Scan(&t.ID, &t.Name, &t.Role, &t.Hash, c.ScanTime(&t.CreatedAt), c.ScanNullTime(&t.RevokedAt),
		c.ScanNullTime(&t.ExpiresAt), c.ScanNullTime(&t.LastUsedAt), &t.RevocationReason); err != nil {
		return nil, err
	}
	return &t, nil
}

// TokenArgs returns t's values in the order of TokenColumns.
func (c Codec) TokenArgs(t *store.Token) []any {
	return []any{t.ID, t.Name, t.Role, t.Hash, c.BindTime(t.CreatedAt), c.BindNullTime(t.RevokedAt),
		c.BindNullTime(t.ExpiresAt), c.BindNullTime(t.LastUsedAt), t.RevocationReason}
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

// AppendEventArgs appends the values of sealed event e to dst in the order of AuditColumns; details is
// audit.DetailsJSON(e.Details), the text the event's hash covers. It appends for the reason
// AppendCertificateArgs does: every issuance appends an event.
func (c Codec) AppendEventArgs(dst []any, e *audit.Event, details []byte) []any {
	return append(dst, e.Seq, c.BindTime(e.Time), e.Actor, e.Action, e.Subject, e.Outcome, string(details),
		e.PrevHash, e.Hash)
}

// decodeDetails reads the details column; an empty object reads back as nil details, which hash the same.
func decodeDetails(seq int64, text string) (map[string]string, error) {
	d, ok := compactDetails(text)
	if ok {
		if len(d) == 0 {
			return nil, nil
		}
		return d, nil
	}
	if err := json.Unmarshal([]byte(text), &d); err != nil {
		return nil, fmt.Errorf("audit event %d: details: %w", seq, err)
	}
	if len(d) == 0 {
		return nil, nil
	}
	return d, nil
}

// compactDetails decodes details as encoding/json writes a map[string]string — {"k":"v",...} with no space,
// strings escaped only with the short escapes and \u00XX (the HTML-safe escapes of '&', '<' and '>' that every
// recorded state carries) — which is every event Keyward writes; ok is false for anything else, which
// json.Unmarshal then reads. Verifying a log decodes every event's details, and this is several times faster
// than the general decoder (FuzzCompactDetails holds it to json.Unmarshal's answer).
func compactDetails(text string) (map[string]string, bool) {
	if len(text) < 2 || text[0] != '{' || text[len(text)-1] != '}' || !utf8.ValidString(text) {
		return nil, false
	}
	body := text[1 : len(text)-1]
	d := make(map[string]string, strings.Count(body, ":"))
	for len(body) > 0 {
		k, rest, ok := jsonString(body)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return nil, false
		}
		v, rest, ok := jsonString(rest[1:])
		if !ok {
			return nil, false
		}
		d[k] = v
		if len(rest) == 0 {
			break
		}
		if rest[0] != ',' || len(rest) == 1 {
			return nil, false
		}
		body = rest[1:]
	}
	return d, true
}

// jsonString reads a JSON string (RFC 8259 7) at the start of s: its value and what follows it. It knows the
// short escapes and \u00XX below 0x80; any other escape is not ok.
func jsonString(s string) (val, rest string, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", false
	}
	var b *strings.Builder
	start := 1
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			if b == nil {
				return s[1:i], s[i+1:], true
			}
			b.WriteString(s[start:i])
			return b.String(), s[i+1:], true
		case c < 0x20: // control characters are escaped in a string
			return "", "", false
		case c != '\\':
			continue
		}
		if b == nil {
			b = &strings.Builder{}
		}
		b.WriteString(s[start:i])
		if i+1 >= len(s) {
			return "", "", false
		}
		switch e := s[i+1]; e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if i+5 >= len(s) || s[i+2] != '0' || s[i+3] != '0' {
				return "", "", false
			}
			hi, lo := unhex(s[i+4]), unhex(s[i+5])
			if hi < 0 || lo < 0 || hi > 7 {
				return "", "", false
			}
			b.WriteByte(byte(hi<<4 | lo))
			i += 4
		default:
			return "", "", false
		}
		i++
		start = i + 1
	}
	return "", "", false
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// ScanChange reads a row of ChangeColumns.
func ScanChange(r Row) (store.Change, error) {
	var ch store.Change
	err := r.Scan(&ch.Seq, &ch.Action, &ch.Subject)
	return ch, err
}

// WalkPrefetched calls fn for every item of successive pages of size items, in order: fetch(after, buf) reads
// the page after the key after (the walk starts after start) into buf[:0], and key names an item's key. While
// fn works through one page the next is already being read, so a walk of a large table (a CRL's million
// revoked certificates) overlaps the database's work with the caller's. Two page buffers take turns, so fn
// must not keep an item after it returns. It stops at fn's first error, once the page being read has arrived.
func WalkPrefetched[T any](size int, start string, fetch func(after string, buf []T) ([]T, error), key func(*T) string, fn func(*T) error) error {
	type result struct {
		page []T
		err  error
	}
	page, err := fetch(start, nil)
	var spare []T
	for {
		if err != nil {
			return err
		}
		var next chan result
		if len(page) >= size {
			after := key(&page[len(page)-1])
			next = make(chan result, 1)
			go func(buf []T) {
				p, err := fetch(after, buf)
				next <- result{p, err}
			}(spare)
		}
		for i := range page {
			if err := fn(&page[i]); err != nil {
				if next != nil {
					<-next
				}
				return err
			}
		}
		if next == nil {
			return nil
		}
		r := <-next
		spare = page[:0]
		page, err = r.page, r.err
	}
}
