package server

import (
	"net/http"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/ra"
)

// firmwareRoutes are the firmware release routes. Over the API a release signer approves as the authenticated
// principal: the RA takes the operator token's name as the signer name and checks it against the product
// line's signer list, so nobody approves in another signer's name (the CLI's --as exists only in local mode).
func (s *Server) firmwareRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/api/v1/firmware/releases/{id}", Roles: []string{ra.RoleAdmin, ra.RoleReleaseSigner, ra.RoleAuditor}, Handler: s.getRelease},
		{Method: "POST", Pattern: "/api/v1/firmware/releases/{id}/approve", Roles: []string{ra.RoleReleaseSigner}, Handler: s.approveRelease},
		{Method: "POST", Pattern: "/api/v1/firmware/releases/{id}/sign", Roles: []string{ra.RoleAdmin, ra.RoleReleaseSigner}, Handler: s.signRelease},
	}
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	rel, err := s.read.GetFirmwareRelease(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	approvals, err := s.read.FirmwareApprovals(r.Context(), rel.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewFirmwareRelease(rel, approvals))
}

func (s *Server) approveRelease(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	rel, approvals, err := s.ra.ApproveRelease(r.Context(), p, r.PathValue("id"), "")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewFirmwareRelease(rel, approvals))
}

func (s *Server) signRelease(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	m, err := s.ra.SignRelease(r.Context(), p, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/cbor")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(m)
}
