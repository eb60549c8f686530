package ra

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// recorder is a transaction that remembers the actions of the audit events appended in it, and the state that
// each write to the certificates, CAs, keys, devices, stations and tokens tables leaves, which it adds to the
// details of an audit event of the same transaction (audit.StateDetail). Because it sits under every decision,
// no decision can change those tables without the log recording the new state; 'keyward audit verify'
// recomputes the tables from the log and compares.
//
// A write is recorded in the first event appended after it, or, for writes after the transaction's last event
// (a device row updated once its issuance is recorded), in that last event: the recorder holds each event back
// until the next one is appended or the transaction's function returns (flush).
//
// A new store method that writes one of those tables needs its method here too; without it, 'keyward audit
// verify' reports the row as a disagreement with the log, which is the tripwire that says so.
type recorder struct {
	store.Tx
	actions *[]string
	issued  *[]issuance                  // certificates recorded (record), for the observer once committed; may be nil
	pending map[string]map[string]string // detail key -> fields
	held    *audit.Event
	omit    bool // RA.OmitAuditStateForBenchmark
}

func (t *recorder) note(kind, id string, fields map[string]string) {
	if t.omit {
		return
	}
	if t.pending == nil {
		t.pending = map[string]map[string]string{}
	}
	k, _ := audit.StateDetail(kind, id, nil)
	if cur := t.pending[k]; cur != nil {
		maps.Copy(cur, fields)
		return
	}
	t.pending[k] = fields
}

func (t *recorder) pendingNames() string {
	names := slices.Sorted(maps.Keys(t.pending))
	return strings.Join(names, ", ")
}

// attach adds the pending state to e's details.
func (t *recorder) attach(e *audit.Event) error {
	if len(t.pending) == 0 {
		return nil
	}
	if e.Outcome != audit.OutcomeSuccess {
		return errorf(KindInternal, "a refusal (%s) recorded in a transaction that changed %s", e.Action, t.pendingNames())
	}
	d := make(map[string]string, len(e.Details)+len(t.pending))
	maps.Copy(d, e.Details)
	for k, f := range t.pending {
		d[k] = audit.EncodeFields(f)
	}
	e.Details = d
	clear(t.pending)
	return nil
}

func (t *recorder) AppendAudit(ctx context.Context, e *audit.Event) error {
	if err := t.write(ctx); err != nil {
		return err
	}
	if err := t.attach(e); err != nil {
		return err
	}
	t.held = e
	// Each action once: a batch of issuances appends hundreds of events of one action.
	if !slices.Contains(*t.actions, e.Action) {
		*t.actions = append(*t.actions, e.Action)
	}
	return nil
}

// write appends the held event.
func (t *recorder) write(ctx context.Context) error {
	if t.held == nil {
		return nil
	}
	e := t.held
	t.held = nil
	return t.Tx.AppendAudit(ctx, e)
}

// flush records the writes made since the last event in it and appends it. A write with no event to record it
// in fails the transaction: the log would be short of the change.
func (t *recorder) flush(ctx context.Context) error {
	if t.held == nil {
		if len(t.pending) > 0 {
			return errorf(KindInternal, "a change to %s was made with no audit event; nothing was stored", t.pendingNames())
		}
		return nil
	}
	if err := t.attach(t.held); err != nil {
		return err
	}
	return t.write(ctx)
}

// CertFields returns the recorded state of certificate c: what its row must hold.
func CertFields(c *store.Certificate) map[string]string {
	sum := sha256.Sum256(c.DER)
	f := map[string]string{"issuer": c.IssuerID, "subject": c.Subject, "der_sha256": hex.EncodeToString(sum[:])}
	maps.Copy(f, certStatusFields(c.Status, c.RevocationReason, c.RevokedAt))
	return f
}

func certStatusFields(status string, reason int, at *time.Time) map[string]string {
	f := map[string]string{"status": status, "reason": "", "revoked_at": ""}
	if status == store.CertStatusRevoked {
		f["reason"] = ReasonName(reason)
		if at != nil {
			f["revoked_at"] = at.UTC().Format(time.RFC3339Nano)
		}
	}
	return f
}

// CAFields, KeyFields, DeviceFields, StationFields and TokenFields return the recorded state of a row.
func CAFields(c *store.CA) map[string]string { return map[string]string{"status": c.Status} }

// KeyFields: see CAFields.
func KeyFields(k *store.Key) map[string]string { return map[string]string{"state": k.State} }

// DeviceFields: see CAFields.
func DeviceFields(d *store.Device) map[string]string {
	return map[string]string{"state": d.State, "cert": d.CertSerial}
}

// StationFields: see CAFields.
func StationFields(s *store.Station) map[string]string { return map[string]string{"state": s.State} }

// TokenFields: see CAFields.
func TokenFields(t *store.Token) map[string]string {
	return map[string]string{"name": t.Name, "role": t.Role, "revoked": strconv.FormatBool(t.RevokedAt != nil), "expires": tokenExpiry(t.ExpiresAt)}
}

// tokenExpiry is a token's recorded expiry: RFC 3339 in UTC to the second, or "never". Extending a token's life
// in the table behind Keyward's back is then a disagreement 'keyward audit verify' names.
func tokenExpiry(at *time.Time) string {
	if at == nil {
		return "never"
	}
	return at.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// DeviceID is the state record id of a device: environment/product line/serial.
func DeviceID(env, product, serial string) string { return env + "/" + product + "/" + serial }

func (t *recorder) InsertCertificate(ctx context.Context, c *store.Certificate) error {
	if err := t.Tx.InsertCertificate(ctx, c); err != nil {
		return err
	}
	t.note(audit.StateCert, c.Serial, CertFields(c))
	return nil
}

func (t *recorder) SetCertificateStatus(ctx context.Context, serial, from, to string) error {
	if err := t.Tx.SetCertificateStatus(ctx, serial, from, to); err != nil {
		return err
	}
	t.note(audit.StateCert, serial, map[string]string{"status": to})
	return nil
}

func (t *recorder) Revoke(ctx context.Context, r *store.Revocation) (*store.RevocationEntry, error) {
	e, err := t.Tx.Revoke(ctx, r)
	if err != nil {
		return e, err
	}
	t.note(audit.StateCert, e.Serial, certStatusFields(e.Status, e.Reason, e.RevokedAt))
	return e, nil
}

func (t *recorder) Unhold(ctx context.Context, serial string, at time.Time) (*store.RevocationEntry, error) {
	e, err := t.Tx.Unhold(ctx, serial, at)
	if err != nil {
		return e, err
	}
	t.note(audit.StateCert, serial, certStatusFields(store.CertStatusValid, 0, nil))
	return e, nil
}

func (t *recorder) InsertCA(ctx context.Context, c *store.CA) error {
	if err := t.Tx.InsertCA(ctx, c); err != nil {
		return err
	}
	t.note(audit.StateCA, c.ID, CAFields(c))
	return nil
}

func (t *recorder) SetCAStatus(ctx context.Context, id, status string) error {
	if err := t.Tx.SetCAStatus(ctx, id, status); err != nil {
		return err
	}
	t.note(audit.StateCA, id, map[string]string{"status": status})
	return nil
}

func (t *recorder) RevokeCA(ctx context.Context, id string, at time.Time, reason int) error {
	if err := t.Tx.RevokeCA(ctx, id, at, reason); err != nil {
		return err
	}
	t.note(audit.StateCA, id, map[string]string{"status": store.CAStatusRevoked})
	return nil
}

func (t *recorder) InsertKey(ctx context.Context, k *store.Key) error {
	if err := t.Tx.InsertKey(ctx, k); err != nil {
		return err
	}
	t.note(audit.StateKey, k.URI, KeyFields(k))
	return nil
}

func (t *recorder) InsertCertificateKey(ctx context.Context, c *store.Certificate, algorithm string) error {
	if err := t.Tx.InsertCertificateKey(ctx, c, algorithm); err != nil {
		return err
	}
	t.note(audit.StateKey, store.DeviceKeyURI(c.SPKISHA256), map[string]string{"state": store.KeyActive})
	return nil
}

func (t *recorder) SetKeyState(ctx context.Context, uri, state string, at time.Time) error {
	if err := t.Tx.SetKeyState(ctx, uri, state, at); err != nil {
		return err
	}
	t.note(audit.StateKey, uri, map[string]string{"state": state})
	return nil
}

func (t *recorder) PutDevice(ctx context.Context, d *store.Device) error {
	if err := t.Tx.PutDevice(ctx, d); err != nil {
		return err
	}
	t.note(audit.StateDevice, DeviceID(d.Environment, d.ProductLine, d.Serial), DeviceFields(d))
	return nil
}

func (t *recorder) InsertStation(ctx context.Context, s *store.Station) error {
	if err := t.Tx.InsertStation(ctx, s); err != nil {
		return err
	}
	t.note(audit.StateStation, s.ID, StationFields(s))
	return nil
}

func (t *recorder) UpdateStation(ctx context.Context, s *store.Station) error {
	if err := t.Tx.UpdateStation(ctx, s); err != nil {
		return err
	}
	t.note(audit.StateStation, s.ID, StationFields(s))
	return nil
}

func (t *recorder) InsertToken(ctx context.Context, tok *store.Token) error {
	if err := t.Tx.InsertToken(ctx, tok); err != nil {
		return err
	}
	t.note(audit.StateToken, tok.ID, TokenFields(tok))
	return nil
}

func (t *recorder) RevokeToken(ctx context.Context, id string, at time.Time, reason string) error {
	if err := t.Tx.RevokeToken(ctx, id, at, reason); err != nil {
		return err
	}
	t.note(audit.StateToken, id, map[string]string{"revoked": "true"})
	return nil
}
