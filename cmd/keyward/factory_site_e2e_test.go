package main

// A factory site against the real binary: a site CA whose key is in a SoftHSM2 token, a site data directory
// packaged at headquarters, 'keyward factory serve' enrolling devices over EST at the site with no connection
// to headquarters (and refusing what the site CA may not issue), a batch pre-issued at the site on the same
// site CA and quota, two successive signed exports of the site's issuance log and the batch's final export
// reconciled at headquarters (a tampered and a replayed one refused, storing nothing), and a site-provisioned
// device renewing its identity with headquarters.

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
)

// server is a keyward process serving HTTPS.
type server struct {
	cmd *exec.Cmd
	url string
	log *strings.Builder
}

// startServer runs keyward with args and waits for the line matching addrRe that names its address.
func startServer(t *testing.T, bin string, addrRe *regexp.Regexp, args ...string) *server {
	t.Helper()
	s, addrs := startServerAddrs(t, bin, []*regexp.Regexp{addrRe}, args...)
	s.url = "https://" + addrs[0]
	return s
}

// startServerAddrs runs keyward with args and waits until each of res has matched a line of its log (a server
// with several listeners names each on a line of its own); it returns the first submatch of each.
func startServerAddrs(t *testing.T, bin string, res []*regexp.Regexp, args ...string) (*server, []string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, log: &strings.Builder{}}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	type match struct {
		i    int
		addr string
	}
	found := make(chan match, len(res))
	go func() {
		seen := make([]bool, len(res))
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.log.WriteString(sc.Text() + "\n")
			for i, re := range res {
				if m := re.FindStringSubmatch(sc.Text()); m != nil && !seen[i] {
					seen[i] = true
					found <- match{i, m[1]}
				}
			}
		}
	}()
	addrs := make([]string, len(res))
	timeout := time.After(60 * time.Second)
	for range res {
		select {
		case m := <-found:
			addrs[m.i] = m.addr
		case <-timeout:
			t.Fatalf("keyward %s did not start:\n%s", strings.Join(args, " "), s.log.String())
		}
	}
	return s, addrs
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.log.String())
	}
}

// fail runs keyward with args, which must exit with code want and print msg on stderr.
func (r runner) fail(want int, msg string, args ...string) {
	r.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(r.bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != want || !strings.Contains(stderr.String(), msg) {
		r.t.Fatalf("keyward %s: %v, want exit %d with %q\nstdout: %.1000s\nstderr: %.2000s", strings.Join(args, " "), err, want, msg, stdout.String(), stderr.String())
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFactorySiteServeExportReconcile(t *testing.T) {
	token := pkcs11test.NewToken(t)
	t.Setenv("KEYWARD_PKCS11_PIN", pkcs11test.PIN)
	const (
		env, product, site = "dev", "demo-implant", "site-b"
		siteCA             = env + "/" + product + "/" + site
		enrolled, batched  = 6, 4 // certificates issued over EST at the site, and pre-issued in a batch there
		quota              = enrolled + batched
	)
	r := runner{t, buildKeyward(t)}
	dir := t.TempDir()
	hq, siteDir := filepath.Join(dir, "hq"), filepath.Join(dir, "site")
	r.run("init", "--data", hq)
	r.run("factory", "site-ca", "--data", hq, "--env", env, "--product", product, "--site", site,
		"--quota", fmt.Sprint(quota), "--valid-for", "30d", "--keystore", token)
	st := filepath.Join(dir, "st-b")
	other := filepath.Join(dir, "st-c")
	r.run("station", "add", "--data", hq, "--env", env, "--site", site, "--product", product, "--name", "site-b-01", "--out", st)
	r.run("station", "add", "--data", hq, "--env", env, "--site", "site-c", "--product", product, "--name", "site-c-01", "--out", other)

	var pkg struct {
		Dir        string   `json:"dir"`
		SiteCA     string   `json:"site_ca"`
		Stations   []string `json:"stations"`
		KeyCustody string   `json:"key_custody"`
		AuditHead  string   `json:"headquarters_audit_head"`
	}
	r.json(&pkg, "factory", "site-package", "--data", hq, "--env", env, "--product", product, "--site", site, "--out", siteDir, "--json")
	if pkg.SiteCA != siteCA || len(pkg.Stations) != 1 || pkg.Stations[0] != "site-b-01" || pkg.KeyCustody != "pkcs11" || len(pkg.AuditHead) != 64 {
		t.Fatalf("site package: %+v", pkg)
	}
	// The site directory holds no hierarchy key: neither the root's nor an issuing CA's.
	var keys []struct {
		URI     string `json:"uri"`
		Purpose string `json:"purpose"`
	}
	r.json(&keys, "key", "list", "--data", siteDir, "--json")
	if len(keys) != 2 {
		t.Fatalf("site keys: %+v; want the site CA key and its export signer only", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k.URI, "pkcs11:") {
			t.Fatalf("site key %+v is not in the site HSM", k)
		}
	}
	r.fail(2, "factory serve", "serve", "--data", siteDir, "--listen", "127.0.0.1:0")
	r.fail(1, "site's data directory", "init", "--data", siteDir)

	// The site also pre-issues a batch on the same site CA, in its HSM, for devices that cannot generate keys;
	// it counts against the same quota.
	batch := filepath.Join(dir, "site.kwb")
	r.run("factory", "batch", "--data", siteDir, "--env", env, "--product", product, "--site", site, "--count", fmt.Sprint(batched),
		"--first-serial", "DEMO-60000001", "--keystore", token, "--out", batch)
	r.run("factory", "inject", "--batch", batch, "--device-serial", "HW-A")

	srv, addrs := startServerAddrs(t, r.bin, []*regexp.Regexp{regexp.MustCompile(`enrolling on https://(\S+) `), regexp.MustCompile(`serving metrics on http://(\S+)/metrics`)},
		"factory", "serve", "--data", siteDir, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	srv.url = "https://" + addrs[0]
	trust := filepath.Join(siteDir, "tls", "ca.pem")
	enroll := func(stDir, serial string) []string {
		return []string{"device", "enroll", "--server", srv.url, "--product", product, "--trust", trust,
			"--station", filepath.Join(stDir, "station.pem"), "--station-key", filepath.Join(stDir, "station.key"), "--serial", serial,
			"--key-out", filepath.Join(dir, serial+".key"), "--out", filepath.Join(dir, serial+".pem")}
	}
	for i := 1; i <= 3; i++ {
		r.run(enroll(st, fmt.Sprintf("DEMO-2000000%d", i))...)
	}
	c1 := readCert(t, filepath.Join(dir, "DEMO-20000001.pem"))
	if c1.Issuer.CommonName != "demo-implant site-b dev" || c1.Subject.CommonName != "DEMO-20000001" {
		t.Fatalf("site-enrolled certificate: issuer %q subject %q", c1.Issuer.CommonName, c1.Subject.CommonName)
	}
	// Refusals at the site: another site's station, a serial outside the product line's rule, the same device
	// twice, and a renewal (which happens at headquarters).
	r.fail(4, "no registered factory station", enroll(other, "DEMO-20000009")...)
	r.fail(3, "DEMO", enroll(st, "OTHER-1")...)
	r.fail(6, "already enrolled", enroll(st, "DEMO-20000001")...)
	r.fail(4, "renews its identity with headquarters", "device", "renew", "--server", srv.url, "--product", product, "--trust", trust,
		"--cert", filepath.Join(dir, "DEMO-20000001.pem"), "--key", filepath.Join(dir, "DEMO-20000001.key"), "--out", filepath.Join(dir, "renew-at-site.pem"))

	// The site server's metrics (--metrics-listen, no token): three enrollments by the site CA, the EST
	// requests by route and status with their latency, the refusals, the site CA key's signatures.
	siteMetrics := scrapeMetrics(t, "http://"+addrs[1]+"/metrics")
	for _, re := range []string{
		`(?m)^keyward_issuances_total\{action="est\.enroll",ca="` + regexp.QuoteMeta(siteCA) + `",profile="implant-identity"\} 3$`,
		`(?m)^keyward_http_requests_total\{code="200",method="POST",route="POST /\.well-known/est/[^"]*simpleenroll"\} 3$`,
		`(?m)^keyward_http_request_duration_seconds_count\{method="POST",route="POST /\.well-known/est/[^"]*simpleenroll"\} [1-9][0-9]*$`,
		`(?m)^keyward_refusals_total\{action="est\.enroll",reason="conflict"\} 1$`,
		`(?m)^keyward_sign_duration_seconds_count\{backend="pkcs11",purpose="ca-signing"\} [3-9]$`,
		`(?m)^keyward_certificates_in_renewal_window\{profile="implant-identity"\} 0$`,
	} {
		if !regexp.MustCompile(re).MatchString(siteMetrics) {
			t.Errorf("factory serve /metrics lacks %s", re)
		}
	}
	if t.Failed() {
		t.Fatalf("factory serve /metrics:\n%s", siteMetrics)
	}

	// First export: three certificates.
	type exportSum struct {
		Seq     int64  `json:"seq"`
		Records int64  `json:"records"`
		SiteCA  string `json:"site_ca"`
	}
	var x1 exportSum
	log1 := filepath.Join(dir, "log1.kwx")
	r.json(&x1, "factory", "export", "--data", siteDir, "--out", log1, "--json")
	if x1.Seq != 1 || x1.Records != 3 || x1.SiteCA != siteCA {
		t.Fatalf("first export: %+v", x1)
	}

	// At headquarters: a tampered copy is refused and stores nothing; the real one records three devices.
	var auditBefore struct {
		Events int64 `json:"events"`
	}
	r.json(&auditBefore, "audit", "verify", "--data", hq, "--json")
	data, err := os.ReadFile(log1)
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(dir, "tampered.kwx")
	i := bytes.Index(data, []byte("DEMO-20000002"))
	if i < 0 {
		t.Fatal("log1 does not name DEMO-20000002")
	}
	data[i+len("DEMO-2000000")] = '7'
	if err := os.WriteFile(tampered, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r.fail(3, "", "factory", "reconcile", "--data", hq, "--env", env, "--site", site, tampered)
	var auditAfter struct {
		Events int64 `json:"events"`
	}
	r.json(&auditAfter, "audit", "verify", "--data", hq, "--json")
	if auditAfter.Events != auditBefore.Events {
		t.Fatalf("a refused reconciliation wrote %d audit events", auditAfter.Events-auditBefore.Events)
	}
	type reconciled struct {
		Devices      int64 `json:"devices_recorded"`
		Certificates int64 `json:"certificates_recorded"`
		Seq          int64 `json:"seq"`
	}
	var rec []reconciled
	r.json(&rec, "factory", "reconcile", "--data", hq, "--env", env, "--site", site, log1, "--json")
	if len(rec) != 1 || rec[0].Devices != 3 || rec[0].Certificates != 3 {
		t.Fatalf("reconcile log1: %+v", rec)
	}
	r.fail(6, "not newer", "factory", "reconcile", "--data", hq, "--env", env, "--site", site, log1)

	// More enrollments at the site up to the quota, then a second export: headquarters records only the new.
	r.run(enroll(st, "DEMO-20000004")...)
	r.run(enroll(st, "DEMO-20000005")...)
	r.run(enroll(st, "DEMO-20000006")...)
	r.fail(4, "quota", enroll(st, "DEMO-20000007")...)
	srv.stop(t)
	var x2 exportSum
	log2 := filepath.Join(dir, "log2.kwx")
	r.json(&x2, "factory", "export", "--data", siteDir, "--out", log2, "--json")
	if x2.Seq != 2 || x2.Records != enrolled {
		t.Fatalf("second export: %+v", x2)
	}
	r.json(&rec, "factory", "reconcile", "--data", hq, "--env", env, "--site", site, log2, "--json")
	if len(rec) != 1 || rec[0].Devices != 3 || rec[0].Seq != 2 {
		t.Fatalf("reconcile log2: %+v", rec)
	}
	var devices []struct {
		Serial    string `json:"serial"`
		Site      string `json:"site"`
		StationID string `json:"station"`
	}
	r.json(&devices, "device", "list", "--data", hq, "--json")
	got := map[string]bool{}
	for _, d := range devices {
		if d.Site != site || d.StationID != "site-b-01" {
			t.Fatalf("registry entry %+v", d)
		}
		got[d.Serial] = true
	}
	if len(got) != enrolled {
		t.Fatalf("registry at headquarters holds %d devices (%v), want %d", len(got), got, enrolled)
	}
	var verify struct {
		OK bool `json:"ok"`
	}
	for _, d := range []string{siteDir, hq} {
		r.json(&verify, "audit", "verify", "--data", d, "--json")
		if !verify.OK {
			t.Fatalf("audit chain of %s: %+v", d, verify)
		}
	}

	// The batch closes at the site and reconciles at headquarters: one device, three unused credentials
	// revoked and their keys destroyed in the site HSM.
	batchLog := filepath.Join(dir, "batch.kwx")
	r.run("factory", "export", "--data", siteDir, "--batch", batch, "--out", batchLog, "--final")
	var brec []struct {
		Devices       int64 `json:"devices_recorded"`
		Revoked       int64 `json:"revoked"`
		KeysDestroyed int64 `json:"keys_destroyed"`
	}
	r.json(&brec, "factory", "reconcile", "--data", hq, "--env", env, "--site", site, "--final", "--keystore", token, batchLog, "--json")
	if len(brec) != 1 || brec[0].Devices != 1 || brec[0].Revoked != batched-1 || brec[0].KeysDestroyed != batched-1 {
		t.Fatalf("reconcile of the site's batch: %+v", brec)
	}

	// A device provisioned at the site renews with headquarters, presenting its site-CA certificate (early, so
	// an operator allows it first: implant certificates renew in the last fifth of their validity).
	r.run("device", "force-renew", "DEMO-20000001", "--data", hq)
	hqSrv := startServer(t, r.bin, regexp.MustCompile(`serving https://(\S+) `), "serve", "--data", hq, "--listen", "127.0.0.1:0")
	r.run("device", "renew", "--server", hqSrv.url, "--product", product, "--trust", filepath.Join(hq, "tls", "ca.pem"),
		"--cert", filepath.Join(dir, "DEMO-20000001.pem"), "--key", filepath.Join(dir, "DEMO-20000001.key"), "--out", filepath.Join(dir, "renewed.pem"))
	renewed := readCert(t, filepath.Join(dir, "renewed.pem"))
	if renewed.Subject.CommonName != "DEMO-20000001" || renewed.Issuer.CommonName == c1.Issuer.CommonName {
		t.Fatalf("renewed at headquarters: issuer %q subject %q", renewed.Issuer.CommonName, renewed.Subject.CommonName)
	}
	hqSrv.stop(t)
}

// scrapeMetrics GETs a /metrics URL and returns its Prometheus text.
func scrapeMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, b)
	}
	return string(b)
}
