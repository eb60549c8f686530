package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/console"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/store"
)

func TestMain(m *testing.M) { pkitest.Main(m) }

var admin = ra.Principal{ID: "test", Role: ra.RoleAdmin}

// clock is a settable clock for session expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// env is a data directory with the console on a TLS test server, operator tokens of every role, a certificate
// and a draft firmware release.
type env struct {
	n       *node.Node
	con     *console.Console
	url     string
	clock   *clock
	tokens  map[string]string // name → token
	serial  string
	release string
	client  func(t *testing.T) *http.Client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: dir, Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	e := &env{n: n, clock: &clock{t: time.Now()}, tokens: map[string]string{}}
	tok, err := os.ReadFile(filepath.Join(dir, node.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["admin"] = strings.TrimSpace(string(tok))
	for name, role := range map[string]string{"officer": ra.RoleCAOfficer, "auditor": ra.RoleAuditor, "signer-a": ra.RoleReleaseSigner, "signer-b": ra.RoleReleaseSigner} {
		if e.tokens[name], err = n.RA.CreateToken(ctx, admin, ra.TokenRequest{Name: name, Role: role}); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: pkitest.CSR(t, pkitest.Key(t), "DEMO-00000001")})
	if err != nil {
		t.Fatal(err)
	}
	e.serial = cert.Serial
	image := make([]byte, 1024)
	_, _ = rand.Read(image)
	rel, err := n.RA.CreateRelease(ctx, admin, ra.FirmwareReleaseRequest{Environment: "dev", ProductLine: "demo-implant", Version: "1.0.0", Image: bytes.NewReader(image)})
	if err != nil {
		t.Fatal(err)
	}
	e.release = rel.ID
	e.con, err = console.New(console.Deps{RA: n.RA, Now: e.clock.Now, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(e.con.Handler())
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.client = func(t *testing.T) *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Transport: srv.Client().Transport, Jar: jar,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return e
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field in page:\n%.2000s", body)
	}
	return m[1]
}

func get(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func post(t *testing.T, c *http.Client, u string, form url.Values, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// signIn signs a new client in with the token of name and returns it with its session's CSRF token.
func (e *env) signIn(t *testing.T, name string) (*http.Client, string) {
	t.Helper()
	c := e.client(t)
	code, body, hdr := get(t, c, e.url+"/console/login")
	if code != 200 {
		t.Fatalf("login page: %d", code)
	}
	if csp := hdr.Get("Content-Security-Policy"); csp != console.CSP {
		t.Fatalf("login page CSP %q", csp)
	}
	code, _, hdr = post(t, c, e.url+"/console/login", url.Values{"csrf": {csrfOf(t, body)}, "token": {e.tokens[name]}})
	if code != http.StatusSeeOther {
		t.Fatalf("sign in as %s: %d", name, code)
	}
	var set string
	for _, v := range hdr.Values("Set-Cookie") {
		if strings.HasPrefix(v, console.SessionCookie+"=") {
			set = v
		}
	}
	for _, attr := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(set, attr) {
			t.Fatalf("session cookie %q lacks %s", set, attr)
		}
	}
	home := hdr.Get("Location")
	code, body, _ = get(t, c, e.url+home)
	if code != 200 {
		t.Fatalf("home %s after sign-in: %d %.500s", home, code, body)
	}
	return c, csrfOf(t, body)
}

func (e *env) certStatus(t *testing.T) string {
	t.Helper()
	c, err := e.n.Store.GetCertificate(context.Background(), e.serial)
	if err != nil {
		t.Fatal(err)
	}
	return c.Status
}

func (e *env) head(t *testing.T) int64 {
	t.Helper()
	h, _, err := e.n.Store.AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (e *env) approvals(t *testing.T) int {
	t.Helper()
	a, err := e.n.Store.FirmwareApprovals(context.Background(), e.release)
	if err != nil {
		t.Fatal(err)
	}
	return len(a)
}

// TestConsoleRefusesBadRequests: a console POST with a missing or wrong CSRF token, from another origin, with
// an expired session or none, or by a role without the right is answered 403 and changes nothing (the
// certificate stays valid, no approval is recorded, and the audit trail gains only the RA's own refusal events
// for a role refused by the RA, none for the rest).
func TestConsoleRefusesBadRequests(t *testing.T) {
	e := newEnv(t)
	officer, officerCSRF := e.signIn(t, "officer")
	auditor, auditorCSRF := e.signIn(t, "auditor")
	signer, signerCSRF := e.signIn(t, "signer-a")
	anon := e.client(t)
	revoke := e.url + "/console/certificates/" + e.serial + "/revoke"
	approve := e.url + "/console/firmware/" + e.release + "/approve"
	full := func(csrf string) url.Values {
		return url.Values{"csrf": {csrf}, "reason": {"keyCompromise"}, "confirm": {e.serial}}
	}
	cases := []struct {
		name   string
		c      *http.Client
		url    string
		form   url.Values
		hdr    []string
		want   string
		before func()
	}{
		{name: "no CSRF token", c: officer, url: revoke, form: url.Values{"reason": {"keyCompromise"}, "confirm": {e.serial}}, want: "CSRF token is missing"},
		{name: "wrong CSRF token", c: officer, url: revoke, form: full(officerCSRF[:len(officerCSRF)-2] + "xx"), want: "CSRF token is missing or is not this session's"},
		{name: "another session's CSRF token", c: officer, url: revoke, form: full(auditorCSRF), want: "not this session's"},
		{name: "cross-origin post", c: officer, url: revoke, form: full(officerCSRF), hdr: []string{"Origin", "https://evil.example"}, want: "another origin"},
		{name: "no session", c: anon, url: revoke, form: full(officerCSRF), want: "no console session"},
		{name: "forged session cookie", c: anon, url: revoke, form: full(officerCSRF), want: "no console session", before: func() {
			u, _ := url.Parse(e.url)
			anon.Jar.SetCookies(u, []*http.Cookie{{Name: console.SessionCookie, Value: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Path: "/", Secure: true}})
		}},
		{name: "auditor may not revoke", c: auditor, url: revoke, form: full(auditorCSRF), want: `role "auditor" may not POST /console/certificates/{serial}/revoke`},
		{name: "release signer may not revoke", c: signer, url: revoke, form: full(signerCSRF), want: `role "release-signer" may not`},
		{name: "ca-officer may not approve", c: officer, url: approve, form: url.Values{"csrf": {officerCSRF}}, want: `role "ca-officer" may not POST /console/firmware/{id}/approve`},
		{name: "auditor may not suspend a station", c: auditor, url: e.url + "/console/stations/x/suspend", form: url.Values{"csrf": {auditorCSRF}}, want: `role "auditor" may not`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			head := e.head(t)
			code, body, hdr := post(t, tc.c, tc.url, tc.form, tc.hdr...)
			if code != http.StatusForbidden || !strings.Contains(body, template(tc.want)) {
				t.Fatalf("got %d, want 403 with %q:\n%.3000s", code, tc.want, body)
			}
			if hdr.Get("Content-Security-Policy") != console.CSP {
				t.Fatalf("refusal without the CSP")
			}
			if e.certStatus(t) != store.CertStatusValid || e.approvals(t) != 0 || e.head(t) != head {
				t.Fatalf("a refused request changed something: status %s, approvals %d, audit head %d → %d", e.certStatus(t), e.approvals(t), head, e.head(t))
			}
		})
	}

	// The auditor sees the certificate but no revoke form; the signer may not even read it.
	if code, body, _ := get(t, auditor, e.url+"/console/certificates/"+e.serial); code != 200 || strings.Contains(body, `id="revoke"`) || !strings.Contains(body, e.serial) {
		t.Fatalf("auditor's certificate page: %d, revoke form shown: %v", code, strings.Contains(body, `id="revoke"`))
	}
	if code, _, _ := get(t, signer, e.url+"/console/certificates/"+e.serial); code != http.StatusForbidden {
		t.Fatalf("release signer reads a certificate: %d", code)
	}

	// A bad reason, and a confirmation naming another certificate, are refused with 400 and change nothing.
	for _, form := range []url.Values{
		{"csrf": {officerCSRF}, "reason": {"becauseISaidSo"}},
		{"csrf": {officerCSRF}, "reason": {""}},
		{"csrf": {officerCSRF}, "reason": {"keyCompromise"}, "confirm": {"01"}},
	} {
		if code, body, _ := post(t, officer, revoke, form); code != http.StatusBadRequest {
			t.Fatalf("revoke with %v: %d %.500s", form, code, body)
		}
	}
	if e.certStatus(t) != store.CertStatusValid {
		t.Fatal("a bad revocation form revoked")
	}

	// Expired session: past the idle time the session is gone; a POST with its CSRF token is refused, a page
	// redirects to sign-in.
	e.clock.add(console.DefaultIdle + time.Second)
	if code, body, _ := post(t, officer, revoke, full(officerCSRF)); code != http.StatusForbidden || !strings.Contains(body, "expired") {
		t.Fatalf("expired session: %d %.500s", code, body)
	}
	if code, _, hdr := get(t, officer, e.url+"/console/certificates"); code != http.StatusSeeOther || hdr.Get("Location") != "/console/login?ended=1" {
		t.Fatalf("expired session page: %d %s", code, hdr.Get("Location"))
	}
	if e.certStatus(t) != store.CertStatusValid {
		t.Fatal("an expired session revoked")
	}
}

// template is how html/template escapes want in a page.
func template(s string) string {
	return strings.NewReplacer(`"`, "&#34;", "'", "&#39;", "&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// TestConsoleSignIn: a wrong token, a token-less form and a sign-in form without its CSRF cookie are refused and
// start no session; a revoked token ends its sessions at once; sign-out ends the session.
func TestConsoleSignIn(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	_, body, _ := get(t, c, e.url+"/console/login")
	csrf := csrfOf(t, body)
	for _, tok := range []string{"kw_notatoken", "", strings.Repeat("x", 300)} {
		code, body, hdr := post(t, c, e.url+"/console/login", url.Values{"csrf": {csrf}, "token": {tok}})
		if code != http.StatusUnauthorized || strings.Contains(strings.Join(hdr.Values("Set-Cookie"), ";"), console.SessionCookie+"=") {
			t.Fatalf("sign in with %.10q: %d", tok, code)
		}
		if tok != "" && strings.Contains(body, tok) {
			t.Fatal("the refused token is echoed")
		}
		csrf = csrfOf(t, body)
	}
	fresh := e.client(t) // no login cookie
	if code, _, _ := post(t, fresh, e.url+"/console/login", url.Values{"csrf": {csrf}, "token": {e.tokens["admin"]}}); code != http.StatusForbidden {
		t.Fatalf("sign-in without the login cookie: %d", code)
	}

	officer, csrf := e.signIn(t, "officer")
	if _, err := e.n.RA.RevokeToken(context.Background(), admin, "officer", "left the company"); err != nil {
		t.Fatal(err)
	}
	if code, _, hdr := get(t, officer, e.url+"/console/"); code != http.StatusSeeOther || !strings.Contains(hdr.Get("Location"), "login") {
		t.Fatalf("session of a revoked token: %d", code)
	}
	if code, _, _ := post(t, officer, e.url+"/console/certificates/"+e.serial+"/revoke", url.Values{"csrf": {csrf}, "reason": {"keyCompromise"}, "confirm": {e.serial}}); code != http.StatusForbidden {
		t.Fatalf("revoke with a revoked token's session: %d", code)
	}

	a, csrf := e.signIn(t, "admin")
	if code, _, _ := post(t, a, e.url+"/console/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", code)
	}
	if code, _, _ := get(t, a, e.url+"/console/"); code != http.StatusSeeOther {
		t.Fatalf("page after sign-out: %d", code)
	}
}

// TestConsoleRoutesNeedSession walks every route: without a session a page redirects to sign-in and a POST is
// refused; every route but sign-in requires a role.
func TestConsoleRoutesNeedSession(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	fill := strings.NewReplacer("{serial}", e.serial, "{env}", "dev", "{product}", "demo-implant", "{id}", e.release, "{action}", "suspend", "{$}", "")
	for _, rt := range e.con.Routes() {
		if rt.Public {
			if rt.Pattern != "/login" {
				t.Errorf("public console route %s %s", rt.Method, rt.Pattern)
			}
			continue
		}
		if len(rt.Roles) == 0 {
			t.Errorf("route %s %s has no roles", rt.Method, rt.Pattern)
		}
		u := e.url + console.Prefix + fill.Replace(rt.Pattern)
		switch rt.Method {
		case "GET":
			if code, _, hdr := get(t, c, u); code != http.StatusSeeOther || hdr.Get("Location") != "/console/login" {
				t.Errorf("GET %s without a session: %d %s", u, code, hdr.Get("Location"))
			}
		case "POST":
			if code, _, _ := post(t, c, u, url.Values{}); code != http.StatusForbidden {
				t.Errorf("POST %s without a session: %d", u, code)
			}
		}
	}
	// Static assets are public and carry the CSP too.
	code, body, hdr := get(t, c, e.url+"/console/static/console.js")
	if code != 200 || !strings.Contains(body, "data-expires") || hdr.Get("Content-Security-Policy") != console.CSP {
		t.Fatalf("console.js: %d", code)
	}
}

// TestConsolePages signs in as an admin and reads every page: the CA tree, the charts (an issued certificate
// shows in the issuance chart and the expiry chart), search, device list, firmware queue, stations; a revocation
// in two steps; bad search input is answered 400.
func TestConsolePages(t *testing.T) {
	e := newEnv(t)
	c, csrf := e.signIn(t, "officer")
	code, body, _ := get(t, c, e.url+"/console/")
	for _, want := range []string{"dev/root", "dev/demo-implant", `id="issued-24h">1<`, "<svg", "Valid certificates expiring per month", "Revocation publishing", `id="audit-head"`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("dashboard lacks %q (%d)", want, code)
		}
	}
	if strings.Contains(body, "style=") {
		t.Fatal("the dashboard has an inline style, which the CSP refuses")
	}
	if code, body, _ = get(t, c, e.url+"/console/certificates?q=DEMO-00000001"); code != 200 || !strings.Contains(body, e.serial) {
		t.Fatalf("search by CN: %d", code)
	}
	if code, _, hdr := get(t, c, e.url+"/console/certificates?q="+e.serial); code != http.StatusSeeOther || !strings.HasSuffix(hdr.Get("Location"), e.serial) {
		t.Fatalf("search by serial: %d", code)
	}
	for _, q := range []string{"status=bogus", "limit=0", "limit=x", "profile=nope"} {
		if code, _, _ := get(t, c, e.url+"/console/certificates?"+q); code != http.StatusBadRequest {
			t.Fatalf("search %s: %d", q, code)
		}
	}
	if code, body, _ := get(t, c, e.url+"/console/stations"); code != 200 || !strings.Contains(body, "No factory station yet") {
		t.Fatalf("stations: %d", code)
	}
	// A CA officer's roles are the API's: no device histories, no firmware releases.
	for _, p := range []string{"/console/devices", "/console/firmware"} {
		if code, _, _ := get(t, c, e.url+p); code != http.StatusForbidden {
			t.Fatalf("ca-officer reads %s: %d", p, code)
		}
	}
	revoke := e.url + "/console/certificates/" + e.serial + "/revoke"
	code, body, _ = post(t, c, revoke, url.Values{"csrf": {csrf}, "reason": {"keyCompromise"}})
	if code != 200 || !strings.Contains(body, `id="confirm"`) || e.certStatus(t) != store.CertStatusValid {
		t.Fatalf("first step of revocation: %d, status %s", code, e.certStatus(t))
	}
	code, _, _ = post(t, c, revoke, url.Values{"csrf": {csrfOf(t, body)}, "reason": {"keyCompromise"}, "confirm": {e.serial}})
	if code != http.StatusSeeOther || e.certStatus(t) != store.CertStatusRevoked {
		t.Fatalf("confirmed revocation: %d, status %s", code, e.certStatus(t))
	}
	// Revoking again is the RA's conflict, shown as 409.
	if code, _, _ := post(t, c, revoke, url.Values{"csrf": {csrf}, "reason": {"keyCompromise"}, "confirm": {e.serial}}); code != http.StatusConflict {
		t.Fatalf("second revocation: %d", code)
	}
}

// FuzzConsolePost: whatever session cookie, CSRF token and form a POST carries, without the session's own id
// and CSRF token it is refused and changes nothing.
func FuzzConsolePost(f *testing.F) {
	f.Add("", "", "keyCompromise")
	f.Add("AAAA", "AAAA", "keyCompromise")
	f.Add(strings.Repeat("A", 43), strings.Repeat("B", 43), "certificateHold")
	f.Add("\x00;=,", "%00", "")
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, cookie, csrf, reason string) {
		c := e.client(t)
		u, _ := url.Parse(e.url)
		c.Jar.SetCookies(u, []*http.Cookie{{Name: console.SessionCookie, Value: url.QueryEscape(cookie), Path: "/"}})
		code, _, _ := post(t, c, e.url+"/console/certificates/"+e.serial+"/revoke", url.Values{"csrf": {csrf}, "reason": {reason}, "confirm": {e.serial}})
		if code != http.StatusForbidden {
			t.Fatalf("forged POST answered %d", code)
		}
		if s, err := e.n.Store.GetCertificate(context.Background(), e.serial); err != nil || s.Status != store.CertStatusValid {
			t.Fatal("forged POST changed the certificate")
		}
	})
}

// TestConsoleMountedWithRateLimit: the server mounts the console at /console/, and refused sign-ins spend the
// source's budget of refused requests like refused API calls: past it, 429 with Retry-After, even for the right
// token, until the budget refills.
func TestConsoleMountedWithRateLimit(t *testing.T) {
	e := newEnv(t)
	s := server.New(server.Deps{RA: e.n.RA, Logger: e.n.Logger, RateLimit: server.Rate{N: 3, Per: time.Hour}})
	srv := httptest.NewTLSServer(s.Handler())
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: srv.Client().Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	code, body, hdr := get(t, c, srv.URL+"/console/login")
	if code != 200 || hdr.Get("Content-Security-Policy") != console.CSP {
		t.Fatalf("console not mounted: %d", code)
	}
	csrf := csrfOf(t, body)
	var codes []int
	for range 4 {
		code, body, _ := post(t, c, srv.URL+"/console/login", url.Values{"csrf": {csrf}, "token": {"kw_wrong"}})
		codes = append(codes, code)
		if code == http.StatusUnauthorized {
			csrf = csrfOf(t, body)
		}
	}
	if codes[0] != 401 || codes[2] != 401 || codes[3] != http.StatusTooManyRequests {
		t.Fatalf("refused sign-ins answered %v, want 401 401 401 429", codes)
	}
	code, _, hdr = post(t, c, srv.URL+"/console/login", url.Values{"csrf": {csrf}, "token": {e.tokens["admin"]}})
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("sign-in past the limit: %d", code)
	}
}
