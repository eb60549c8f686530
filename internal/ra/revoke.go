package ra

// Revocation decisions: one certificate, release from hold, and bulk revocation by query or through the device
// registry (decommission.go retires a device). Each revocation is stored with its audit event in one
// transaction; the change feed tells the publisher (internal/revocation), which issues the next delta CRL and
// refreshes OCSP.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// ReasonName returns the RFC 5280 name of a reason code.
func ReasonName(code int) string { return store.ReasonName(code) }

// ParseReason returns the code of an RFC 5280 reason name (case-insensitive).
func ParseReason(s string) (int, error) {
	for n, c := range store.Reasons {
		if strings.EqualFold(n, s) {
			return c, nil
		}
	}
	names := make([]string, 0, len(store.Reasons))
	for n := range store.Reasons {
		names = append(names, n)
	}
	sort.Strings(names)
	return 0, FieldErrorf(KindBadRequest, "reason", "revocation reason %q is not an RFC 5280 CRLReason (use one of %s)", s, strings.Join(names, ", "))
}

// revokers are the roles that may revoke and release certificates and decommission devices.
var revokers = []string{RoleAdmin, RoleCAOfficer}

// RevokeRequest asks to revoke one certificate.
type RevokeRequest struct {
	Serial         string
	Reason         int
	InvalidityDate *time.Time
}

// authoriseRevoker refuses, audited, a principal that may not revoke.
func (r *RA) authoriseRevoker(ctx context.Context, p Principal, action, subject string) error {
	what := strings.TrimPrefix(action, "cert.") + " certificates"
	if v, ok := strings.CutPrefix(action, "device."); ok {
		what = v + " devices"
	}
	return r.authorize(ctx, p, action, subject, what, revokers...)
}

func checkReason(code int) error {
	if code == store.ReasonRemoveFromCRL || code < 0 || code > store.ReasonAACompromise || code == 7 {
		return &Error{Kind: KindBadRequest, Err: fmt.Errorf("revocation reason %d is not one an operator may give (RFC 5280 5.3.1; removeFromCRL is used only by 'cert unhold')", code)}
	}
	return nil
}

// Revoke revokes one certificate for p and records the audit event in the same transaction. Revoking a
// certificate that is revoked already is a KindConflict error that changes nothing, except that a
// certificate on hold may be revoked for a permanent reason (RFC 5280 5.3.1).
func (r *RA) Revoke(ctx context.Context, p Principal, req RevokeRequest) (*store.RevocationEntry, error) {
	serial, err := NormalizeSerial(req.Serial)
	if err != nil {
		return nil, err
	}
	if err := r.authoriseRevoker(ctx, p, audit.ActionCertRevoke, serial); err != nil {
		return nil, err
	}
	if err := checkReason(req.Reason); err != nil {
		return nil, err
	}
	now := r.now()
	if req.InvalidityDate != nil {
		// RFC 5280 5.3.2: the date on which the key was compromised or the certificate became invalid; it
		// cannot lie in the future of the revocation.
		if req.InvalidityDate.After(now) {
			return nil, &Error{Kind: KindBadRequest, Err: fmt.Errorf("invalidity date %s is in the future (RFC 5280 5.3.2: when the key was or may have been compromised)", req.InvalidityDate.Format(time.RFC3339))}
		}
		t := req.InvalidityDate.UTC().Truncate(time.Second)
		req.InvalidityDate = &t
	}
	var e *store.RevocationEntry
	err = r.tx(ctx, func(tx store.Tx) error {
		var err error
		e, err = r.revokeTx(ctx, tx, p, serial, req.Reason, req.InvalidityDate, now, nil)
		return err
	})
	if err != nil {
		return e, mapError(err, serial, e)
	}
	return e, nil
}

func (r *RA) revokeTx(ctx context.Context, tx store.Tx, p Principal, serial string, reason int, inv *time.Time, now time.Time, extra map[string]string) (*store.RevocationEntry, error) {
	rtx := tx
	e, err := rtx.Revoke(ctx, &store.Revocation{Serial: serial, Reason: reason, RevokedAt: now.Truncate(time.Second), InvalidityDate: inv})
	if err != nil {
		return e, err
	}
	details := map[string]string{"issuer": e.IssuerID, "reason": ReasonName(reason), "role": p.Role, "seq": fmt.Sprint(e.Seq)}
	if inv != nil {
		details["invalidity_date"] = inv.Format(time.RFC3339)
	}
	for k, v := range extra {
		details[k] = v
	}
	return e, r.success(ctx, tx, p, audit.ActionCertRevoke, serial, now, details)
}

// Unhold releases a certificate revoked with certificateHold (RFC 5280 5.3.1): it becomes valid again and the
// next delta CRL lists it with reason removeFromCRL. Any other revocation is final (KindConflict).
func (r *RA) Unhold(ctx context.Context, p Principal, serialIn string) (*store.RevocationEntry, error) {
	serial, err := NormalizeSerial(serialIn)
	if err != nil {
		return nil, err
	}
	if err := r.authoriseRevoker(ctx, p, audit.ActionCertUnhold, serial); err != nil {
		return nil, err
	}
	now := r.now()
	var e *store.RevocationEntry
	err = r.tx(ctx, func(tx store.Tx) error {
		var err error
		if e, err = tx.Unhold(ctx, serial, now); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionCertUnhold, serial, now, map[string]string{"issuer": e.IssuerID, "role": p.Role, "seq": fmt.Sprint(e.Seq)})
	})
	if err != nil {
		return e, mapError(err, serial, e)
	}
	return e, nil
}

func mapError(err error, serial string, e *store.RevocationEntry) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &Error{Kind: KindNotFound, Err: fmt.Errorf("no certificate with serial %s (see 'keyward cert list')", serial)}
	case errors.Is(err, store.ErrAlreadyRevoked) && e != nil && e.RevokedAt != nil:
		return &Error{Kind: KindConflict, Err: fmt.Errorf("certificate %s was already revoked at %s with reason %s; nothing changed (only a certificateHold can become a permanent revocation)",
			serial, e.RevokedAt.Format(time.RFC3339), ReasonName(e.Reason))}
	case errors.Is(err, store.ErrNotOnHold) && e != nil:
		state := "valid"
		if e.Status == store.CertStatusRevoked {
			state = "revoked with reason " + ReasonName(e.Reason) + ", which is final"
		}
		return &Error{Kind: KindConflict, Err: fmt.Errorf("certificate %s is %s, not on certificateHold: only a hold can be released (RFC 5280 5.3.1)", serial, state)}
	}
	var re *Error
	if errors.As(err, &re) {
		return err
	}
	return &Error{Kind: KindUnavailable, Err: err}
}

// BulkRequest selects certificates to revoke by query. At least one of the selectors must be set. Registry
// selectors and Query combine: a certificate must match both.
type BulkRequest struct {
	Query store.CertQuery
	// Registry selects the certificates of one device, or of the devices a station or site enrolled.
	Registry       RegistrySelector
	Reason         int
	InvalidityDate *time.Time
	DryRun         bool
}

// BulkResult reports a bulk revocation.
type BulkResult struct {
	Matched        int64    `json:"matched"`
	AlreadyRevoked int64    `json:"already_revoked"`
	Revoked        int64    `json:"revoked"`
	DryRun         bool     `json:"dry_run"`
	Sample         []string `json:"sample,omitempty"` // up to 10 serials that were (or would be) revoked
}

// bulkBatch is the number of revocations per transaction of a bulk revocation.
const bulkBatch = 500

// Bulk revokes every certificate matching req.Query that is not revoked yet, in transactions of bulkBatch,
// each revocation with its audit event, plus one summary event. With DryRun it only counts.
func (r *RA) Bulk(ctx context.Context, p Principal, req BulkRequest) (*BulkResult, error) {
	q, sel := req.Query, req.Registry
	if len(q.IssuerIDs) == 0 && q.Profile == "" && q.Subject == "" && q.IssuedFrom.IsZero() && q.IssuedTo.IsZero() && sel.IsZero() {
		msg := "bulk revocation needs a selector (issuer, profile, subject, issue time, device, station, site or batch); it never revokes everything by default"
		if sel.Environment != "" || sel.ProductLine != "" {
			msg = "bulk revocation needs a selector: environment and product line only narrow a device, station or site; it never revokes everything by default"
		}
		return nil, &Error{Kind: KindBadRequest, Err: errors.New(msg)}
	}
	if !q.IssuedFrom.IsZero() && !q.IssuedTo.IsZero() && !q.IssuedFrom.Before(q.IssuedTo) {
		return nil, FieldErrorf(KindBadRequest, "issued_from", "issued between %s and %s: the first time must be before the second", q.IssuedFrom.Format(time.RFC3339), q.IssuedTo.Format(time.RFC3339))
	}
	query := strings.TrimSpace(describe(q) + " " + sel.describe())
	if err := r.authoriseRevoker(ctx, p, audit.ActionCertRevokeBulk, query); err != nil {
		return nil, err
	}
	if err := checkReason(req.Reason); err != nil {
		return nil, err
	}
	q.Status = ""
	queries := []store.CertQuery{q}
	if !sel.IsZero() {
		var err error
		if queries, err = r.registryQueries(ctx, sel, q); err != nil {
			return nil, err
		}
	}
	res := &BulkResult{DryRun: req.DryRun}
	var todo []string
	for _, q := range queries {
		err := r.cfg.Store.WalkCertStatus(ctx, q, func(c *store.CertStatus) error {
			res.Matched++
			// A hold may still become a permanent revocation (RFC 5280 5.3.1); anything else revoked is done.
			if c.Status == store.CertStatusRevoked && (c.Reason != store.ReasonCertificateHold || req.Reason == store.ReasonCertificateHold) {
				res.AlreadyRevoked++
				return nil
			}
			if len(res.Sample) < 10 {
				res.Sample = append(res.Sample, c.Serial)
			}
			if !req.DryRun {
				todo = append(todo, c.Serial)
			}
			return nil
		})
		if err != nil {
			return nil, &Error{Kind: KindUnavailable, Err: err}
		}
	}
	if req.DryRun {
		res.Revoked = res.Matched - res.AlreadyRevoked
		return res, nil
	}
	now := r.now()
	for start := 0; start < len(todo); start += bulkBatch {
		batch := todo[start:min(start+bulkBatch, len(todo))]
		err := r.tx(ctx, func(tx store.Tx) error {
			for _, serial := range batch {
				if _, err := r.revokeTx(ctx, tx, p, serial, req.Reason, req.InvalidityDate, now, map[string]string{"bulk_query": query}); err != nil {
					if errors.Is(err, store.ErrAlreadyRevoked) {
						continue // revoked by someone else since the walk
					}
					return err
				}
				res.Revoked++
			}
			return nil
		})
		if err != nil {
			return res, &Error{Kind: KindUnavailable, Err: fmt.Errorf("bulk revocation stopped after %d certificates: %w", res.Revoked, err)}
		}
	}
	err := r.tx(ctx, func(tx store.Tx) error {
		return r.success(ctx, tx, p, audit.ActionCertRevokeBulk, query, now, map[string]string{"matched": fmt.Sprint(res.Matched), "revoked": fmt.Sprint(res.Revoked),
			"already_revoked": fmt.Sprint(res.AlreadyRevoked), "reason": ReasonName(req.Reason), "role": p.Role})
	})
	if err != nil {
		return res, &Error{Kind: KindUnavailable, Err: err}
	}
	return res, nil
}

func describe(q store.CertQuery) string {
	var parts []string
	if len(q.IssuerIDs) > 0 {
		parts = append(parts, "issuer="+strings.Join(q.IssuerIDs, ","))
	}
	if q.Profile != "" {
		parts = append(parts, "profile="+q.Profile)
	}
	if q.Subject != "" {
		parts = append(parts, "subject="+q.Subject)
	}
	if !q.IssuedFrom.IsZero() || !q.IssuedTo.IsZero() {
		parts = append(parts, fmt.Sprintf("issued=[%s,%s)", fmtTime(q.IssuedFrom), fmtTime(q.IssuedTo)))
	}
	return strings.Join(parts, " ")
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
