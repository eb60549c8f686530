package server

import (
	"net/http"
	"time"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/ra"
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
	Reason         string     `json:"reason" required:"true" hint:"an RFC 5280 CRLReason name such as \"keyCompromise\" or \"certificateHold\""`
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"` // RFC 3339
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var req RevokeRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Reason == "" {
		s.fail(w, r, ra.FieldErrorf(ra.KindBadRequest, "reason", `"reason" is required: an RFC 5280 CRLReason name such as "keyCompromise" or "certificateHold"`))
		return
	}
	code, err := ra.ParseReason(req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := s.ra.Revoke(r.Context(), p, ra.RevokeRequest{Serial: r.PathValue("serial"), Reason: code, InvalidityDate: req.InvalidityDate})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewRevocation(e))
}

func (s *Server) unhold(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	e, err := s.ra.Unhold(r.Context(), p, r.PathValue("serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewRevocation(e))
}

// BulkRevokeRequest is the body of POST /api/v1/revocations: revoke every certificate matching the selectors.
type BulkRevokeRequest struct {
	Issuers        []string   `json:"issuers,omitempty"` // CA ids, e.g. "dev/demo-implant"
	Profile        string     `json:"profile,omitempty"`
	Subject        string     `json:"subject,omitempty"`     // exact subject DN, e.g. "CN=DEMO-00000042"
	IssuedFrom     *time.Time `json:"issued_from,omitempty"` // inclusive
	IssuedTo       *time.Time `json:"issued_to,omitempty"`   // exclusive
	Reason         string     `json:"reason" required:"true" hint:"an RFC 5280 CRLReason name such as \"keyCompromise\""`
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"`
	DryRun         bool       `json:"dry_run,omitempty"` // only count
}
