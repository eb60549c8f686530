package main

// One configuration against the real binary: serve settings from keyward.yaml and KEYWARD_* variables under
// the flags, 'config show' and 'config check', SIGHUP reloading a profile (and keeping the previous one when the
// new one is broken), the server certificate renewing itself while serving, a remembered PostgreSQL store, and
// a changed public URL republishing CRLs and filters at start.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store/storetest"
)

// runEnv runs keyward with extra environment variables and returns its exit code, stdout and stderr.
func runEnv(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the server's log holds n lines containing s.
func waitLog(t *testing.T, s *server, sub string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if strings.Count(s.log.String(), sub) >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %q in the log within %s:\n%s", sub, within, s.log.String())
}

// servedSerial is the serial of the certificate the server presents in a new handshake.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// issueCN posts a CSR with common name cn under implant-identity and returns the status.
func issueCN(t *testing.T, c *apiClient, cn string) (int, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"profile": "implant-identity", "csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	req, _ := http.NewRequest("POST", c.url+"/api/v1/certificates", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestConfigSettingsReloadAndTLSRenewal(t *testing.T) {
	bin := buildKeyward(t)
	data := filepath.Join(t.TempDir(), "kw")
	r := runner{t, bin}
	r.run("init", "--data", data)
	cfg := filepath.Join(data, "keyward.yaml")
	appendFile(t, cfg, "\nserve:\n  listen: 127.0.0.1:0\n  rate-limit: 5/s\n  tls-validity: 15s\n  log-format: text\n")
	lineOf := func(prefix string) int {
		for i, l := range strings.Split(readFile(t, cfg), "\n") {
			if strings.HasPrefix(l, prefix) {
				return i + 1
			}
		}
		t.Fatalf("no %q in %s", prefix, cfg)
		return 0
	}

	// Flag > environment > file > default, each with its source.
	code, out, errOut := runEnv(t, bin, []string{"KEYWARD_RATE_LIMIT=9/m", "KEYWARD_SHUTDOWN_GRACE=3s"}, "config", "show", "--data", data, "--shutdown-grace", "4s", "--json")
	if code != 0 {
		t.Fatalf("config show: %d %s", code, errOut)
	}
	var shown struct {
		Settings []struct{ Key, Value, Source, From string }
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"serve.listen":         "127.0.0.1:0 file " + cfg + fmt.Sprintf(":%d", lineOf("  listen:")),
		"serve.rate-limit":     "9/m env KEYWARD_RATE_LIMIT",
		"serve.shutdown-grace": "4s flag --shutdown-grace",
		"serve.commit-window":  "1ms default ",
		"store.db":             "sqlite:" + filepath.Join(data, "keyward.db") + " file " + cfg + fmt.Sprintf(":%d", lineOf("  db:")),
	}
	for _, s := range shown.Settings {
		if w, ok := want[s.Key]; ok {
			if got := s.Value + " " + s.Source + " " + s.From; got != w {
				t.Errorf("%s: %q, want %q", s.Key, got, w)
			}
			delete(want, s.Key)
		}
	}
	if len(want) > 0 {
		t.Errorf("config show lacks %v:\n%s", want, out)
	}

	// A malformed value: config check and serve refuse it, naming file, line and fix.
	rateLine := lineOf("  rate-limit:")
	bad := strings.Replace(readFile(t, cfg), "rate-limit: 5/s", "rate-limit: lots", 1)
	writeFile(t, cfg, bad)
	code, out, _ = runEnv(t, bin, nil, "config", "check", "--data", data)
	if code != 3 || !strings.Contains(out, fmt.Sprintf("%s:%d: serve.rate-limit: ", cfg, rateLine)) || !strings.Contains(out, "fix: write N/s, N/m or N/h, or off") {
		t.Fatalf("config check: exit %d\n%s", code, out)
	}
	code, _, errOut = runEnv(t, bin, nil, "serve", "--data", data)
	if code != 2 || !strings.Contains(errOut, fmt.Sprintf("%s:%d: serve.rate-limit", cfg, rateLine)) {
		t.Fatalf("serve with a malformed setting: exit %d\n%s", code, errOut)
	}
	writeFile(t, cfg, strings.Replace(bad, "rate-limit: lots", "rate-limit: 5/s", 1))
	if code, out, _ := runEnv(t, bin, nil, "config", "check", "--data", data); code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("config check: %d %s", code, out)
	}

	s := startServer(t, bin, servingRe, "serve", "--data", data)
	addr := strings.TrimPrefix(s.url, "https://")
	c := newAPIClient(t, s.url, data)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(readFile(t, filepath.Join(data, "tls", "ca.pem"))))
	first := servedSerial(t, addr, pool)
	start := time.Now()
	if code, body := issueCN(t, c, "DEMO-00000001"); code != 201 {
		t.Fatalf("issue: %d %s", code, body)
	}

	// A new version of the profile, reloaded on SIGHUP: its new subject rule applies at once.
	prof := filepath.Join(data, "profiles", "implant-identity.yaml")
	orig := readFile(t, prof)
	ver := regexp.MustCompile(`(?m)^version: (\d+)$`).FindStringSubmatch(orig)
	if ver == nil {
		t.Fatal("the default profile has no version line: update this test")
	}
	n, _ := strconv.Atoi(ver[1])
	v2 := strings.Replace(strings.Replace(orig, "'^DEMO-[0-9]{8}$'", "'^TEST-[0-9]{8}$'", 1), ver[0], fmt.Sprintf("version: %d", n+1), 1)
	if !strings.Contains(v2, "TEST-") {
		t.Fatal("the default profile changed: update this test")
	}
	writeFile(t, prof, v2)
	// A listener change in the same reload is refused (it takes a restart); the rate limit applies.
	writeFile(t, cfg, strings.Replace(strings.Replace(readFile(t, cfg), "listen: 127.0.0.1:0", "listen: 127.0.0.1:1", 1), "rate-limit: 5/s", "rate-limit: 7/m", 1))
	hup := func() {
		t.Helper()
		if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	hup()
	waitLog(t, s, "configuration reloaded", 1, 10*time.Second)
	log := s.log.String()
	for _, w := range []string{"profiles_changed=[implant-identity]", "serve.rate-limit=7/m", `setting=serve.listen running=127.0.0.1:0 configured=127.0.0.1:1`} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	if code, _ := issueCN(t, c, "DEMO-00000002"); code != 400 {
		t.Fatalf("issue under the old rule after the reload: %d, want 400", code)
	}
	if code, body := issueCN(t, c, "TEST-00000001"); code != 201 {
		t.Fatalf("issue under the new rule: %d %s", code, body)
	}

	// A broken profile: the reload is refused with the reason, and the previous profile serves on.
	writeFile(t, prof, strings.Replace(v2, "validity: 15y", "validity: soon", 1))
	hup()
	waitLog(t, s, "configuration reload refused", 1, 10*time.Second)
	if !strings.Contains(s.log.String(), prof) || !strings.Contains(s.log.String(), "validity") {
		t.Errorf("the refusal does not name the file and field:\n%s", s.log.String())
	}
	if code, body := issueCN(t, c, "TEST-00000002"); code != 201 {
		t.Fatalf("issue after a refused reload: %d %s", code, body)
	}

	// The 15 s server certificate renews itself at two thirds of its lifetime, while the same process serves.
	deadline := start.Add(30 * time.Second)
	for servedSerial(t, addr, pool).Cmp(first) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the server certificate was not renewed within 30 s:\n%s", s.log.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	waitLog(t, s, "server TLS certificate renewed", 1, time.Second)
	if code, body := issueCN(t, c, "TEST-00000003"); code != 201 {
		t.Fatalf("issue after renewal: %d %s", code, body)
	}
	s.stop(t)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A data directory initialised on PostgreSQL remembers it: later commands need no --db, another --db is
// refused naming both stores, and the password is never printed.
func TestRememberedPostgresStore(t *testing.T) {
	bin := buildKeyward(t)
	dsn := storetest.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// Trust authentication ignores the password; it is here to be redacted.
	u.User = url.UserPassword(u.User.Username(), "s3cret-pw")
	dsn = u.String()
	data := filepath.Join(t.TempDir(), "kw")
	r := runner{t, bin}
	r.run("init", "--data", data, "--db", dsn)
	if out := string(r.run("ca", "list", "--data", data)); !strings.Contains(out, "dev/demo-implant") {
		t.Fatalf("ca list without --db: %s", out)
	}
	if _, err := os.Stat(filepath.Join(data, "keyward.db")); !os.IsNotExist(err) {
		t.Fatal("a SQLite store appeared beside the remembered PostgreSQL one")
	}
	code, _, errOut := runEnv(t, bin, []string{"KEYWARD_DB=sqlite:" + filepath.Join(data, "keyward.db")}, "ca", "list", "--data", data)
	if code != 2 || !strings.Contains(errOut, "KEYWARD_DB sqlite:") || strings.Contains(errOut, "s3cret") || !strings.Contains(errOut, "xxxxx") {
		t.Fatalf("another store: exit %d\n%s", code, errOut)
	}
	code, out, errOut := runEnv(t, bin, nil, "config", "show", "--data", data)
	if code != 0 || !strings.Contains(out, "xxxxx") {
		t.Fatalf("config show: %d %s %s", code, out, errOut)
	}
	for _, o := range []string{out, errOut} {
		if strings.Contains(o, "s3cret") {
			t.Fatalf("the password was printed:\n%s", o)
		}
	}
}

// freshestCRL returns the URL in a CRL's freshestCRL extension.
func freshestCRL(t *testing.T, publicURL string, caCert *x509.Certificate) string {
	t.Helper()
	resp, err := http.Get(publicURL + revocation.CRLPath(caCert))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("CRL: %v (%d)", err, resp.StatusCode)
	}
	for _, e := range crl.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 46}) {
			return string(regexp.MustCompile(`https?://[\x21-\x7e]+`).Find(e.Value))
		}
	}
	t.Fatal("the CRL has no freshestCRL extension")
	return ""
}

func TestPublicURLDefaultAndRepublish(t *testing.T) {
	bin := buildKeyward(t)
	data := filepath.Join(t.TempDir(), "kw")
	r := runner{t, bin}
	r.run("init", "--data", data)
	chain := r.run("ca", "export", "--data", data, "--env", "dev", "--product", "demo-implant")
	b, _ := pem.Decode(chain)
	caCert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	r.run("revocation", "filter", "--data", data, "--env", "dev", "--product", "demo-implant", "--out", filepath.Join(t.TempDir(), "f.kwf"))
	pub := "127.0.0.1:" + freePort(t)

	// No --public-url: it is derived from --public-listen.
	s, addrs := startServerAddrs(t, bin, []*regexp.Regexp{servingRe, publicRe}, "serve", "--data", data, "--listen", "127.0.0.1:0", "--public-listen", pub)
	if got, want := freshestCRL(t, addrs[1], caCert), "http://"+pub+"/crl/"; !strings.HasPrefix(got, want) {
		t.Fatalf("freshestCRL %q, want %s...", got, want)
	}
	if strings.Contains(s.log.String(), "republished") {
		t.Fatalf("a first start republished:\n%s", s.log.String())
	}
	s.stop(t)

	// A new public URL: every CRL and filter is published again before serving.
	s, addrs = startServerAddrs(t, bin, []*regexp.Regexp{servingRe, publicRe}, "serve", "--data", data, "--listen", "127.0.0.1:0", "--public-listen", pub,
		"--public-url", "http://crl.example.test:8080")
	log := s.log.String()
	if !strings.Contains(log, "public URL is now http://crl.example.test:8080: republished the CRLs of ") || !strings.Contains(log, "dev/demo-implant") || !strings.Contains(log, "filters of dev/demo-implant") {
		t.Fatalf("no republication:\n%s", log)
	}
	if got := freshestCRL(t, addrs[1], caCert); !strings.HasPrefix(got, "http://crl.example.test:8080/crl/") {
		t.Fatalf("freshestCRL %q after the change", got)
	}
	s.stop(t)

	// The same URL again: nothing to republish.
	s, _ = startServerAddrs(t, bin, []*regexp.Regexp{servingRe, publicRe}, "serve", "--data", data, "--listen", "127.0.0.1:0", "--public-listen", pub,
		"--public-url", "http://crl.example.test:8080")
	if strings.Contains(s.log.String(), "republished") {
		t.Fatalf("an unchanged URL republished:\n%s", s.log.String())
	}
	s.stop(t)
}
