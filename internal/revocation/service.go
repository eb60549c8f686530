// Package revocation is Keyward's revocation service: it revokes certificates (one, or many by query) in the
// same transaction as their audit events, publishes complete and delta CRLs per CA (RFC 5280), answers OCSP
// (RFC 6960) from pre-signed responses, and builds the signed revocation filters that offline verifiers carry
// (pkg/revocation/filter).
//
// # Who signs what
//
// CRLs are signed by the CA's own key, with the CA certificate's cRLSign key usage. RFC 5280 5.1.1.2 and 6.3.3
// make the CRL issuer the certificate issuer unless the certificate names another CRL issuer in a cRLIssuer
// field and the CRL is marked indirect (5.2.5); indirect CRLs are poorly supported by relying parties (OpenSSL
// needs -extended_crl) and would have to be named in every certificate already issued, so Keyward does not use
// them. The keystore enforces purposes: the CA key is fetched with its own purpose (ca-signing, root-signing
// for a root), which covers certificate and CRL signing alike, as the CA certificate's keyUsage says.
//
// OCSP responses are signed by a delegated responder (RFC 6960 4.2.2.2): a certificate issued by the CA with
// id-kp-OCSPSigning and id-pkix-ocsp-nocheck, whose key has purpose ocsp-signing.
//
// Revocation filters are not X.509 objects, so no RFC binds their signer: they are signed by a key of purpose
// crl-signing whose certificate, issued by the CA, carries id-kp-documentSigning (RFC 9336).
package revocation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// Reasons maps the RFC 5280 5.3.1 CRLReason names operators use to their codes. removeFromCRL (8) is not an
// operator's reason: it only appears in delta CRLs for a certificate released from hold.
var Reasons = map[string]int{
	"unspecified":          store.ReasonUnspecified,
	"keyCompromise":        store.ReasonKeyCompromise,
	"cACompromise":         store.ReasonCACompromise,
	"affiliationChanged":   store.ReasonAffiliationChanged,
	"superseded":           store.ReasonSuperseded,
	"cessationOfOperation": store.ReasonCessationOfOperation,
	"certificateHold":      store.ReasonCertificateHold,
	"privilegeWithdrawn":   store.ReasonPrivilegeWithdrawn,
	"aACompromise":         store.ReasonAACompromise,
}

// ReasonName returns the RFC 5280 name of a reason code.
func ReasonName(code int) string {
	for n, c := range Reasons {
		if c == code {
			return n
		}
	}
	if code == store.ReasonRemoveFromCRL {
		return "removeFromCRL"
	}
	return fmt.Sprintf("reason-%d", code)
}

// ParseReason returns the code of an RFC 5280 reason name (case-insensitive).
func ParseReason(s string) (int, error) {
	for n, c := range Reasons {
		if strings.EqualFold(n, s) {
			return c, nil
		}
	}
	names := make([]string, 0, len(Reasons))
	for n := range Reasons {
		names = append(names, n)
	}
	sort.Strings(names)
	return 0, &ra.Error{Kind: ra.KindBadRequest, Err: fmt.Errorf("revocation reason %q is not an RFC 5280 CRLReason (use one of %s)", s, strings.Join(names, ", "))}
}

// Roles that may revoke and release certificates.
var revokers = []string{ra.RoleAdmin, ra.RoleCAOfficer}

// Service revokes certificates. It is safe for concurrent use.
type Service struct {
	n  *node.Node
	rs store.RevocationStore
	// changed is called after every committed revocation change, so the publisher and the OCSP cache react at
	// once rather than at their next poll.
	changed func()
}

// New returns the revocation service of n. It fails if the store does not implement store.RevocationStore.
func New(n *node.Node) (*Service, error) {
	rs := n.Store
	return &Service{n: n, rs: rs, changed: func() {}}, nil
}

// OnChange sets a function called after each committed revocation change.
func (s *Service) OnChange(fn func()) { s.changed = fn }

// Store returns the revocation store.
func (s *Service) Store() store.RevocationStore { return s.rs }

func (s *Service) now() time.Time { return s.n.Now().UTC() }

// RevokeRequest asks to revoke one certificate.
type RevokeRequest struct {
	Serial         string
	Reason         int
	InvalidityDate *time.Time
}

func (s *Service) authorise(ctx context.Context, p ra.Principal, action, subject string) error {
	for _, r := range revokers {
		if p.Role == r {
			return nil
		}
	}
	what := strings.TrimPrefix(action, "cert.") + " certificates"
	if v, ok := strings.CutPrefix(action, "device."); ok {
		what = v + " devices"
	}
	err := &ra.Error{Kind: ra.KindForbidden, Err: fmt.Errorf("role %q may not %s (allowed: %s)", p.Role, what, strings.Join(revokers, ", "))}
	s.refuse(ctx, p, action, subject, err)
	return err
}

// refuse records a refused request in its own transaction; nothing else changes.
func (s *Service) refuse(ctx context.Context, p ra.Principal, action, subject string, cause error) {
	err := s.n.Store.Tx(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, &audit.Event{Time: s.now(), Actor: p.ID, Action: action, Subject: subject, Outcome: audit.OutcomeRefused,
			Details: map[string]string{"role": p.Role, "reason": cause.Error()}})
	})
	if err != nil {
		s.n.Logger.ErrorContext(ctx, "audit of refusal failed", "actor", p.ID, "err", err)
	}
}

func checkReason(code int) error {
	if code == store.ReasonRemoveFromCRL || code < 0 || code > store.ReasonAACompromise || code == 7 {
		return &ra.Error{Kind: ra.KindBadRequest, Err: fmt.Errorf("revocation reason %d is not one an operator may give (RFC 5280 5.3.1; removeFromCRL is used only by 'cert unhold')", code)}
	}
	return nil
}

// Revoke revokes one certificate for p and records the audit event in the same transaction. Revoking a
// certificate that is revoked already is a KindConflict error that changes nothing, except that a
// certificate on hold may be revoked for a permanent reason (RFC 5280 5.3.1).
func (s *Service) Revoke(ctx context.Context, p ra.Principal, req RevokeRequest) (*store.RevocationEntry, error) {
	serial, err := node.NormalizeSerial(req.Serial)
	if err != nil {
		return nil, err
	}
	if err := s.authorise(ctx, p, "cert.revoke", serial); err != nil {
		return nil, err
	}
	if err := checkReason(req.Reason); err != nil {
		return nil, err
	}
	now := s.now()
	if req.InvalidityDate != nil {
		// RFC 5280 5.3.2: the date on which the key was compromised or the certificate became invalid; it
		// cannot lie in the future of the revocation.
		if req.InvalidityDate.After(now) {
			return nil, &ra.Error{Kind: ra.KindBadRequest, Err: fmt.Errorf("invalidity date %s is in the future (RFC 5280 5.3.2: when the key was or may have been compromised)", req.InvalidityDate.Format(time.RFC3339))}
		}
		t := req.InvalidityDate.UTC().Truncate(time.Second)
		req.InvalidityDate = &t
	}
	var e *store.RevocationEntry
	err = s.n.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		e, err = s.revokeTx(ctx, tx, p, serial, req.Reason, req.InvalidityDate, now, nil)
		return err
	})
	if err != nil {
		return e, mapError(err, serial, e)
	}
	s.changed()
	return e, nil
}

func (s *Service) revokeTx(ctx context.Context, tx store.Tx, p ra.Principal, serial string, reason int, inv *time.Time, now time.Time, extra map[string]string) (*store.RevocationEntry, error) {
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
	return e, tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: p.ID, Action: "cert.revoke", Subject: serial, Outcome: audit.OutcomeSuccess, Details: details})
}

// Unhold releases a certificate revoked with certificateHold (RFC 5280 5.3.1): it becomes valid again and the
// next delta CRL lists it with reason removeFromCRL. Any other revocation is final (KindConflict).
func (s *Service) Unhold(ctx context.Context, p ra.Principal, serialIn string) (*store.RevocationEntry, error) {
	serial, err := node.NormalizeSerial(serialIn)
	if err != nil {
		return nil, err
	}
	if err := s.authorise(ctx, p, "cert.unhold", serial); err != nil {
		return nil, err
	}
	now := s.now()
	var e *store.RevocationEntry
	err = s.n.Store.Tx(ctx, func(tx store.Tx) error {
		rtx := tx
		var err error
		if e, err = rtx.Unhold(ctx, serial, now); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: p.ID, Action: "cert.unhold", Subject: serial, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"issuer": e.IssuerID, "role": p.Role, "seq": fmt.Sprint(e.Seq)}})
	})
	if err != nil {
		return e, mapError(err, serial, e)
	}
	s.changed()
	return e, nil
}

func mapError(err error, serial string, e *store.RevocationEntry) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &ra.Error{Kind: ra.KindNotFound, Err: fmt.Errorf("no certificate with serial %s (see 'keyward cert list')", serial)}
	case errors.Is(err, store.ErrAlreadyRevoked) && e != nil && e.RevokedAt != nil:
		return &ra.Error{Kind: ra.KindConflict, Err: fmt.Errorf("certificate %s was already revoked at %s with reason %s; nothing changed (only a certificateHold can become a permanent revocation)",
			serial, e.RevokedAt.Format(time.RFC3339), ReasonName(e.Reason))}
	case errors.Is(err, store.ErrNotOnHold) && e != nil:
		state := "valid"
		if e.Status == store.CertStatusRevoked {
			state = "revoked with reason " + ReasonName(e.Reason) + ", which is final"
		}
		return &ra.Error{Kind: ra.KindConflict, Err: fmt.Errorf("certificate %s is %s, not on certificateHold: only a hold can be released (RFC 5280 5.3.1)", serial, state)}
	}
	var re *ra.Error
	if errors.As(err, &re) {
		return err
	}
	return &ra.Error{Kind: ra.KindUnavailable, Err: err}
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
func (s *Service) Bulk(ctx context.Context, p ra.Principal, req BulkRequest) (*BulkResult, error) {
	q, sel := req.Query, req.Registry
	if len(q.IssuerIDs) == 0 && q.Profile == "" && q.Subject == "" && q.IssuedFrom.IsZero() && q.IssuedTo.IsZero() && sel.IsZero() {
		msg := "bulk revocation needs a selector (--issuer, --profile, --subject, --issued-between, --device, --station or --site); it never revokes everything by default"
		if sel.Environment != "" || sel.ProductLine != "" {
			msg = "bulk revocation needs a selector: --env and --product only narrow --device, --station or --site; it never revokes everything by default"
		}
		return nil, &ra.Error{Kind: ra.KindBadRequest, Err: errors.New(msg)}
	}
	if !q.IssuedFrom.IsZero() && !q.IssuedTo.IsZero() && !q.IssuedFrom.Before(q.IssuedTo) {
		return nil, &ra.Error{Kind: ra.KindBadRequest, Err: fmt.Errorf("--issued-between %s %s: the first time must be before the second", q.IssuedFrom.Format(time.RFC3339), q.IssuedTo.Format(time.RFC3339))}
	}
	query := strings.TrimSpace(describe(q) + " " + sel.describe())
	if err := s.authorise(ctx, p, "cert.revoke-bulk", query); err != nil {
		return nil, err
	}
	if err := checkReason(req.Reason); err != nil {
		return nil, err
	}
	q.Status = ""
	queries := []store.CertQuery{q}
	if !sel.IsZero() {
		var err error
		if queries, err = s.registryQueries(ctx, sel, q); err != nil {
			return nil, err
		}
	}
	res := &BulkResult{DryRun: req.DryRun}
	var todo []string
	for _, q := range queries {
		err := s.rs.WalkCertStatus(ctx, q, func(c *store.CertStatus) error {
			res.Matched++
			if c.Status == store.CertStatusRevoked && !(c.Reason == store.ReasonCertificateHold && req.Reason != store.ReasonCertificateHold) {
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
			return nil, &ra.Error{Kind: ra.KindUnavailable, Err: err}
		}
	}
	if req.DryRun {
		res.Revoked = res.Matched - res.AlreadyRevoked
		return res, nil
	}
	now := s.now()
	for start := 0; start < len(todo); start += bulkBatch {
		batch := todo[start:min(start+bulkBatch, len(todo))]
		err := s.n.Store.Tx(ctx, func(tx store.Tx) error {
			for _, serial := range batch {
				if _, err := s.revokeTx(ctx, tx, p, serial, req.Reason, req.InvalidityDate, now, map[string]string{"bulk_query": query}); err != nil {
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
			return res, &ra.Error{Kind: ra.KindUnavailable, Err: fmt.Errorf("bulk revocation stopped after %d certificates: %w", res.Revoked, err)}
		}
		s.changed()
	}
	err := s.n.Store.Tx(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: p.ID, Action: "cert.revoke-bulk", Subject: query, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"matched": fmt.Sprint(res.Matched), "revoked": fmt.Sprint(res.Revoked), "already_revoked": fmt.Sprint(res.AlreadyRevoked),
				"reason": ReasonName(req.Reason), "role": p.Role}})
	})
	if err != nil {
		return res, &ra.Error{Kind: ra.KindUnavailable, Err: err}
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
