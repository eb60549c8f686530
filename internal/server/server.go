package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/metrics"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// Deps are what the server needs: the RA, which authenticates, decides and records every change (firmware
// releases included) and offers the read-only store for listings.
type Deps struct {
	RA     *ra.RA
	Logger *slog.Logger
	// RateLimit bounds the requests refused before or at authentication that one source address may make
	// (ratelimit.go); the zero Rate sets no limit. 'keyward serve' defaults to DefaultRate.
	RateLimit Rate
	// Checks are readiness checks beside the RA's own (ra.RA.Readiness): the CRL publisher's freshness where
	// this process runs one. /readyz reports them all.
	Checks []func(context.Context) ra.Check
	// Metrics, if set, counts every request and serves /metrics to admins and auditors.
	Metrics *metrics.Metrics
}

// Server serves the API of one node.
type Server struct {
	ra      *ra.RA
	read    store.Reader
	log     *slog.Logger
	routes  []Route
	mux     *http.ServeMux
	limit   limiterRef // holds nil for no rate limit
	checks  []func(context.Context) ra.Check
	metrics *metrics.Metrics
	// readiness caches /readyz (health.go).
	readiness readiness
}

// Route is one registered route. Public routes need no credentials; every other route requires a principal whose
// role is in Roles.
type Route struct {
	Method  string
	Pattern string
	Public  bool
	// ClientCert routes authenticate by TLS client certificate (factory stations, devices; see mtls.go)
	// instead of an operator token, and answer errors in text/plain (EST, RFC 7030).
	ClientCert bool
	Roles      []string
	Handler    func(w http.ResponseWriter, r *http.Request, p ra.Principal)
	// MaxBody, if set, replaces maxBody for a route that takes an upload (a firmware image, a factory export).
	MaxBody int64
}

// anonymous is the principal of a public route's caller.
const anonymous = "anonymous"

// maxBody bounds every request body: a CSR is at most 64 KiB, and JSON wraps it in base64 or PEM.
const maxBody = 128 << 10

func newServer(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = d.RA.Logger()
	}
	s := &Server{ra: d.RA, read: d.RA.Reader(), log: d.Logger, mux: http.NewServeMux(), checks: d.Checks, metrics: d.Metrics}
	s.SetRateLimit(d.RateLimit)
	return s
}

// New returns the server of a data directory: the operator API, EST, revocation, devices and firmware.
func New(d Deps) *Server {
	s := newServer(d)
	operators := []string{ra.RoleAdmin, ra.RoleCAOfficer, ra.RoleAuditor}
	issuers := []string{ra.RoleAdmin, ra.RoleCAOfficer}
	s.routes = []Route{
		{Method: "GET", Pattern: "/healthz", Public: true, Handler: s.health},
		{Method: "GET", Pattern: "/livez", Public: true, Handler: s.livez},
		{Method: "GET", Pattern: "/readyz", Public: true, Handler: s.readyz},
		{Method: "GET", Pattern: "/api/v1/cas", Roles: operators, Handler: s.listCAs},
		{Method: "GET", Pattern: "/api/v1/cas/{env}/chain", Roles: operators, Handler: s.chain},
		{Method: "POST", Pattern: "/api/v1/certificates", Roles: issuers, Handler: s.issue},
		{Method: "GET", Pattern: "/api/v1/certificates", Roles: operators, Handler: s.listCerts},
		{Method: "GET", Pattern: "/api/v1/certificates/{serial}", Roles: operators, Handler: s.getCert},
		{Method: "GET", Pattern: "/api/v1/keys", Roles: operators, Handler: s.listKeys},
		{Method: "GET", Pattern: "/api/v1/audit", Roles: []string{ra.RoleAdmin, ra.RoleAuditor}, Handler: s.listAudit},
		{Method: "GET", Pattern: "/api/v1/tokens", Roles: []string{ra.RoleAdmin, ra.RoleAuditor}, Handler: s.listTokens},
		{Method: "POST", Pattern: "/api/v1/tokens/{name}/revoke", Roles: []string{ra.RoleAdmin}, Handler: s.revokeToken},
	}
	if s.metrics != nil {
		s.routes = append(s.routes, Route{Method: "GET", Pattern: "/metrics", Roles: []string{ra.RoleAdmin, ra.RoleAuditor}, Handler: s.serveMetrics})
	}
	s.routes = append(s.routes, s.estRoutes()...)
	s.routes = append(s.routes, s.revocationRoutes()...)
	s.routes = append(s.routes, s.deviceRoutes()...)
	s.routes = append(s.routes, s.firmwareRoutes()...)
	s.routes = append(s.routes, s.operatorRoutes()...)
	for _, rt := range s.routes {
		s.mux.Handle(rt.Method+" "+rt.Pattern, s.wrap(rt))
	}
	s.mountConsole() // the web console at /console/ (console.go)
	return s
}

// NewSite returns the server of a factory site's data directory ('keyward factory serve'): health and the EST
// routes only. There is no operator API at a site: stations, quotas and site CAs are managed at headquarters,
// and the site's RA issues only by EST enrollment (ra.SiteScope).
func NewSite(d Deps) *Server {
	s := newServer(d)
	s.routes = []Route{{Method: "GET", Pattern: "/healthz", Public: true, Handler: s.health},
		{Method: "GET", Pattern: "/livez", Public: true, Handler: s.livez},
		{Method: "GET", Pattern: "/readyz", Public: true, Handler: s.readyz}}
	s.routes = append(s.routes, s.estRoutes()...)
	for _, rt := range s.routes {
		s.mux.Handle(rt.Method+" "+rt.Pattern, s.wrap(rt))
	}
	return s
}

// Routes returns the route table, so tests can prove every route is authenticated and authorised.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// Handler returns the HTTP handler: the routes, each request logged once (accesslog.go).
func (s *Server) Handler() http.Handler { return accessLog(s.log, s.metrics, s.mux) }

// serveMetrics serves the metrics registry (Prometheus text format) to an admin or auditor token.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	s.metrics.Handler().ServeHTTP(w, r)
}

func (s *Server) wrap(rt Route) http.Handler {
	if rt.ClientCert {
		return s.wrapCert(rt)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(maxBody)
		if rt.MaxBody > 0 {
			limit = rt.MaxBody
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if rt.Public {
			rt.Handler(w, r, ra.Principal{ID: anonymous})
			return
		}
		if s.limited(w, r, false) {
			return
		}
		p, err := s.authenticate(r)
		if err != nil {
			s.refuseAuth(w, r, rt, ra.AuthRefusal{Err: err})
			return
		}
		notePrincipal(r, p)
		if !contains(rt.Roles, p.Role) {
			err := ra.Errorf(ra.KindForbidden, "role %q may not %s %s (allowed: %s)", p.Role, rt.Method, rt.Pattern, strings.Join(rt.Roles, ", "))
			s.refuseAuth(w, r, rt, ra.AuthRefusal{Principal: p, Err: err})
			return
		}
		rt.Handler(w, r, p)
	})
}

func (s *Server) authenticate(r *http.Request) (ra.Principal, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return ra.Principal{}, ra.Errorf(ra.KindUnauthorized, "missing operator token: send 'Authorization: Bearer <token>'")
	}
	return s.ra.Authenticate(r.Context(), strings.TrimSpace(tok))
}

// refuseAuth answers an operator API request refused at authentication (401) or by its route's roles (403),
// after reporting it through the RA (ra.RefuseAuth: log line and audited refusal). Every such refusal goes
// through here.
func (s *Server) refuseAuth(w http.ResponseWriter, r *http.Request, rt Route, a ra.AuthRefusal) {
	noteReason(r, a.Err)
	a.Source = sourceOf(r)
	a.Method, a.Route = rt.Method, rt.Pattern
	s.ra.RefuseAuth(r.Context(), a)
	status := api.StatusOf(a.Err)
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		s.limit.get().charge(a.Source)
	}
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyward"`)
		writeError(w, status, a.Err.Error())
	case http.StatusForbidden:
		writeError(w, status, a.Err.Error())
	default:
		s.log.ErrorContext(r.Context(), "authenticate", "err", a.Err)
		writeError(w, http.StatusServiceUnavailable, "cannot check the operator token now")
	}
}

// refuseClientCert reports a client-certificate (EST) request refused at authentication or by its route's roles
// (reason is ra.RefusalNoClientCert, ra.RefusalUnknownClientCert or ra.AuthForbiddenRole; p is the caller whose
// role is refused): like refuseAuth for operator routes, the refusal is counted per source and reason for the
// aggregated audit event (ra.CountRefusal), charged to the source's rate limit, and logged as one structured
// line with the caller's strings bounded. The caller writes the response.
func (s *Server) refuseClientCert(r *http.Request, reason string, p ra.Principal, err error) {
	noteReason(r, err)
	src := sourceOf(r)
	s.limit.get().charge(src)
	counted := src
	if p.ID != "" {
		counted = src + " " + p.ID
	}
	s.ra.CountRefusal(counted, reason)
	s.log.WarnContext(r.Context(), "request refused", "reason", reason, "remote", src, "actor", audit.Bound(p.ID, audit.MaxDetail),
		"method", r.Method, "path", boundPath(r), "err", audit.Bound(err.Error(), 2*audit.MaxDetail))
}

// boundPath is a request's path as logs and audit details keep it: escaped and cut (audit.Bound).
func boundPath(r *http.Request) string { return audit.Bound(r.URL.Path, audit.MaxDetail) }

// TLSConfig is the listener configuration: TLS 1.3 only (TLS 1.2 clients fail the handshake). A client
// certificate is requested but optional, and verified per request by the routes that authenticate with it
// (mtls.go); operator routes use tokens and ignore it.
func TLSConfig(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.RequestClientCert,
	}
}

// TLSConfigFunc is TLSConfig with the certificate chosen at each handshake by get.
func TLSConfigFunc(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	c := TLSConfig(&tls.Certificate{})
	c.Certificates, c.GetCertificate = nil, get
	return c
}

// Serve runs the HTTPS server on ln until ctx is cancelled, then shuts down gracefully, letting requests in
// flight finish for up to grace.
func (s *Server) Serve(ctx context.Context, ln net.Listener, cert *tls.Certificate, grace time.Duration) error {
	return s.ServeTLS(ctx, ln, TLSConfig(cert), grace)
}

// ServeTLS is Serve with a TLS configuration of the caller's, such as TLSConfigFunc's, whose certificate is
// renewed while the server runs.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener, tc *tls.Config, grace time.Duration) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	// Refusal counts become audit events every minute, and once more when the server stops.
	actx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	audited := make(chan struct{})
	go func() { defer close(audited); s.ra.RunRefusalAudit(actx) }()
	defer func() { stopAudit(); <-audited }()
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError sends {"error": msg}. msg is written for the caller and never holds a secret.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	noteReason(r, err)
	status := api.StatusOf(err)
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, status, "internal error; see the server log")
		return
	}
	body := map[string]string{"error": err.Error()}
	if f := ra.FieldOf(err); f != "" {
		body["field"] = f
	}
	writeJSON(w, status, body)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
