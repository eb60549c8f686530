package server

import (
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/firmware"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// firmwareRoutes are the firmware release routes. Over the API a release signer approves as the authenticated
// principal: the operator token's name is the signer name, checked against the product line's signer list, so
// nobody approves in another signer's name (the CLI's --as exists only in local mode).
func (s *Server) firmwareRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/api/v1/firmware/releases/{id}", Roles: []string{ra.RoleAdmin, ra.RoleReleaseSigner, ra.RoleAuditor}, Handler: s.getRelease},
		{Method: "POST", Pattern: "/api/v1/firmware/releases/{id}/approve", Roles: []string{ra.RoleReleaseSigner}, Handler: s.approveRelease},
		{Method: "POST", Pattern: "/api/v1/firmware/releases/{id}/sign", Roles: []string{ra.RoleAdmin, ra.RoleReleaseSigner}, Handler: s.signRelease},
	}
}

func (s *Server) firmwareService() *firmware.Service { return s.fw }

// ReleaseView is the API form of a firmware release.
type ReleaseView struct {
	ID          string    `json:"id"`
	Environment string    `json:"environment"`
	ProductLine string    `json:"product_line"`
	Version     string    `json:"version"`
	Sequence    int64     `json:"sequence"`
	ImageSHA256 string    `json:"image_sha256"`
	ImageSize   int64     `json:"image_size"`
	Threshold   int       `json:"threshold"`
	Hybrid      bool      `json:"hybrid"`
	Status      string    `json:"status"`
	Approvers   []string  `json:"approvers"`
	CreatedAt   time.Time `json:"created_at"`
}

func releaseView(r *store.FirmwareRelease, approvals []*store.FirmwareApproval) ReleaseView {
	v := ReleaseView{ID: r.ID, Environment: r.Environment, ProductLine: r.ProductLine, Version: r.Version, Sequence: r.Sequence,
		ImageSHA256: hex.EncodeToString(r.ImageSHA256), ImageSize: r.ImageSize, Threshold: r.Threshold, Hybrid: r.Hybrid,
		Status: r.Status, Approvers: []string{}, CreatedAt: r.CreatedAt}
	for _, a := range approvals {
		v.Approvers = append(v.Approvers, a.Signer)
	}
	return v
}

// firmwareError maps firmware service errors to RA error kinds, hence HTTP statuses.
func firmwareError(err error) error {
	switch {
	case errors.Is(err, firmware.ErrNotSigner):
		return &ra.Error{Kind: ra.KindForbidden, Err: err}
	case errors.Is(err, firmware.ErrAlreadyApproved), errors.Is(err, firmware.ErrThreshold), errors.Is(err, firmware.ErrSigned), errors.Is(err, store.ErrExists):
		return &ra.Error{Kind: ra.KindConflict, Err: err}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, firmware.ErrNoTrust):
		return &ra.Error{Kind: ra.KindNotFound, Err: err}
	case errors.Is(err, firmware.ErrNoPolicy), errors.Is(err, firmware.ErrBadInput):
		return &ra.Error{Kind: ra.KindBadRequest, Err: err}
	}
	return err
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	rel, err := s.read.GetFirmwareRelease(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, firmwareError(err))
		return
	}
	approvals, err := s.read.FirmwareApprovals(r.Context(), rel.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, releaseView(rel, approvals))
}

func (s *Server) approveRelease(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	signer := strings.TrimPrefix(p.ID, "operator:")
	rel, approvals, err := s.firmwareService().Approve(r.Context(), r.PathValue("id"), signer, p.ID)
	if err != nil {
		s.fail(w, r, firmwareError(err))
		return
	}
	writeJSON(w, http.StatusOK, releaseView(rel, approvals))
}

func (s *Server) signRelease(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	m, err := s.firmwareService().Sign(r.Context(), r.PathValue("id"), p.ID)
	if err != nil {
		s.fail(w, r, firmwareError(err))
		return
	}
	w.Header().Set("Content-Type", "application/cbor")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(m)
}
