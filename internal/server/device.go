package server

// Device decommissioning over the JSON API, and the bulk revocation route extended to the device-registry
// selectors (device, station, site).

import (
	"net/http"
	"time"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// deviceRoutes are the device registry's API routes: decommissioning (admins and CA officers only, as for
// every revocation) and the forensic history (admins and auditors).
func (s *Server) deviceRoutes() []Route {
	return []Route{
		{Method: "POST", Pattern: "/api/v1/devices/{env}/{product}/{serial}/decommission",
			Roles: []string{ra.RoleAdmin, ra.RoleCAOfficer}, Handler: s.decommission},
		{Method: "GET", Pattern: "/api/v1/devices/{env}/{product}/{serial}/history",
			Roles: []string{ra.RoleAdmin, ra.RoleAuditor}, Handler: s.deviceHistory},
	}
}

// deviceHistory answers the forensic record of a device (api.History); ?at=RFC3339 adds what it held then,
// ?proofs=true the inclusion proof of each event in the newest checkpoint.
func (s *Server) deviceHistory(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var at *time.Time
	if v := r.URL.Query().Get("at"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			s.fail(w, r, ra.FieldErrorf(ra.KindBadRequest, "at", "at=%.40q: use RFC 3339, e.g. 2031-03-14T15:09:26Z", v))
			return
		}
		at = &t
	}
	h, err := s.ra.DeviceHistory(r.Context(), p, ra.DeviceRef{Environment: r.PathValue("env"), ProductLine: r.PathValue("product"), Serial: r.PathValue("serial")}, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := api.NewHistory(h)
	switch v := r.URL.Query().Get("proofs"); v {
	case "", "false":
	case "true":
		if out.Proofs, err = s.ra.HistoryProofs(r.Context(), p, h, nil); err != nil {
			s.fail(w, r, err)
			return
		}
	default:
		s.fail(w, r, ra.FieldErrorf(ra.KindBadRequest, "proofs", "proofs=%.20q: true or false", v))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// DecommissionRequest is the body of POST /api/v1/devices/{env}/{product}/{serial}/decommission.
type DecommissionRequest struct {
	// AttestedBy names who attests that the device's keys were destroyed; required.
	AttestedBy string `json:"attested_by" required:"true" hint:"who attests that the device's keys were destroyed"`
}

// decommission retires a device: 200 with an ra.DecommissionResult; 409 if it is decommissioned already; 404
// for a device not in the registry.
func (s *Server) decommission(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var req DecommissionRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.ra.Decommission(r.Context(), p, ra.DecommissionRequest{
		Device:     ra.DeviceRef{Environment: r.PathValue("env"), ProductLine: r.PathValue("product"), Serial: r.PathValue("serial")},
		AttestedBy: req.AttestedBy,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// BulkRevokeByRegistryRequest is the body of POST /api/v1/revocations: BulkRevokeRequest's selectors, plus
// the device registry's: "device" (a serial), "station" (a station id) or "site", narrowed by "environment"
// and "product_line". All given selectors must match.
type BulkRevokeByRegistryRequest struct {
	BulkRevokeRequest
	ra.RegistrySelector
}

func (s *Server) bulkRevokeByRegistry(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var req BulkRevokeByRegistryRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	code, err := ra.ParseReason(req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := store.CertQuery{IssuerIDs: req.Issuers, Profile: req.Profile, Subject: req.Subject}
	if req.IssuedFrom != nil {
		q.IssuedFrom = *req.IssuedFrom
	}
	if req.IssuedTo != nil {
		q.IssuedTo = *req.IssuedTo
	}
	res, err := s.ra.Bulk(r.Context(), p, ra.BulkRequest{Query: q, Registry: req.RegistrySelector, Reason: code, InvalidityDate: req.InvalidityDate, DryRun: req.DryRun})
	if err != nil {
		s.fail(w, r, err) // a partial bulk revocation names how far it got in the error
		return
	}
	writeJSON(w, http.StatusOK, res)
}
