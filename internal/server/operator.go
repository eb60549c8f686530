package server

// The operator routes for what the CLI alone did before: factory stations, token creation, firmware release
// creation and listing, the device registry, certificate histories and the upload of a factory export for
// reconciliation; and the OpenAPI document that describes every operator route. Each handler calls the RA
// method (or the factory pipeline) the CLI command calls, so the decision, its authorisation and its audit
// event are the same whichever face asked; the route's roles only refuse earlier.

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/factory"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// Upload bounds: a firmware image, and a factory export (a batch of a million credentials is about 1 GB).
const (
	maxImage  = 1 << 30
	maxExport = 4 << 30
	// uploadTime is how long an upload may take to arrive, in place of the server's read and write timeouts.
	uploadTime = time.Hour
)

func (s *Server) operatorRoutes() []Route {
	operators := []string{ra.RoleAdmin, ra.RoleCAOfficer, ra.RoleAuditor}
	// The roles of each route are those the RA method it calls allows (internal/ra): a route refuses earlier,
	// never more widely.
	stationAdmins := []string{ra.RoleAdmin, ra.RoleCAOfficer}
	deviceAdmins := []string{ra.RoleAdmin, ra.RoleCAOfficer}
	routes := []Route{
		{Method: "GET", Pattern: "/api/v1/openapi.json", Public: true, Handler: s.openAPI},
		{Method: "GET", Pattern: "/api/v1/stations", Roles: operators, Handler: s.listStations},
		{Method: "POST", Pattern: "/api/v1/stations", Roles: stationAdmins, Handler: s.addStation},
		{Method: "POST", Pattern: "/api/v1/tokens", Roles: []string{ra.RoleAdmin}, Handler: s.createToken},
		{Method: "GET", Pattern: "/api/v1/firmware/releases", Roles: []string{ra.RoleAdmin, ra.RoleReleaseSigner, ra.RoleAuditor}, Handler: s.listReleases},
		{Method: "POST", Pattern: "/api/v1/firmware/releases", Roles: []string{ra.RoleAdmin, ra.RoleReleaseSigner}, Handler: s.createRelease, MaxBody: maxImage},
		{Method: "GET", Pattern: "/api/v1/devices", Roles: operators, Handler: s.listDevices},
		{Method: "GET", Pattern: "/api/v1/certificates/{serial}/history", Roles: []string{ra.RoleAdmin, ra.RoleAuditor}, Handler: s.certHistory},
		{Method: "POST", Pattern: "/api/v1/factory/exports", Roles: []string{ra.RoleAdmin, ra.RoleCAOfficer}, Handler: s.reconcileExport, MaxBody: maxExport},
	}
	for _, st := range []string{store.StationSuspended, store.StationActive, store.StationRevoked} {
		routes = append(routes, Route{Method: "POST", Pattern: "/api/v1/stations/{id}/" + stationVerb(st), Roles: stationAdmins, Handler: s.stationState(st)})
	}
	for _, a := range []ra.DeviceAction{ra.Suspend, ra.Resume, ra.AllowReprovision, ra.ForceRenew} {
		routes = append(routes, Route{Method: "POST", Pattern: "/api/v1/devices/{env}/{product}/{serial}/" + string(a), Roles: deviceAdmins, Handler: s.deviceAction(a)})
	}
	return routes
}

// stationVerb is the route's verb that puts a station in state.
func stationVerb(state string) string {
	switch state {
	case store.StationSuspended:
		return "suspend"
	case store.StationActive:
		return "resume"
	}
	return "revoke"
}

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request, _ ra.Principal) {
	doc, err := api.OpenAPIJSON()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal error; see the server log")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}

func (s *Server) listStations(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	list, err := s.read.ListStations(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]api.Station, 0, len(list))
	for _, st := range list {
		out = append(out, api.NewStation(st))
	}
	writeJSON(w, http.StatusOK, out)
}

// StationRequest is the body of POST /api/v1/stations.
type StationRequest struct {
	Environment  string     `json:"environment" required:"true"`
	Site         string     `json:"site" required:"true"`
	ProductLines []string   `json:"product_lines" required:"true"`
	Name         string     `json:"name,omitempty"`
	Quota        int64      `json:"quota,omitempty"`
	ValidUntil   *time.Time `json:"valid_until,omitempty"`
}

func (s *Server) addStation(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var req StationRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	// The trust anchor first, as 'keyward station add' does: a station that cannot validate the server is of
	// no use.
	svc, err := s.ra.ServiceCA(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	o := ra.StationRequest{Environment: req.Environment, Site: req.Site, ProductLines: req.ProductLines, Name: req.Name, Quota: req.Quota}
	if req.ValidUntil != nil {
		o.ValidUntil = req.ValidUntil.UTC()
	}
	cred, err := s.ra.AddStation(r.Context(), p, o)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // the station's private key
	writeJSON(w, http.StatusCreated, api.StationCredentials{Station: api.NewStation(cred.Station), CertificatePEM: string(cred.CertPEM),
		KeyPEM: string(cred.KeyPEM()), TrustPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: svc.CertDER}))})
}

func (s *Server) stationState(state string) func(http.ResponseWriter, *http.Request, ra.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p ra.Principal) {
		st, err := s.ra.SetStationState(r.Context(), p, r.PathValue("id"), state)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, api.NewStation(st))
	}
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Name string `json:"name" required:"true"`
	Role string `json:"role" required:"true"`
	// Expires is a validity ("90d", "720h", "1y") or "never"; 90 days if absent.
	Expires string `json:"expires,omitempty"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var req TokenRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	o := ra.TokenRequest{Name: req.Name, Role: req.Role}
	switch req.Expires {
	case "":
	case "never":
		o.NeverExpires = true
	default:
		d, err := hierarchy.ParseDuration(req.Expires)
		if err != nil {
			s.fail(w, r, ra.FieldErrorf(ra.KindBadRequest, "expires", "expires %.40q: %v, or never", req.Expires, err))
			return
		}
		o.ValidFor = d
	}
	now := s.ra.Now()
	tok, err := s.ra.CreateToken(r.Context(), p, o)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := api.NewTokenSecret{Token: tok, Name: o.Name, Role: o.Role}
	if !o.NeverExpires {
		v := o.ValidFor
		if v == 0 {
			v = ra.DefaultTokenValidity
		}
		exp := now.Add(v).UTC()
		out.ExpiresAt = &exp
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	q := r.URL.Query()
	rs, err := s.read.ListFirmwareReleases(r.Context(), q.Get("environment"), q.Get("product_line"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]api.FirmwareRelease, 0, len(rs))
	for _, rel := range rs {
		as, err := s.read.FirmwareApprovals(r.Context(), rel.ID)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out = append(out, api.NewFirmwareRelease(rel, as))
	}
	writeJSON(w, http.StatusOK, out)
}

// upload gives a request that carries a file the time to arrive, in place of the server's read and write
// timeouts, and refuses a body that is not application/octet-stream.
func upload(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
		return ra.FieldErrorf(ra.KindBadRequest, "Content-Type", "Content-Type %.60q: the body is the file itself, sent as application/octet-stream", ct)
	}
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(uploadTime)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)
	return nil
}

// query reads the query parameters of a route that takes a body of its own, refusing unknown and repeated ones.
func query(r *http.Request, known ...string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		if !contains(known, k) {
			return nil, ra.FieldErrorf(ra.KindBadRequest, k, "unknown query parameter %.40q (parameters: %s)", k, strings.Join(known, ", "))
		}
		if len(v) != 1 {
			return nil, ra.FieldErrorf(ra.KindBadRequest, k, "query parameter %q given %d times", k, len(v))
		}
		out[k] = v[0]
	}
	return out, nil
}

// required returns q[name], refusing an empty one.
func required(q map[string]string, name string) (string, error) {
	if q[name] == "" {
		return "", ra.FieldErrorf(ra.KindBadRequest, name, "query parameter %q is required", name)
	}
	return q[name], nil
}

// createRelease records a draft release of the image in the body (POST /api/v1/firmware/releases
// ?environment=E&product_line=P&version=V[&min_bootloader=B]), hashed as it streams in.
func (s *Server) createRelease(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	if err := upload(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	q, err := query(r, "environment", "product_line", "version", "min_bootloader")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req := ra.FirmwareReleaseRequest{Environment: q["environment"], MinBootloader: q["min_bootloader"], Image: bodyReader{r.Body}}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"environment", &req.Environment}, {"product_line", &req.ProductLine}, {"version", &req.Version}} {
		if *f.dst, err = required(q, f.name); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	rel, err := s.ra.CreateRelease(r.Context(), p, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/firmware/releases/"+rel.ID)
	writeJSON(w, http.StatusCreated, api.NewFirmwareRelease(rel, nil))
}

// bodyReader turns a body over its route's limit into a bad request that says so.
type bodyReader struct{ r io.Reader }

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return n, ra.Errorf(ra.KindBadRequest, "request body is larger than %d bytes", mbe.Limit)
	}
	return n, err
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	q, err := query(r, "environment", "product_line", "serial", "state", "station", "site", "hardware_serial", "limit")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f := store.DeviceFilter{Environment: q["environment"], ProductLine: q["product_line"], Serial: q["serial"], State: q["state"], StationID: q["station"],
		Site: q["site"], HardwareSerial: q["hardware_serial"], Limit: 1000}
	if v := q["limit"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			s.fail(w, r, ra.FieldErrorf(ra.KindBadRequest, "limit", "limit must be a number from 1 to 10000"))
			return
		}
		f.Limit = n
	}
	list, err := s.read.ListDevices(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]api.Device, 0, len(list))
	for _, d := range list {
		out = append(out, api.NewDevice(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deviceAction(a ra.DeviceAction) func(http.ResponseWriter, *http.Request, ra.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p ra.Principal) {
		ref := ra.DeviceRef{Environment: r.PathValue("env"), ProductLine: r.PathValue("product"), Serial: r.PathValue("serial")}
		d, err := s.ra.ApplyDeviceAction(r.Context(), p, ref, a)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, api.NewDevice(d))
	}
}

// certHistory answers the forensic record of the device a certificate was issued to, as
// 'keyward cert history' prints it; ?at=RFC3339 adds what it held then.
func (s *Server) certHistory(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var at *time.Time
	if v := r.URL.Query().Get("at"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			s.fail(w, r, ra.FieldErrorf(ra.KindBadRequest, "at", "at=%.40q: use RFC 3339, e.g. 2031-03-14T15:09:26Z", v))
			return
		}
		at = &t
	}
	h, _, err := s.ra.CertificateHistory(r.Context(), p, r.PathValue("serial"), at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewHistory(h))
}

// reconcileExport reconciles a site export (.kwx) uploaded as the body (POST /api/v1/factory/exports
// [?environment=E][&site=S][&final=true][&attested_by=NAME]), as 'keyward factory reconcile' does with a file:
// the export is spooled to a temporary file (reconciliation reads it twice, in constant memory), verified in
// full and recorded in one transaction. There is no site HSM over the API: a final export's unused keys are
// recorded destroyed on the word of attested_by.
func (s *Server) reconcileExport(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	if err := upload(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	q, err := query(r, "environment", "site", "final", "attested_by")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req := factory.ReconcileRequest{Env: q["environment"], Site: q["site"], AttestedBy: q["attested_by"]}
	switch q["final"] {
	case "", "false":
	case "true":
		req.Final = true
	default:
		s.fail(w, r, ra.FieldErrorf(ra.KindBadRequest, "final", "final=%.20q: true or false", q["final"]))
		return
	}
	name, err := spool(r.Context(), r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer func() { _ = os.Remove(name) }()
	req.Files = []string{name}
	f := &factory.Factory{RA: s.ra, Principal: p}
	res, err := f.Reconcile(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := res[0]
	out.File = "upload"
	writeJSON(w, http.StatusOK, out)
}

// spool copies an upload to a temporary file only this process reads, and returns its name.
func spool(ctx context.Context, body io.Reader) (string, error) {
	f, err := os.CreateTemp("", "keyward-export-*.kwx")
	if err != nil {
		return "", fmt.Errorf("spool the upload: %w", err)
	}
	_, err = io.Copy(f, bodyReader{body})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
