package console

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// home is the first page a role may see.
func home(role string) string {
	if role == ra.RoleReleaseSigner {
		return Prefix + "/firmware"
	}
	return Prefix + "/"
}

// done maps the ?done= codes that a change redirects with to the notice shown; nothing the caller writes is
// echoed.
var done = map[string]string{
	"revoked":   "Certificate revoked.",
	"approved":  "Approval recorded.",
	"suspended": "Station suspended.",
	"resumed":   "Station resumed.",
}

// ---- sign-in ----

type loginData struct {
	CSRF   string
	Notice string
	Error  string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request, _ *session) {
	if s, _ := c.sessions.get(r, c.now()); s != nil && c.checkToken(r, s) == nil {
		http.Redirect(w, r, home(s.p.Role), http.StatusSeeOther)
		return
	}
	d := loginData{CSRF: random(32)}
	if r.URL.Query().Get("ended") != "" {
		d.Notice = "Your session ended (it expired, you signed out, or its token was revoked): sign in again."
	}
	http.SetCookie(w, cookie(LoginCookie, d.CSRF, int(loginTTL.Seconds())))
	c.render(w, r, http.StatusOK, "login", nil, "Sign in", d)
}

// errLoginCSRF is why a sign-in form without its CSRF cookie is refused (a forged or stale sign-in).
var errLoginCSRF = ra.Errorf(ra.KindForbidden, "the sign-in form's CSRF token is missing or does not match: reload the sign-in page")

func (c *Console) login(w http.ResponseWriter, r *http.Request, _ *session) {
	rt := Route{Method: "POST", Pattern: "/login"}
	if c.d.Limited != nil && c.d.Limited(w, r) {
		return
	}
	ck, err := r.Cookie(LoginCookie)
	if !sameOrigin(r) {
		c.refuse(w, r, rt, ra.Principal{}, RefusalOrigin, errOrigin)
		return
	}
	if err != nil || !validCSRF(r.PostFormValue("csrf"), ck.Value) {
		c.refuse(w, r, rt, ra.Principal{}, RefusalCSRF, errLoginCSRF)
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	var at ra.AuthenticatedToken
	if tok == "" {
		err = ra.Errorf(ra.KindUnauthorized, "no operator token given: paste the token 'keyward token create' printed")
	} else {
		at, err = c.ra.AuthenticateToken(r.Context(), tok)
	}
	if err != nil {
		c.ra.RefuseAuth(r.Context(), ra.AuthRefusal{Source: sourceOf(r), Method: rt.Method, Route: Prefix + rt.Pattern, Err: err})
		if c.d.Refused != nil {
			c.d.Refused(r, err)
		}
		status, msg := http.StatusUnauthorized, "the operator token was refused: "+err.Error()
		if ra.KindOf(err) == ra.KindUnavailable {
			c.log.ErrorContext(r.Context(), "console sign-in", "err", err)
			status, msg = http.StatusServiceUnavailable, "cannot check the operator token now; see the server log"
		}
		d := loginData{CSRF: random(32), Error: msg}
		http.SetCookie(w, cookie(LoginCookie, d.CSRF, int(loginTTL.Seconds())))
		c.render(w, r, status, "login", nil, "Sign in", d)
		return
	}
	p := at.Principal
	name, ok := strings.CutPrefix(p.ID, "operator:")
	if !ok || !slices.Contains(ra.OperatorRoles, p.Role) {
		err := ra.Errorf(ra.KindForbidden, "role %q may not use the console (operator roles: %s)", p.Role, strings.Join(ra.OperatorRoles, ", "))
		c.refuse(w, r, rt, p, ra.AuthForbiddenRole, err)
		return
	}
	s, id := c.sessions.create(p, name, at.ID, c.now())
	if c.d.Authenticated != nil {
		c.d.Authenticated(r, p)
	}
	c.log.InfoContext(r.Context(), "console sign-in", "actor", audit.Bound(p.ID, audit.MaxDetail), "role", p.Role, "remote", sourceOf(r))
	http.SetCookie(w, cookie(SessionCookie, id, int(c.d.Lifetime.Seconds())))
	http.SetCookie(w, cookie(LoginCookie, "", -1))
	http.Redirect(w, r, home(s.p.Role), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.sessions.end(s)
	http.SetCookie(w, cookie(SessionCookie, "", -1))
	http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
}

// ---- dashboard ----

// caNode is a CA in the tree, with the CAs it certified.
type caNode struct {
	CA       *store.CA
	DaysLeft int
	Children []*caNode
}

type envTree struct {
	Environment string
	Roots       []*caNode
}

type crlRow struct {
	CA            string
	Complete      *store.PublishedCRL
	Delta         *store.PublishedCRL
	Age           string
	Fresh         bool
	Never         bool
	NextUpdateDue string
}

type dashboardData struct {
	Trees        []envTree
	Issuance     template.HTML
	IssuanceDays template.HTML
	Expiring     template.HTML
	Totals       rateTotals
	CRLs         []crlRow
	Head         int64
	HeadHash     []byte
	Checkpoint   *store.Checkpoint
	CheckpointAg string
	Behind       int64
	Now          time.Time
}

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, s *session) {
	if !slices.Contains(readers, s.p.Role) {
		http.Redirect(w, r, home(s.p.Role), http.StatusSeeOther)
		return
	}
	ctx := r.Context()
	now := c.ra.Now()
	cas, err := c.read.ListCAs(ctx)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := dashboardData{Trees: caTree(cas, now), Now: now}
	rates, err := c.charts.rates(ctx, now)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d.Issuance, d.IssuanceDays, d.Totals = rates.hourlyChart(), rates.dailyChart(), rates.totals
	exp, err := c.charts.expiring(ctx, now)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d.Expiring = exp
	for _, ca := range cas {
		if ca.Status == store.CAStatusRetired || ca.Kind == store.CAKindService {
			continue
		}
		row := crlRow{CA: ca.ID}
		if row.Complete, err = c.read.LatestCRL(ctx, ca.ID, false); err != nil && !errors.Is(err, store.ErrNotFound) {
			c.fail(w, r, s, err)
			return
		}
		if row.Delta, err = c.read.LatestCRL(ctx, ca.ID, true); err != nil && !errors.Is(err, store.ErrNotFound) {
			c.fail(w, r, s, err)
			return
		}
		latest := row.Complete
		if row.Delta != nil && (latest == nil || row.Delta.ThisUpdate.After(latest.ThisUpdate)) {
			latest = row.Delta
		}
		if latest == nil {
			row.Never = true
		} else {
			row.Age = ago(now.Sub(latest.ThisUpdate))
			row.Fresh = now.Before(latest.NextUpdate)
			row.NextUpdateDue = until(latest.NextUpdate.Sub(now))
		}
		d.CRLs = append(d.CRLs, row)
	}
	if d.Head, d.HeadHash, err = c.read.AuditHead(ctx); err != nil {
		c.fail(w, r, s, err)
		return
	}
	cp, err := c.read.LatestCheckpoint(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, s, err)
		return
	}
	if cp != nil {
		d.Checkpoint, d.CheckpointAg, d.Behind = cp, ago(now.Sub(cp.CreatedAt)), d.Head-cp.Size
	}
	c.render(w, r, http.StatusOK, "dashboard", s, "Dashboard", d)
}

// caTree arranges CAs as environment → root → the CAs each certified, environments in the order dev, staging,
// production, then others.
func caTree(cas []*store.CA, now time.Time) []envTree {
	nodes := map[string]*caNode{}
	for _, ca := range cas {
		nodes[ca.ID] = &caNode{CA: ca, DaysLeft: int(ca.NotAfter.Sub(now).Hours() / 24)}
	}
	byEnv := map[string][]*caNode{}
	for _, ca := range cas {
		n := nodes[ca.ID]
		if p := nodes[ca.ParentID]; ca.ParentID != "" && p != nil {
			p.Children = append(p.Children, n)
			continue
		}
		env := ca.Environment
		if env == "" {
			env = "service"
		}
		byEnv[env] = append(byEnv[env], n)
	}
	rank := func(e string) int {
		if i := slices.Index([]string{"dev", "staging", "production"}, e); i >= 0 {
			return i
		}
		return 3
	}
	envs := make([]string, 0, len(byEnv))
	for e := range byEnv {
		envs = append(envs, e)
	}
	sort.Slice(envs, func(i, j int) bool {
		if rank(envs[i]) != rank(envs[j]) {
			return rank(envs[i]) < rank(envs[j])
		}
		return envs[i] < envs[j]
	})
	out := make([]envTree, 0, len(envs))
	for _, e := range envs {
		out = append(out, envTree{Environment: e, Roots: byEnv[e]})
	}
	return out
}

func ago(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return roundDuration(d) + " ago"
}

func until(d time.Duration) string {
	if d < 0 {
		return "overdue by " + roundDuration(-d)
	}
	return "in " + roundDuration(d)
}

func roundDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// ---- certificates ----

type certsData struct {
	Q, Profile, Status, Issuer string
	Limit                      int
	Certs                      []*store.Certificate
	Searched                   bool
	Error                      string
	Profiles                   []string
	Issuers                    []string
}

var certStatuses = []string{store.CertStatusValid, store.CertStatusRevoked, store.CertStatusSuperseded}

func (c *Console) certificates(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	q := r.URL.Query()
	d := certsData{Q: strings.TrimSpace(q.Get("q")), Profile: q.Get("profile"), Status: q.Get("status"), Issuer: q.Get("issuer"), Limit: 50}
	for name := range c.ra.Profiles() {
		d.Profiles = append(d.Profiles, name)
	}
	sort.Strings(d.Profiles)
	if cas, err := c.read.ListCAs(ctx); err == nil {
		for _, ca := range cas {
			d.Issuers = append(d.Issuers, ca.ID)
		}
	}
	status := http.StatusOK
	bad := func(format string, args ...any) {
		d.Error, status = fmt.Sprintf(format, args...), http.StatusBadRequest
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			bad("limit=%.20q: a number from 1 to 1000", v)
		}
		d.Limit = n
	}
	if d.Status != "" && !slices.Contains(certStatuses, d.Status) {
		bad("status=%.20q: one of %s", d.Status, strings.Join(certStatuses, ", "))
	}
	if d.Profile != "" && !slices.Contains(d.Profiles, d.Profile) {
		bad("profile=%.40q: no such profile (profiles: %s)", d.Profile, strings.Join(d.Profiles, ", "))
	}
	if len(d.Q) > 512 {
		bad("the search text is longer than 512 characters")
	}
	if d.Error == "" {
		d.Searched = true
		if isSerial(d.Q) {
			if cert, err := c.ra.GetCertificate(ctx, d.Q); err == nil {
				http.Redirect(w, r, Prefix+"/certificates/"+url.PathEscape(cert.Serial), http.StatusSeeOther)
				return
			}
		}
		f := store.CertFilter{Profile: d.Profile, Status: d.Status, IssuerID: d.Issuer, Limit: d.Limit}
		if d.Q != "" {
			f.Subject = d.Q
			if !strings.Contains(d.Q, "=") {
				f.Subject = "CN=" + d.Q
			}
		}
		certs, err := c.read.ListCertificates(ctx, f)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		d.Certs = certs
	}
	c.render(w, r, status, "certificates", s, "Certificates", d)
}

// isSerial reports whether q looks like a certificate serial (hex, with or without colons).
func isSerial(q string) bool {
	q = strings.ReplaceAll(q, ":", "")
	if len(q) < 8 || len(q) > 64 {
		return false
	}
	for _, ch := range strings.ToLower(q) {
		if (ch < '0' || ch > '9') && (ch < 'a' || ch > 'f') {
			return false
		}
	}
	return true
}

type certData struct {
	Cert      *store.Certificate
	PEM       string
	CanRevoke bool
	Reasons   []string
	Notice    string
	Device    string // the device page of its subject, if the registry holds it and the role may read it
}

func (c *Console) certificate(w http.ResponseWriter, r *http.Request, s *session) {
	cert, err := c.ra.GetCertificate(r.Context(), r.PathValue("serial"))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := certData{Cert: cert, PEM: pemOf(cert.DER), Notice: done[r.URL.Query().Get("done")], Reasons: reasonNames()}
	d.CanRevoke = slices.Contains(revokers, s.p.Role) && cert.Status == store.CertStatusValid
	if slices.Contains(historians, s.p.Role) {
		if cn, ok := strings.CutPrefix(cert.Subject, "CN="); ok && !strings.Contains(cn, ",") {
			if devs, err := c.read.ListDevices(r.Context(), store.DeviceFilter{Serial: cn, Limit: 2}); err == nil && len(devs) == 1 {
				dv := devs[0]
				d.Device = Prefix + "/devices/" + url.PathEscape(dv.Environment) + "/" + url.PathEscape(dv.ProductLine) + "/" + url.PathEscape(dv.Serial)
			}
		}
	}
	c.render(w, r, http.StatusOK, "certificate", s, "Certificate "+cert.Serial, d)
}

func reasonNames() []string {
	out := make([]string, 0, len(store.Reasons))
	for n := range store.Reasons {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return store.Reasons[out[i]] < store.Reasons[out[j]] })
	return out
}

type confirmData struct {
	Cert   *store.Certificate
	Reason string
}

// revoke is a two-step form: the first POST (reason only) shows what will be revoked and asks to confirm; the
// second (confirm = the serial) revokes through the RA, as POST /api/v1/certificates/{serial}/revoke does.
func (c *Console) revoke(w http.ResponseWriter, r *http.Request, s *session) {
	serial := r.PathValue("serial")
	reason := r.PostFormValue("reason")
	if reason == "" {
		c.fail(w, r, s, ra.FieldErrorf(ra.KindBadRequest, "reason", "choose a revocation reason (an RFC 5280 CRLReason such as keyCompromise); nothing was changed"))
		return
	}
	code, err := ra.ParseReason(reason)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	cert, err := c.ra.GetCertificate(r.Context(), serial)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if confirm := r.PostFormValue("confirm"); confirm != cert.Serial {
		if confirm != "" {
			c.fail(w, r, s, ra.FieldErrorf(ra.KindBadRequest, "confirm", "the confirmation names another certificate than %s; nothing was changed", cert.Serial))
			return
		}
		c.render(w, r, http.StatusOK, "confirm", s, "Confirm revocation", confirmData{Cert: cert, Reason: store.ReasonName(code)})
		return
	}
	if _, err := c.ra.Revoke(r.Context(), s.p, ra.RevokeRequest{Serial: cert.Serial, Reason: code}); err != nil {
		c.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, Prefix+"/certificates/"+url.PathEscape(cert.Serial)+"?done=revoked", http.StatusSeeOther)
}

// ---- devices ----

type devicesData struct {
	Env, Product, Serial, State, Site string
	Devices                           []*store.Device
	Error                             string
}

var deviceStates = []string{store.DeviceActive, store.DeviceSuspended, store.DeviceDecommissioned}

func (c *Console) devices(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := devicesData{Env: q.Get("env"), Product: q.Get("product"), Serial: strings.TrimSpace(q.Get("serial")), State: q.Get("state"), Site: q.Get("site")}
	status := http.StatusOK
	if d.State != "" && !slices.Contains(deviceStates, d.State) {
		d.Error, status = fmt.Sprintf("state=%.20q: one of %s", d.State, strings.Join(deviceStates, ", ")), http.StatusBadRequest
	} else {
		list, err := c.read.ListDevices(r.Context(), store.DeviceFilter{Environment: d.Env, ProductLine: d.Product, Serial: d.Serial, State: d.State, Site: d.Site, Limit: 200})
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		d.Devices = list
	}
	c.render(w, r, status, "devices", s, "Devices", d)
}

type deviceData struct {
	H *ra.History
}

func (c *Console) device(w http.ResponseWriter, r *http.Request, s *session) {
	ref := ra.DeviceRef{Environment: r.PathValue("env"), ProductLine: r.PathValue("product"), Serial: r.PathValue("serial")}
	h, err := c.ra.DeviceHistory(r.Context(), s.p, ref, nil)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "device", s, "Device "+h.Device.Serial, deviceData{H: h})
}

// ---- firmware ----

type releaseRow struct {
	R          *store.FirmwareRelease
	Approvers  []string
	CanApprove bool
}

type firmwareData struct {
	Releases []releaseRow
	Signer   string
	Notice   string
}

func (c *Console) firmware(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	rels, err := c.read.ListFirmwareReleases(ctx, "", "")
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := firmwareData{Notice: done[r.URL.Query().Get("done")]}
	if s.p.Role == ra.RoleReleaseSigner {
		d.Signer = strings.TrimPrefix(s.p.ID, "operator:")
	}
	// Drafts first (the queue), then approved, then signed; newest first within each.
	rank := map[string]int{store.FirmwareDraft: 0, store.FirmwareApproved: 1, store.FirmwareSigned: 2}
	sort.SliceStable(rels, func(i, j int) bool {
		if rank[rels[i].Status] != rank[rels[j].Status] {
			return rank[rels[i].Status] < rank[rels[j].Status]
		}
		return rels[i].CreatedAt.After(rels[j].CreatedAt)
	})
	for _, rel := range rels {
		apps, err := c.read.FirmwareApprovals(ctx, rel.ID)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		row := releaseRow{R: rel}
		for _, a := range apps {
			row.Approvers = append(row.Approvers, a.Signer)
		}
		row.CanApprove = d.Signer != "" && rel.Status != store.FirmwareSigned && !slices.Contains(row.Approvers, d.Signer)
		d.Releases = append(d.Releases, row)
	}
	c.render(w, r, http.StatusOK, "firmware", s, "Firmware releases", d)
}

// approve records the signed-in release signer's approval, as POST /api/v1/firmware/releases/{id}/approve does:
// the RA takes the signer's name from the session's token, never from the form.
func (c *Console) approve(w http.ResponseWriter, r *http.Request, s *session) {
	if _, _, err := c.ra.ApproveRelease(r.Context(), s.p, r.PathValue("id"), ""); err != nil {
		c.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, Prefix+"/firmware?done=approved", http.StatusSeeOther)
}

// ---- stations ----

type stationsData struct {
	Stations  []*store.Station
	CanChange bool
	Notice    string
}

func (c *Console) stations(w http.ResponseWriter, r *http.Request, s *session) {
	list, err := c.read.ListStations(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := stationsData{Stations: list, CanChange: slices.Contains(revokers, s.p.Role), Notice: done[r.URL.Query().Get("done")]}
	c.render(w, r, http.StatusOK, "stations", s, "Stations", d)
}

// stationAction suspends or resumes a station through the RA ('keyward station suspend|resume').
func (c *Console) stationAction(w http.ResponseWriter, r *http.Request, s *session) {
	var state, notice string
	switch r.PathValue("action") {
	case "suspend":
		state, notice = store.StationSuspended, "suspended"
	case "resume":
		state, notice = store.StationActive, "resumed"
	default:
		c.fail(w, r, s, ra.Errorf(ra.KindNotFound, "no station action %.20q: suspend or resume", r.PathValue("action")))
		return
	}
	if _, err := c.ra.SetStationState(r.Context(), s.p, r.PathValue("id"), state); err != nil {
		c.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, Prefix+"/stations?done="+notice, http.StatusSeeOther)
}
