package ra

// A CA's life after its creation: revocation by its parent (the root), retirement once nothing it issued is
// valid any more, and the root's CRL, which an offline root signs in a ceremony from a request the server
// exports and the server then installs.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/store"
)

// CARevocationReasons are the reasons of RFC 5280 5.3.1 that apply to a CA.
var CARevocationReasons = []string{"keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation"}

// RevokeCA revokes CA id (an issuing, station, site or OCSP-responder CA) for reason: from the commit on it
// issues nothing, in this process at once and in every other through the change feed; OCSP answers revoked for
// every certificate it issued, revocation filters carry it as a revoked issuer, and its root's CRL lists its
// certificate (an online root's at once, an offline root's from its next CRL ceremony).
func (r *RA) RevokeCA(ctx context.Context, p Principal, id, reason string) (*store.CA, error) {
	if err := r.authorize(ctx, p, audit.ActionCARevoke, id, "revoke CAs", RoleAdmin, RoleCAOfficer); err != nil {
		return nil, err
	}
	refuse := func(err error) (*store.CA, error) {
		r.refuse(ctx, p, audit.ActionCARevoke, id, map[string]string{"revocation_reason": reason}, err)
		return nil, err
	}
	code, ok := store.Reasons[reason]
	if !ok || !slices.Contains(CARevocationReasons, reason) {
		return refuse(FieldErrorf(KindBadRequest, "reason", "reason %q does not apply to a CA (RFC 5280 5.3.1; use %s)", reason, strings.Join(CARevocationReasons, ", ")))
	}
	row, err := r.cfg.Store.GetCA(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return refuse(errorf(KindNotFound, "no CA %s (see 'keyward ca list')", id))
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	switch row.Kind {
	case store.CAKindRoot:
		return refuse(errorf(KindBadRequest, "%s is a root: a root is not revoked but replaced, by a root rollover ('keyward ca ceremony root-rollover') and a trust-anchor update for devices", id))
	case store.CAKindService:
		return refuse(errorf(KindBadRequest, "%s is the server's TLS service CA, outside the device hierarchy: re-key the server instead", id))
	}
	if row.Status == store.CAStatusRevoked {
		return refuse(errorf(KindConflict, "CA %s was revoked already at %s (%s)", id, row.RevokedAt.Format(time.RFC3339), store.ReasonName(row.RevocationReason)))
	}
	now := r.now().Truncate(time.Second)
	cert, err := x509.ParseCertificate(row.CertDER)
	if err != nil {
		return nil, wrap(KindInternal, fmt.Errorf("CA %s certificate: %w", id, err))
	}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.RevokeCA(ctx, id, now, code); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionCARevoke, id, now, map[string]string{"revocation_reason": reason, "kind": row.Kind,
			"parent": row.ParentID, "serial": SerialString(cert), "previous_status": row.Status})
	})
	if err != nil {
		return nil, err
	}
	r.caChanged(ctx, id)
	row.Status, row.RevokedAt, row.RevocationReason = store.CAStatusRevoked, &now, code
	return row, nil
}

// RetireCA retires CA id: it signs nothing any more, not even CRLs. A CA that still has valid certificates
// (a superseded generation before its last certificate expires) is refused: it must keep answering for them.
func (r *RA) RetireCA(ctx context.Context, p Principal, id string) (*store.CA, error) {
	if err := r.authorize(ctx, p, audit.ActionCARetire, id, "retire CAs", RoleAdmin); err != nil {
		return nil, err
	}
	row, err := r.cfg.Store.GetCA(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(KindNotFound, "no CA %s (see 'keyward ca list')", id)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	var refusal error
	switch {
	case row.Status == store.CAStatusRetired:
		refusal = errorf(KindConflict, "CA %s is retired already", id)
	case row.Status == store.CAStatusActive && row.Kind != store.CAKindRoot:
		refusal = errorf(KindConflict, "CA %s is the active CA of its role: roll it over first ('keyward ca rollover' or 'keyward ca csr'), or revoke it", id)
	default:
		if n, last, err := r.validIssued(ctx, id); err != nil {
			return nil, err
		} else if n > 0 {
			refusal = errorf(KindConflict, "CA %s still answers for %d valid certificates, the last until %s: it is retired after that", id, n, last.Format(time.RFC3339))
		}
	}
	if refusal != nil {
		r.refuse(ctx, p, audit.ActionCARetire, id, nil, refusal)
		return nil, refusal
	}
	now := r.now()
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.SetCAStatus(ctx, id, store.CAStatusRetired); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionCARetire, id, now, map[string]string{"previous_status": row.Status})
	})
	if err != nil {
		return nil, err
	}
	r.caChanged(ctx, id)
	row.Status = store.CAStatusRetired
	return row, nil
}

// validIssued counts the certificates CA id issued that are not expired, and the last expiry among them.
func (r *RA) validIssued(ctx context.Context, id string) (int, time.Time, error) {
	now := r.now()
	var n int
	var last time.Time
	err := r.cfg.Store.WalkCertStatus(ctx, store.CertQuery{IssuerIDs: []string{id}}, func(c *store.CertStatus) error {
		if c.NotAfter.After(now) {
			n++
			if c.NotAfter.After(last) {
				last = c.NotAfter
			}
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, wrap(KindUnavailable, err)
	}
	return n, last, nil
}

// RevokedChildren returns the CRL entries of the CAs below root rootID that it revoked and that have not
// expired.
func (r *RA) RevokedChildren(ctx context.Context, rootID string) ([]*store.RevocationEntry, error) {
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, err
	}
	now := r.now()
	var out []*store.RevocationEntry
	for _, c := range cas {
		if c.ParentID != rootID || c.Status != store.CAStatusRevoked || !c.NotAfter.After(now) {
			continue
		}
		cert, err := x509.ParseCertificate(c.CertDER)
		if err != nil {
			return nil, fmt.Errorf("CA %s certificate: %w", c.ID, err)
		}
		out = append(out, &store.RevocationEntry{Serial: SerialString(cert), IssuerID: rootID, Status: store.CertStatusRevoked,
			Reason: c.RevocationReason, RevokedAt: c.RevokedAt, NotAfter: c.NotAfter})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	return out, nil
}

// RootResponder returns the delegated OCSP responder of an offline root: its active root-OCSP CA, certified by
// that root in a ceremony.
func (r *RA) RootResponder(ctx context.Context, root *store.CA) (*ca.Delegate, error) {
	id, err := r.currentID(ctx, OCSPSignerID(root.Environment))
	if err != nil {
		return nil, err
	}
	row, err := r.cfg.Store.GetCA(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("offline root %s has no OCSP responder: certify one with 'keyward ca csr --kind ocsp-signer' and a ceremony", root.ID)
	} else if err != nil {
		return nil, err
	}
	if row.Status != store.CAStatusActive || row.ParentID != root.ID {
		return nil, fmt.Errorf("the OCSP responder %s of %s is %s", row.ID, root.ID, row.Status)
	}
	return r.cfg.CA.Delegate(ctx, &store.RevocationSigner{IssuerID: root.ID, Purpose: string(ca.PurposeOf(row)), KeyURI: row.KeyURI, CertDER: row.CertDER, NotAfter: row.NotAfter})
}

// CRLRequest is what an offline root's next CRL must hold, exported by the server for the ceremony.
type CRLRequest struct {
	Version     int    `json:"version"`
	Environment string `json:"environment"`
	Root        string `json:"root"`
	// RootSHA256 is the SHA-256 of the root certificate whose CRL this is.
	RootSHA256 string `json:"root_sha256"`
	// MinNumber is the lowest CRL number the CRL may carry: one more than the last installed.
	MinNumber int64          `json:"min_number"`
	Revoked   []CRLRequestCA `json:"revoked"`
	CreatedAt time.Time      `json:"created_at"`
	Due       *time.Time     `json:"current_crl_next_update,omitempty"`
}

// CRLRequestCA is one revoked CA a root CRL must list.
type CRLRequestCA struct {
	CA        string    `json:"ca"`
	Serial    string    `json:"serial"`
	RevokedAt time.Time `json:"revoked_at"`
	Reason    string    `json:"reason"`
}

// RootCRLRequest returns what the next CRL of env's offline root (its current generation, or the one named)
// must hold: every CA it revoked that has not expired, and the lowest number the CRL may carry.
func (r *RA) RootCRLRequest(ctx context.Context, env, rootID string) (*CRLRequest, error) {
	root, err := r.rootOf(ctx, env, rootID)
	if err != nil {
		return nil, err
	}
	entries, err := r.RevokedChildren(ctx, root.ID)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	bySerial := map[string]string{}
	for _, c := range cas {
		if c.ParentID == root.ID {
			bySerial[SerialOf(c.CertDER)] = c.ID
		}
	}
	sum := sha256.Sum256(root.CertDER)
	req := &CRLRequest{Version: 1, Environment: env, Root: root.ID, RootSHA256: hex.EncodeToString(sum[:]), MinNumber: 1, Revoked: []CRLRequestCA{},
		CreatedAt: r.now().Truncate(time.Second)}
	if last, err := r.cfg.Store.LatestCRL(ctx, root.ID, false); err == nil {
		req.MinNumber = last.Number + 1
		due := last.NextUpdate
		req.Due = &due
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	for _, e := range entries {
		req.Revoked = append(req.Revoked, CRLRequestCA{CA: bySerial[e.Serial], Serial: e.Serial, RevokedAt: *e.RevokedAt, Reason: store.ReasonName(e.Reason)})
	}
	return req, nil
}

// rootOf returns root rootID of env, or env's current root if rootID is empty.
func (r *RA) rootOf(ctx context.Context, env, rootID string) (*store.CA, error) {
	if r.Hierarchy().Environments[env] == nil && len(r.Hierarchy().Environments) > 0 {
		return nil, FieldErrorf(KindBadRequest, "environment", "environment %q is not declared in keyward.yaml (declared: %v)", env, r.Hierarchy().EnvironmentNames())
	}
	if rootID == "" {
		return r.currentRoot(ctx, env)
	}
	row, err := r.cfg.Store.GetCA(ctx, rootID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (row.Kind != store.CAKindRoot || row.Environment != env)) {
		return nil, errorf(KindNotFound, "no root %s in environment %q", rootID, env)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	return row, nil
}

// maxCRLRequest bounds a CRL request file, which arrives from another machine.
const maxCRLRequest = 1 << 20

// ParseCRLRequest reads a CRL request file.
func ParseCRLRequest(data []byte) (*CRLRequest, error) {
	if len(data) > maxCRLRequest {
		return nil, errorf(KindBadRequest, "CRL request is %d bytes, more than %d", len(data), maxCRLRequest)
	}
	var q CRLRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return nil, errorf(KindBadRequest, "CRL request: %w", err)
	}
	if q.Version != 1 {
		return nil, errorf(KindBadRequest, "CRL request version %d is not 1", q.Version)
	}
	if q.MinNumber < 1 {
		return nil, errorf(KindBadRequest, "CRL request: min_number %d is not positive", q.MinNumber)
	}
	for _, e := range q.Revoked {
		if _, ok := store.Reasons[e.Reason]; !ok {
			return nil, errorf(KindBadRequest, "CRL request: CA %s: unknown reason %q", e.CA, e.Reason)
		}
		if e.Serial == "" || strings.TrimLeft(e.Serial, "0123456789abcdef") != "" {
			return nil, errorf(KindBadRequest, "CRL request: CA %s: serial %q is not lower-case hex", e.CA, e.Serial)
		}
	}
	return &q, nil
}

// CeremonyCRL has the workspace's root of q signs its CRL, valid until nextUpdate, numbered at least
// q.MinNumber and above every CRL the workspace signed before, and records the command's transcript t. It
// returns the DER CRL and the log's new head.
func (r *RA) CeremonyCRL(ctx context.Context, p Principal, env string, q *CRLRequest, validity time.Duration, t *Transcript) ([]byte, TranscriptHead, error) {
	ws, err := r.witnesses(ctx, env, t)
	if err != nil {
		r.refuse(ctx, p, audit.ActionCeremonyCRL, q.Root, map[string]string{"command": t.Command}, err)
		return nil, TranscriptHead{}, err
	}
	t.Witnesses = ws
	if q.Environment != env {
		return nil, TranscriptHead{}, FieldErrorf(KindBadRequest, "environment", "the CRL request is for environment %q, this ceremony is for %q", q.Environment, env)
	}
	if validity <= 0 || validity > 400*24*time.Hour {
		return nil, TranscriptHead{}, FieldErrorf(KindBadRequest, "next_update", "--next-update %s: give a positive span of at most 400d", validity)
	}
	// The request names the root by its certificate's hash; the workspace may hold several generations.
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, TranscriptHead{}, wrap(KindUnavailable, err)
	}
	var root *store.CA
	for _, c := range cas {
		sum := sha256.Sum256(c.CertDER)
		if c.Kind == store.CAKindRoot && c.Environment == env && hex.EncodeToString(sum[:]) == q.RootSHA256 {
			root = c
		}
	}
	if root == nil {
		return nil, TranscriptHead{}, errorf(KindBadRequest, "the CRL request is for root %s (certificate SHA-256 %s), which this workspace does not hold", q.Root, q.RootSHA256)
	}
	iss, err := r.cfg.CA.StatusIssuer(ctx, root.ID)
	if err != nil {
		return nil, TranscriptHead{}, signError(root.ID, err)
	}
	number, err := r.NextCRLNumber(ctx, root.ID)
	if err != nil {
		return nil, TranscriptHead{}, err
	}
	number = max(number, q.MinNumber)
	now := r.now().Truncate(time.Second)
	var entries ca.CRLEntries
	for _, e := range q.Revoked {
		if err := entries.Add(e.Serial, e.RevokedAt, store.Reasons[e.Reason], nil); err != nil {
			return nil, TranscriptHead{}, errorf(KindBadRequest, "CRL request: CA %s: %w", e.CA, err)
		}
	}
	idp, err := ca.IssuingDistributionPoint(true)
	if err != nil {
		return nil, TranscriptHead{}, err
	}
	der, err := iss.SignCRL(ca.CRLParams{Number: number, ThisUpdate: now, NextUpdate: now.Add(validity), Extensions: [][]byte{idp}}, &entries)
	if err != nil {
		return nil, TranscriptHead{}, signError(root.ID, err)
	}
	if t.Outputs == nil {
		t.Outputs = map[string][]byte{}
	}
	t.Outputs["crl"] = der
	// The workspace remembers the number it used, so that no later ceremony signs a lower one.
	if err := r.RecordCRLs(ctx, &store.PublishedCRL{IssuerID: root.ID, Number: number, ThisUpdate: now, NextUpdate: now.Add(validity), Entries: entries.Len(),
		DER: der, CreatedAt: now}); err != nil {
		return nil, TranscriptHead{}, err
	}
	h, err := r.CeremonyEvent(ctx, p, audit.ActionCeremonyCRL, root.ID, t, map[string]string{"number": fmt.Sprint(number), "entries": fmt.Sprint(entries.Len()),
		"next_update": now.Add(validity).Format(time.RFC3339)})
	return der, h, err
}

// ImportRootCRL installs a CRL an offline root signed in a ceremony, so the public listener serves it at the
// root's CRL URL: it must be signed by a root of env recorded here, carry a number above every CRL of that root
// installed before, be current, and list every CA below that root that is revoked here (and nothing else).
func (r *RA) ImportRootCRL(ctx context.Context, p Principal, env string, der []byte) (*store.PublishedCRL, error) {
	if err := r.authorize(ctx, p, audit.ActionCAImportCRL, env, "install root CRLs", RoleAdmin, RoleCAOfficer); err != nil {
		return nil, err
	}
	row, err := r.importRootCRL(ctx, p, env, der)
	if err != nil {
		r.refuse(ctx, p, audit.ActionCAImportCRL, env, nil, err)
		return nil, err
	}
	return row, nil
}

func (r *RA) importRootCRL(ctx context.Context, p Principal, env string, der []byte) (*store.PublishedCRL, error) {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, errorf(KindBadRequest, "parse CRL: %w", err)
	}
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	var root *store.CA
	for _, c := range cas {
		if c.Kind != store.CAKindRoot || c.Environment != env {
			continue
		}
		cert, err := x509.ParseCertificate(c.CertDER)
		if err == nil && crl.CheckSignatureFrom(cert) == nil {
			root = c
		}
	}
	if root == nil {
		return nil, errorf(KindBadRequest, "the CRL is not signed by a root of environment %q recorded here", env)
	}
	if root.KeyURI != "" {
		return nil, errorf(KindBadRequest, "root %s is online: this server publishes its CRLs itself", root.ID)
	}
	if crl.Number == nil || !crl.Number.IsInt64() || crl.Number.Sign() <= 0 {
		return nil, errorf(KindBadRequest, "the CRL carries no positive CRL number")
	}
	number := crl.Number.Int64()
	if last, err := r.cfg.Store.LatestCRL(ctx, root.ID, false); err == nil && number <= last.Number {
		return nil, errorf(KindBadRequest, "the CRL's number %d is not above the installed CRL's %d (a replayed or older CRL)", number, last.Number)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	now := r.now()
	if crl.NextUpdate.IsZero() || !now.Before(crl.NextUpdate) {
		return nil, errorf(KindBadRequest, "the CRL expired at %s: sign a new one", crl.NextUpdate.Format(time.RFC3339))
	}
	if now.Add(5 * time.Minute).Before(crl.ThisUpdate) {
		return nil, errorf(KindBadRequest, "the CRL's thisUpdate %s is in the future", crl.ThisUpdate.Format(time.RFC3339))
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[e.SerialNumber.Text(16)] = true
	}
	want, err := r.RevokedChildren(ctx, root.ID)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	known := map[string]bool{}
	for _, c := range cas {
		if c.ParentID == root.ID {
			known[SerialOf(c.CertDER)] = true
		}
	}
	for _, e := range want {
		if !listed[e.Serial] {
			return nil, errorf(KindBadRequest, "the CRL omits the certificate %s of a CA revoked here: export a new request with 'keyward ca crl-request' and sign it", e.Serial)
		}
	}
	for s := range listed {
		if !known[s] {
			return nil, errorf(KindBadRequest, "the CRL lists serial %s, which is no CA certificate of %s recorded here", s, root.ID)
		}
	}
	row := &store.PublishedCRL{IssuerID: root.ID, Number: number, ThisUpdate: crl.ThisUpdate.UTC(), NextUpdate: crl.NextUpdate.UTC(), Entries: len(listed), DER: der, CreatedAt: now}
	sum := sha256.Sum256(der)
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertCRL(ctx, row); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionCAImportCRL, root.ID, now, map[string]string{"number": fmt.Sprint(number), "entries": fmt.Sprint(len(listed)),
			"next_update": row.NextUpdate.Format(time.RFC3339), "crl_sha256": hex.EncodeToString(sum[:])})
	})
	if err != nil {
		return nil, err
	}
	return row, nil
}

// CAState is a CA as 'keyward ca status' shows it.
type CAState struct {
	CA *store.CA
	// ValidIssued counts the unexpired certificates the CA issued, LastExpiry the last of them.
	ValidIssued int
	LastExpiry  time.Time
	// For a root: its newest installed or published CRL, and when the next must be signed (offline roots).
	CRL       *store.PublishedCRL
	CRLDueBy  *time.Time
	Offline   bool
	Responder *store.CA // an offline root's OCSP responder
}

// crlCeremonyMargin is how long before a root CRL's nextUpdate its next CRL ceremony is due.
const crlCeremonyMargin = 30 * 24 * time.Hour

// CAStatus returns the state of every CA of env (all environments if env is empty) and the pending requests.
func (r *RA) CAStatus(ctx context.Context, env string) ([]*CAState, []*store.CARequest, error) {
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, nil, wrap(KindUnavailable, err)
	}
	var out []*CAState
	for _, c := range cas {
		if env != "" && c.Environment != env {
			continue
		}
		st := &CAState{CA: c}
		if c.Kind == store.CAKindRoot {
			st.Offline = c.KeyURI == ""
			if crl, err := r.cfg.Store.LatestCRL(ctx, c.ID, false); err == nil {
				st.CRL = crl
				if st.Offline {
					due := crl.NextUpdate.Add(-crlCeremonyMargin)
					st.CRLDueBy = &due
				}
			} else if !errors.Is(err, store.ErrNotFound) {
				return nil, nil, wrap(KindUnavailable, err)
			}
			if st.Offline {
				id, err := r.currentID(ctx, OCSPSignerID(c.Environment))
				if err != nil {
					return nil, nil, err
				}
				if resp, err := r.cfg.Store.GetCA(ctx, id); err == nil && resp.ParentID == c.ID {
					st.Responder = resp
				}
			}
		} else if c.Kind != store.CAKindOCSPSigner {
			if st.ValidIssued, st.LastExpiry, err = r.validIssued(ctx, c.ID); err != nil {
				return nil, nil, err
			}
		}
		out = append(out, st)
	}
	reqs, err := r.cfg.Store.ListCARequests(ctx)
	if err != nil {
		return nil, nil, wrap(KindUnavailable, err)
	}
	var pending []*store.CARequest
	for _, q := range reqs {
		if q.State == store.CARequestPending && (env == "" || q.Environment == env) {
			pending = append(pending, q)
		}
	}
	return out, pending, nil
}
