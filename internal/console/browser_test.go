package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/ocsp"

	"github.com/keyward/keyward/internal/cli"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/ra"
)

var screenshotDir = flag.String("screenshots", "", "write the browser test's screenshots here instead of the test's temporary directory")

// chromium returns the path of a Chromium binary, or skips the test (fails it when KEYWARD_REQUIRE_INTEGRATION=1).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "Chromium not found (Debian: apt-get install chromium; scripts/test.sh installs it)"
	if os.Getenv("KEYWARD_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// syncBuffer is a bytes.Buffer safe for a server goroutine writing and the test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// running is 'keyward serve --public-listen' on a data directory, in this process.
type running struct {
	api, public string // host:port
	pool        *x509.CertPool
	admin       string
	dir         string
}

func (r *running) apiGet(t *testing.T, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+r.api+path, nil)
	req.Header.Set("Authorization", "Bearer "+r.admin)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.pool}}, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if sp, ok := v.(*string); ok {
		*sp = string(b)
		return
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

var servingRE = regexp.MustCompile(`serving https://([0-9.:]+) `)
var publicRE = regexp.MustCompile(`serving public objects on http://([0-9.:]+) `)

// serve starts 'keyward serve' on dir and waits until both listeners are up.
func serve(t *testing.T, dir string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--public-listen", "127.0.0.1:0", "--log-level", "warn"},
			cli.Env{Stdout: io.Discard, Stderr: &stderr})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("keyward serve did not stop")
		}
	})
	r := &running{dir: dir}
	deadline := time.Now().Add(60 * time.Second)
	for r.api == "" || r.public == "" {
		if time.Now().After(deadline) {
			t.Fatalf("keyward serve did not start:\n%s", stderr.String())
		}
		select {
		case code := <-done:
			t.Fatalf("keyward serve exited %d:\n%s", code, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if m := servingRE.FindStringSubmatch(stderr.String()); m != nil {
			r.api = m[1]
		}
		if m := publicRE.FindStringSubmatch(stderr.String()); m != nil {
			r.public = m[1]
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, node.TLSDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	r.pool = x509.NewCertPool()
	r.pool.AppendCertsFromPEM(caPEM)
	tok, err := os.ReadFile(filepath.Join(dir, node.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	r.admin = strings.TrimSpace(string(tok))
	return r
}

// spkiHash is the base64 SHA-256 of the server certificate's SubjectPublicKeyInfo, which Chromium is told to
// trust (--ignore-certificate-errors-spki-list): the service CA is in no browser's store.
func (r *running) spkiHash(t *testing.T) string {
	t.Helper()
	conn, err := tls.Dial("tcp", r.api, &tls.Config{RootCAs: r.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(h[:])
}

func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := cli.Run(context.Background(), args, cli.Env{Stdout: &out, Stderr: &errb}); code != 0 {
		t.Fatalf("keyward %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// TestConsoleInChromium drives the console of a real 'keyward serve' in headless Chromium: sign in and see the
// CA tree; revoke a certificate through the console and see it revoked through the API and OCSP; suspend and
// resume a station; read a device's history; approve a firmware release as two different signers until it is
// approved; an auditor sees no revoke button; a forged same-origin POST (no CSRF token) and a cross-site POST
// are refused and change nothing. Every page is screenshotted; the dashboard's must not be blank.
func TestConsoleInChromium(t *testing.T) {
	browser := chromium(t)
	ctx := context.Background()
	tmp := t.TempDir()
	shots := filepath.Join(tmp, "screenshots")
	if *screenshotDir != "" {
		shots = *screenshotDir
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// The data directory: tokens of each role, two certificates, a draft release, a station.
	dir := filepath.Join(tmp, "data")
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: dir, Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for name, role := range map[string]string{"auditor": ra.RoleAuditor, "signer-a": ra.RoleReleaseSigner, "signer-b": ra.RoleReleaseSigner} {
		if tokens[name], err = n.RA.CreateToken(ctx, admin, ra.TokenRequest{Name: name, Role: role}); err != nil {
			t.Fatal(err)
		}
	}
	var serials []string
	for _, cn := range []string{"DEMO-00000001", "DEMO-00000003"} {
		c, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: pkitest.CSR(t, pkitest.Key(t), cn)})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, c.Serial)
	}
	img := make([]byte, 2048)
	_, _ = rand.Read(img)
	rel, err := n.RA.CreateRelease(ctx, admin, ra.FirmwareReleaseRequest{Environment: "dev", ProductLine: "demo-implant", Version: "2.1.0", Image: bytes.NewReader(img)})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	stationDir := filepath.Join(tmp, "station")
	runCLI(t, "station", "add", "--data", dir, "--env", "dev", "--site", "plant-a", "--product", "demo-implant", "--name", "plant-a-01", "--out", stationDir)

	srv := serve(t, dir)
	tokens["admin"] = srv.admin
	runCLI(t, "device", "enroll", "--server", "https://"+srv.api, "--product", "demo-implant", "--trust", filepath.Join(stationDir, "trust.pem"),
		"--station", filepath.Join(stationDir, "station.pem"), "--station-key", filepath.Join(stationDir, "station.key"),
		"--serial", "DEMO-00000002", "--key-out", filepath.Join(tmp, "dev2.key"), "--out", filepath.Join(tmp, "dev2.pem"))

	port := srv.api[strings.LastIndex(srv.api, ":")+1:]
	base := "https://localhost:" + port // the console's origin; the attacker's page is on 127.0.0.1, another site

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.Flag("ignore-certificate-errors-spki-list", srv.spkiHash(t)),
		chromedp.WindowSize(1280, 1000),
		chromedp.UserDataDir(filepath.Join(tmp, "chromium")),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(browserCtx); err != nil { // starts the browser, on a context without a deadline
		t.Fatalf("start Chromium: %v", err)
	}
	bctx, cancelTimeout := context.WithTimeout(browserCtx, 3*time.Minute)
	defer cancelTimeout()

	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		actx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(actx, actions...); err != nil {
			dctx, cancel := context.WithTimeout(browserCtx, 10*time.Second)
			defer cancel()
			loc, _ := chromedp.Run(dctx, chromedp.Location())
			body, _ := chromedp.Run(dctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
			if png, err := chromedp.Run(dctx, chromedp.FullScreenshot(100)); err == nil {
				_ = os.WriteFile(filepath.Join(shots, "failure.png"), png, 0o644)
			}
			t.Fatalf("%s: %v (at %s)\n%.2000s", what, err, loc, body)
		}
	}
	eval := func(what, js string) any {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[any](js))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }
	click := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
	signIn := func(name string, landing string) {
		t.Helper()
		run("sign in as "+name,
			chromedp.Navigate(base+"/console/"),
			visible("#token"),
			chromedp.SendKeys(chromedp.CSS("#token"), tokens[name]),
			click("#sign-in"),
			visible(landing))
		if who := text("#who"); who != "operator:"+name {
			t.Fatalf("signed in as %q, want operator:%s", who, name)
		}
	}
	signOut := func() {
		t.Helper()
		run("sign out", click("button.link"), visible("#token"))
	}

	// Sign in; the dashboard shows the CA tree.
	run("open the console", chromedp.Navigate(base+"/console/"), visible("#login"))
	shot("login")
	signIn("admin", "#ca-tree")
	tree := text("#ca-tree")
	for _, want := range []string{"dev/root", "dev/demo-implant", "root", "issuing", "active"} {
		if !strings.Contains(tree, want) {
			t.Fatalf("CA tree lacks %q:\n%s", want, tree)
		}
	}
	if got := text("#issued-24h"); got != "2" {
		t.Fatalf("issued in the last 24 hours: %q, want 2", got)
	}
	shot("dashboard")
	checkNotBlank(t, filepath.Join(shots, "dashboard.png"))

	// Certificate search and detail, then revocation in two steps.
	run("search", chromedp.Navigate(base+"/console/certificates?q=DEMO-00000001"), visible("#results"))
	if !strings.Contains(text("#results"), serials[0]) {
		t.Fatal("search does not list the certificate")
	}
	shot("certificates")
	run("certificate", chromedp.Navigate(base+"/console/certificates/"+serials[0]), visible("#revoke"))
	shot("certificate")
	run("choose a reason and revoke",
		chromedp.SetValue(chromedp.CSS("#reason-select"), "keyCompromise"))
	eval("announce the reason", `document.getElementById("reason-select").dispatchEvent(new Event("change"))`)
	run("revoke", click("#revoke-button"),
		visible("#confirm"))
	shot("confirm-revocation")
	run("confirm", click("#confirm-button"), visible("#notice"))
	if st := text("#status"); st != "revoked" {
		t.Fatalf("status after revocation: %q", st)
	}
	shot("certificate-revoked")
	var apiCert struct{ Status string }
	srv.apiGet(t, "/api/v1/certificates/"+serials[0], &apiCert)
	if apiCert.Status != "revoked" {
		t.Fatalf("API status after console revocation: %q", apiCert.Status)
	}
	checkOCSP(t, srv, serials[0], ocsp.Revoked)
	checkOCSP(t, srv, serials[1], ocsp.Good)

	// A forged same-origin POST without the CSRF token (the session cookie goes along) is refused.
	run("certificate 2", chromedp.Navigate(base+"/console/certificates/"+serials[1]), visible("#cert"))
	eval("forge a POST", fmt.Sprintf(`(function(){var f=document.createElement("form");f.method="post";f.action="/console/certificates/%s/revoke";
			for (const [k,v] of [["reason","keyCompromise"],["confirm","%s"]]) {var i=document.createElement("input");i.type="hidden";i.name=k;i.value=v;f.appendChild(i);}
			document.body.appendChild(f);f.submit();})()`, serials[1], serials[1]))
	run("forged POST answered", visible("#error"))
	if e := text("#error"); !strings.Contains(e, "CSRF token is missing") {
		t.Fatalf("forged POST: %q", e)
	}
	shot("forged-post-refused")

	// A cross-site page posting to the console: the SameSite=Strict cookie stays home, so there is no session.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/console/certificates/%s/revoke">
<input type="hidden" name="reason" value="keyCompromise"><input type="hidden" name="confirm" value="%s"><input type="hidden" name="csrf" value="guess"></form>
<script>document.getElementById("f").submit()</script>`, base, serials[1], serials[1])
	}))
	defer evil.Close()
	run("cross-site POST", chromedp.Navigate(evil.URL), visible("#error"))
	if e := text("#error"); !strings.Contains(e, "no console session") && !strings.Contains(e, "another origin") {
		t.Fatalf("cross-site POST: %q", e)
	}
	shot("cross-site-post-refused")
	srv.apiGet(t, "/api/v1/certificates/"+serials[1], &apiCert)
	if apiCert.Status != "valid" {
		t.Fatalf("a forged POST revoked %s: %q", serials[1], apiCert.Status)
	}

	// Devices and a device's history.
	run("devices", chromedp.Navigate(base+"/console/devices"), visible("#results"))
	shot("devices")
	run("device", click(`a[href="/console/devices/dev/demo-implant/DEMO-00000002"]`), visible("#history"))
	if h := text("#history"); !strings.Contains(h, "est.enroll") || !strings.Contains(h, "station:plant-a-01") {
		t.Fatalf("device history:\n%s", h)
	}
	shot("device")

	// Stations: suspend, then resume.
	run("stations", chromedp.Navigate(base+"/console/stations"), visible("#stations"),
		click("#station-plant-a-01 button.suspend"), visible("#station-plant-a-01 button.resume"))
	if st := text("#station-plant-a-01 .badge"); st != "suspended" {
		t.Fatalf("station after suspend: %q", st)
	}
	shot("stations-suspended")
	run("resume", click("#station-plant-a-01 button.resume"), visible("#station-plant-a-01 button.suspend"))
	if st := text("#station-plant-a-01 .badge"); st != "active" {
		t.Fatalf("station after resume: %q", st)
	}
	run("firmware as admin", chromedp.Navigate(base+"/console/firmware"), visible("#releases"))
	shot("firmware-admin")
	signOut()

	// Two release signers approve, each as themselves.
	row := "#release-" + rel.ID
	for i, signer := range []string{"signer-a", "signer-b"} {
		signIn(signer, "#releases")
		run("approve as "+signer, click(row+" button.approve"), visible("#notice"))
		if got := text(row + " .approvals"); !strings.HasPrefix(got, fmt.Sprintf("%d of 2", i+1)) || !strings.Contains(got, signer) {
			t.Fatalf("approvals after %s: %q", signer, got)
		}
		shot("firmware-" + signer)
		signOut()
	}
	var apiRel struct {
		Status    string
		Approvers []string
	}
	srv.apiGet(t, "/api/v1/firmware/releases/"+rel.ID, &apiRel)
	if apiRel.Status != "approved" || strings.Join(apiRel.Approvers, ",") != "signer-a,signer-b" {
		t.Fatalf("release over the API: %+v", apiRel)
	}

	// An auditor reads but sees no revoke button.
	signIn("auditor", "#ca-tree")
	run("auditor's certificate page", chromedp.Navigate(base+"/console/certificates/"+serials[1]), visible("#cert"))
	if v := eval("look for a revoke form", `document.getElementById("revoke") === null && document.getElementById("revoke-button") === null`); v != true {
		t.Fatal("the auditor's certificate page has a revoke form")
	}
	shot("auditor-certificate")

	entries, _ := os.ReadDir(shots)
	t.Logf("%d screenshots in %s", len(entries), shots)
}

// checkOCSP asks the public listener's OCSP responder about serial until it answers want (the responder follows
// the store's change feed, within seconds).
func checkOCSP(t *testing.T, srv *running, serial string, want int) {
	t.Helper()
	var chain string
	srv.apiGet(t, "/api/v1/cas/dev/chain?product=demo-implant", &chain)
	blk, _ := pem.Decode([]byte(chain))
	issuer, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var der []byte
	srv.apiGet(t, "/api/v1/certificates/"+serial, &struct {
		PEM *pemField `json:"pem"`
	}{PEM: (*pemField)(&der)})
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	req, err := ocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Post("http://"+srv.public+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r, err := ocsp.ParseResponseForCert(body, leaf, issuer)
		if err == nil && r.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("OCSP for %s: %v, status %v, want %d", serial, err, r, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pemField decodes a JSON PEM string to DER.
type pemField []byte

func (p *pemField) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		return fmt.Errorf("no PEM block")
	}
	*p = blk.Bytes
	return nil
}

// checkNotBlank fails unless the PNG has content: many pixels off the page background, in several colours.
func checkNotBlank(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() < 800 || b.Dy() < 600 {
		t.Fatalf("%s is %dx%d", path, b.Dx(), b.Dy())
	}
	bg := img.At(b.Max.X-1, b.Max.Y-1)
	colours := map[[3]uint32]bool{}
	off := 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			c := img.At(x, y)
			r, g, bl, _ := c.RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if !sameColour(c, bg) {
				off++
			}
		}
	}
	if len(colours) < 16 || off < 5000 {
		t.Fatalf("%s looks blank: %d colours, %d pixels off the background", path, len(colours), off)
	}
}

func sameColour(a, b interface{ RGBA() (r, g, b, a uint32) }) bool {
	ar, ag, ab, _ := a.RGBA()
	br, bg, bb, _ := b.RGBA()
	return ar == br && ag == bg && ab == bb
}
