package console

import (
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// Prefix is where the console is served; the server mounts the Console's handler at Prefix + "/".
const Prefix = "/console"

// Defaults of session expiry.
const (
	DefaultIdle     = 30 * time.Minute // a session unused this long ends
	DefaultLifetime = 8 * time.Hour    // a session ends this long after sign-in, used or not
)

// Refusal reasons the console counts for the RA's aggregated auth.refusals event (ra.CountRefusal), beside the
// token refusals that ra.RefuseAuth counts.
const (
	RefusalCSRF    = "console-csrf"    // a POST without the session's CSRF token, or with another
	RefusalOrigin  = "console-origin"  // a POST whose Origin is not the console's
	RefusalSession = "console-session" // a POST with no session, or an expired or ended one
)

// maxForm bounds a console request body: every form is a few short fields.
const maxForm = 16 << 10

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Deps are what the console needs. RA is required; the hooks let the server that mounts the console apply its
// rate limit on refused requests and note who a request authenticated as, or why it was refused, on its access
// line.
type Deps struct {
	RA     *ra.RA
	Logger *slog.Logger
	// Now is the console's clock (sessions); ra.RA.Now if nil.
	Now func() time.Time
	// Idle and Lifetime end sessions (DefaultIdle and DefaultLifetime if zero).
	Idle, Lifetime time.Duration
	// Limited answers 429 and reports true when the request's source has spent its budget of refused
	// requests; nil: no limit.
	Limited func(w http.ResponseWriter, r *http.Request) bool
	// Refused is told of every request the console refuses at sign-in, for want of a session or CSRF token, or
	// by role; nil: nothing to tell.
	Refused func(r *http.Request, err error)
	// Authenticated is told who a request's session belongs to; nil: nothing to tell.
	Authenticated func(r *http.Request, p ra.Principal)
}

// Console serves the web console.
type Console struct {
	d        Deps
	ra       *ra.RA
	read     store.Reader
	log      *slog.Logger
	now      func() time.Time
	sessions *sessions
	pages    *pages
	charts   *chartCache
	routes   []Route
	mux      *http.ServeMux
}

// Route is one console route. Public routes need no session; every other route requires a session whose
// principal's role is in Roles, and, for a POST, the session's CSRF token.
type Route struct {
	Method  string
	Pattern string // below Prefix, e.g. "/certificates/{serial}"
	Public  bool
	Roles   []string
	handler func(w http.ResponseWriter, r *http.Request, s *session)
}

// The console's roles mirror the API routes whose data or action a page shows (README's route table).
var (
	readers    = []string{ra.RoleAdmin, ra.RoleCAOfficer, ra.RoleAuditor}                       // GET /api/v1/cas, certificates
	revokers   = []string{ra.RoleAdmin, ra.RoleCAOfficer}                                       // POST .../revoke; stations
	historians = []string{ra.RoleAdmin, ra.RoleAuditor}                                         // GET .../devices/.../history
	firmware   = []string{ra.RoleAdmin, ra.RoleReleaseSigner, ra.RoleAuditor}                   // GET /api/v1/firmware/releases/{id}
	approvers  = []string{ra.RoleReleaseSigner}                                                 // POST .../approve
	everyone   = []string{ra.RoleAdmin, ra.RoleCAOfficer, ra.RoleAuditor, ra.RoleReleaseSigner} // sign out
)

// New returns the console of d.RA.
func New(d Deps) (*Console, error) {
	if d.RA == nil {
		return nil, errors.New("console: no RA")
	}
	if d.Logger == nil {
		d.Logger = d.RA.Logger()
	}
	if d.Now == nil {
		d.Now = d.RA.Now
	}
	if d.Idle <= 0 {
		d.Idle = DefaultIdle
	}
	if d.Lifetime <= 0 {
		d.Lifetime = DefaultLifetime
	}
	pg, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{d: d, ra: d.RA, read: d.RA.Reader(), log: d.Logger, now: d.Now, pages: pg, mux: http.NewServeMux(),
		sessions: newSessions(d.Idle, d.Lifetime)}
	c.charts = newChartCache(c.read)
	c.routes = []Route{
		{Method: "GET", Pattern: "/login", Public: true, handler: c.loginPage},
		{Method: "POST", Pattern: "/login", Public: true, handler: c.login},
		{Method: "POST", Pattern: "/logout", Roles: everyone, handler: c.logout},
		{Method: "GET", Pattern: "/{$}", Roles: everyone, handler: c.dashboard},
		{Method: "GET", Pattern: "/certificates", Roles: readers, handler: c.certificates},
		{Method: "GET", Pattern: "/certificates/{serial}", Roles: readers, handler: c.certificate},
		{Method: "POST", Pattern: "/certificates/{serial}/revoke", Roles: revokers, handler: c.revoke},
		{Method: "GET", Pattern: "/devices", Roles: historians, handler: c.devices},
		{Method: "GET", Pattern: "/devices/{env}/{product}/{serial}", Roles: historians, handler: c.device},
		{Method: "GET", Pattern: "/firmware", Roles: firmware, handler: c.firmware},
		{Method: "POST", Pattern: "/firmware/{id}/approve", Roles: approvers, handler: c.approve},
		{Method: "GET", Pattern: "/stations", Roles: readers, handler: c.stations},
		{Method: "POST", Pattern: "/stations/{id}/{action}", Roles: revokers, handler: c.stationAction},
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	files := http.StripPrefix(Prefix+"/static/", http.FileServerFS(static))
	c.mux.Handle("GET "+Prefix+"/static/", c.headers(files, false))
	for _, rt := range c.routes {
		c.mux.Handle(rt.Method+" "+Prefix+rt.Pattern, c.headers(c.wrap(rt), true))
	}
	c.mux.Handle(Prefix+"/", c.headers(http.HandlerFunc(c.notFound), true))
	return c, nil
}

// Handler returns the console's handler; the server mounts it at Prefix + "/".
func (c *Console) Handler() http.Handler { return c.mux }

// Routes returns the route table, so tests can prove every route but sign-in is authenticated and authorised.
func (c *Console) Routes() []Route { return append([]Route(nil), c.routes...) }

// CSP is the Content-Security-Policy of every console response: nothing but the console's own scripts, styles
// and images (inline SVG charts are markup, not images), no plugins, no framing, forms only to the console.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// headers sets the security headers of every console response; pages (not static assets) are never cached.
func (c *Console) headers(next http.Handler, page bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts, which the
		// origin check (sameOrigin) must then refuse.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if page {
			h.Set("Cache-Control", "no-store")
		} else {
			h.Set("Cache-Control", "private, max-age=300")
		}
		next.ServeHTTP(w, r)
	})
}

// errNoSession is why a POST without a live session is refused.
var errNoSession = ra.Errorf(ra.KindForbidden, "no console session, or it expired or was ended: sign in again; nothing was changed")

// errCSRF is why a POST without the session's CSRF token is refused.
var errCSRF = ra.Errorf(ra.KindForbidden, "the form's CSRF token is missing or is not this session's: reload the page and submit again; nothing was changed")

// errOrigin is why a POST from another origin is refused.
var errOrigin = ra.Errorf(ra.KindForbidden, "the form was posted from another origin than the console's; nothing was changed")

func (c *Console) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if rt.Public {
			rt.handler(w, r, nil)
			return
		}
		if c.d.Limited != nil && c.d.Limited(w, r) {
			return
		}
		s, why := c.sessions.get(r, c.now())
		if s != nil {
			if err := c.checkToken(r, s); err != nil {
				c.sessions.end(s)
				s, why = nil, err
			}
		}
		if s == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				target := Prefix + "/login"
				if why != nil {
					target += "?ended=1"
				}
				http.Redirect(w, r, target, http.StatusSeeOther)
				return
			}
			err := errNoSession
			if why != nil && !errors.Is(why, errExpired) {
				err = fmt.Errorf("%w (%v)", errNoSession, why) // the token's revocation or expiry ended it
			}
			c.refuse(w, r, rt, ra.Principal{}, RefusalSession, err)
			return
		}
		if c.d.Authenticated != nil {
			c.d.Authenticated(r, s.p)
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) {
				c.refuse(w, r, rt, s.p, RefusalOrigin, errOrigin)
				return
			}
			if !validCSRF(r.PostFormValue("csrf"), s.csrf) {
				c.refuse(w, r, rt, s.p, RefusalCSRF, errCSRF)
				return
			}
		}
		if !slices.Contains(rt.Roles, s.p.Role) {
			err := ra.Errorf(ra.KindForbidden, "role %q may not %s %s (allowed: %s)", s.p.Role, rt.Method, Prefix+rt.Pattern, strings.Join(rt.Roles, ", "))
			c.ra.RefuseAuth(r.Context(), ra.AuthRefusal{Source: sourceOf(r), Method: rt.Method, Route: Prefix + rt.Pattern, Principal: s.p, Err: err})
			if c.d.Refused != nil {
				c.d.Refused(r, err)
			}
			c.render(w, r, http.StatusForbidden, "error", s, "Forbidden", errorPage{Message: err.Error()})
			return
		}
		rt.handler(w, r, s)
	})
}

// checkToken ends a session whose operator token was revoked, expired or replaced since sign-in: the console
// holds no token, so it reads the token's record by name on every request.
func (c *Console) checkToken(r *http.Request, s *session) error {
	t, err := c.read.TokenByName(r.Context(), s.token)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errors.New("the session's operator token no longer exists")
		}
		return err
	}
	if t.ID != s.tokenID || t.Role != s.p.Role {
		return errors.New("the session's operator token was replaced")
	}
	if st := ra.TokenState(t, c.ra.Now()); st != ra.TokenActive {
		return fmt.Errorf("the session's operator token is %s", st)
	}
	return nil
}

// refuse answers 403 to a POST refused for want of a session, CSRF token or origin: logged, counted for the
// RA's aggregated refusal event, charged to the source's rate limit; nothing else happens.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, rt Route, p ra.Principal, reason string, err error) {
	src := sourceOf(r)
	counted := src
	if p.ID != "" {
		counted += " " + p.ID
	}
	c.ra.CountRefusal(counted, reason)
	c.log.WarnContext(r.Context(), "console request refused", "reason", reason, "remote", src, "actor", audit.Bound(p.ID, audit.MaxDetail),
		"method", rt.Method, "route", Prefix+rt.Pattern)
	if c.d.Refused != nil {
		c.d.Refused(r, err)
	}
	c.render(w, r, http.StatusForbidden, "error", nil, "Refused", errorPage{Message: err.Error(), SignIn: p.ID == ""})
}

// validCSRF compares a form's CSRF token with the session's in constant time.
func validCSRF(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin reports whether a POST came from the console's own origin: browsers send Origin on every POST; a
// request without one (not a browser) still needs the session cookie and its CSRF token.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == "https://"+r.Host
}

func sourceOf(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	s, _ := c.sessions.get(r, c.now())
	if s == nil {
		http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusNotFound, "error", s, "Not found", errorPage{Message: "no console page at " + audit.Bound(r.URL.Path, audit.MaxDetail)})
}

// fail renders an RA error: its message for the caller's mistakes, "see the server log" for ours.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status := api.StatusOf(err)
	msg := err.Error()
	if status >= 500 {
		c.log.ErrorContext(r.Context(), "console request failed", "method", r.Method, "path", audit.Bound(r.URL.Path, audit.MaxDetail), "err", err)
		msg = "internal error; see the server log"
	}
	c.render(w, r, status, "error", s, http.StatusText(status), errorPage{Message: msg})
}
