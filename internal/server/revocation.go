package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
)

// revocationRoutes are the revocation API routes: revoke, release from hold, bulk revocation. Admins and CA
// officers only; auditors read the results in the audit trail.
func (s *Server) revocationRoutes() []Route {
	revokers := []string{ra.RoleAdmin, ra.RoleCAOfficer}
	return []Route{
		{Method: "POST", Pattern: "/api/v1/certificates/{serial}/revoke", Roles: revokers, Handler: s.revoke},
		{Method: "POST", Pattern: "/api/v1/certificates/{serial}/unhold", Roles: revokers, Handler: s.unhold},
		{Method: "POST", Pattern: "/api/v1/revocations", Roles: revokers, Handler: s.bulkRevokeByRegistry},
	}
}

// RevokeRequest is the body of POST /api/v1/certificates/{serial}/revoke.
type RevokeRequest struct {
	Reason         string     `json:"reason"`                    // RFC 5280 5.3.1 name, e.g. "keyCompromise"
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"` // RFC 3339
}

// RevocationView is the API form of a certificate's revocation state.
type RevocationView struct {
	Serial         string     `json:"serial"`
	Issuer         string     `json:"issuer"`
	Status         string     `json:"status"`
	Reason         string     `json:"reason,omitempty"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"`
}

func revocationView(e *store.RevocationEntry) RevocationView {
	v := RevocationView{Serial: e.Serial, Issuer: e.IssuerID, Status: e.Status, RevokedAt: e.RevokedAt, InvalidityDate: e.InvalidityDate}
	if e.Status == store.CertStatusRevoked {
		v.Reason = revocation.ReasonName(e.Reason)
	}
	return v
}

func (s *Server) revocationService() (*revocation.Service, error) {
	svc, err := revocation.New(s.node)
	if err != nil {
		return nil, &ra.Error{Kind: ra.KindInternal, Err: err}
	}
	if s.revChanged != nil {
		svc.OnChange(s.revChanged)
	}
	return svc, nil
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var req RevokeRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Reason == "" {
		s.fail(w, r, &ra.Error{Kind: ra.KindBadRequest, Err: errors.New(`"reason" is required: an RFC 5280 CRLReason name such as "keyCompromise" or "certificateHold"`)})
		return
	}
	code, err := revocation.ParseReason(req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	svc, err := s.revocationService()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := svc.Revoke(r.Context(), p, revocation.RevokeRequest{Serial: r.PathValue("serial"), Reason: code, InvalidityDate: req.InvalidityDate})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, revocationView(e))
}

func (s *Server) unhold(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	svc, err := s.revocationService()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := svc.Unhold(r.Context(), p, r.PathValue("serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, revocationView(e))
}

// BulkRevokeRequest is the body of POST /api/v1/revocations: revoke every certificate matching the selectors.
type BulkRevokeRequest struct {
	Issuers        []string   `json:"issuers,omitempty"` // CA ids, e.g. "dev/demo-implant"
	Profile        string     `json:"profile,omitempty"`
	Subject        string     `json:"subject,omitempty"`     // exact subject DN, e.g. "CN=DEMO-00000042"
	IssuedFrom     *time.Time `json:"issued_from,omitempty"` // inclusive
	IssuedTo       *time.Time `json:"issued_to,omitempty"`   // exclusive
	Reason         string     `json:"reason"`                // RFC 5280 5.3.1 name
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"`
	DryRun         bool       `json:"dry_run,omitempty"` // only count
}
