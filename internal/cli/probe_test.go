package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/revocation/filter"
	"github.com/keyward/keyward/pkg/verify"
)

func probeServerCert(t *testing.T) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// TestProbeTLS runs 'keyward probe tls' end to end on the default hierarchy (dev alone, so other-environment-root
// is N/A): against a device that checks its clients with pkg/verify
// (exit 0), one that checks nothing (exit 10, the report naming the failures), and the refusals: production
// (4), a target that is down (7), usage mistakes (2); each writes its report, its HTML and the data
// directory's copy only when it ran.
func TestProbeTLS(t *testing.T) {
	dir := initDir(t)
	root := parsePEMCerts(t, mustKW(t, "ca", "export", "--data", dir, "--env", "dev"))[0]
	publish := t.TempDir()
	good := pkitest.ServeTLS(t, func() *tls.Config {
		o := verify.Options{Anchors: []*x509.Certificate{root}, Roles: []certpolicy.Role{certpolicy.Gateway}, Usage: x509.ExtKeyUsageClientAuth,
			Revocation: verify.Revocation{Policy: verify.FailClosed}}
		if data, err := os.ReadFile(filepath.Join(publish, "filter", "dev.kwf")); err == nil {
			pool := x509.NewCertPool()
			pool.AddCert(root)
			if o.Revocation.Filter, err = filter.Verify(data, filter.VerifyOptions{Roots: pool, Environment: "dev"}); err != nil {
				t.Error(err)
			}
		}
		v, err := verify.New(o)
		if err != nil {
			t.Error(err)
		}
		cfg, err := v.ServerConfig(probeServerCert(t))
		if err != nil {
			t.Error(err)
		}
		return cfg
	})
	broken := pkitest.ServeTLS(t, func() *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{probeServerCert(t)}}
	})
	out := t.TempDir()
	copies := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "reports", "probe", "*-dev.json"))
		return m
	}

	report := filepath.Join(out, "good.json")
	stdout := kwCode(t, ExitOK, "probe", "tls", "--data", dir, "--target", good, "--env", "dev", "--as", "client", "--out", report,
		"--html", filepath.Join(out, "good.html"), "--publish-dir", publish)
	if !strings.Contains(stdout, "PASS: 17 cases, 14 PASS, 0 FAIL, 3 N/A") {
		t.Errorf("stdout:\n%s", stdout)
	}
	if len(copies()) != 1 {
		t.Fatalf("copies %v", copies())
	}
	if st, err := os.Stat(copies()[0]); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("copy %v %v", st, err)
	}
	if h, err := os.ReadFile(filepath.Join(out, "good.html")); err != nil || !strings.Contains(string(h), "<!DOCTYPE html>") {
		t.Errorf("html: %v", err)
	}

	time.Sleep(1100 * time.Millisecond) // reports are named by the second
	report = filepath.Join(out, "broken.json")
	stdout, stderr, code := kw(t, "probe", "tls", "--data", dir, "--target", broken, "--env", "dev", "--as", "client", "--out", report, "--json")
	if code != ExitFindings || !strings.Contains(stderr, "10 of 17 cases FAILed") {
		t.Fatalf("broken device: exit %d, stderr %s", code, stderr)
	}
	var rep struct {
		Kind    string `json:"kind"`
		Summary struct {
			Fail   int    `json:"fail"`
			Result string `json:"result"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Kind != "probe-tls" || rep.Summary.Fail != 10 || rep.Summary.Result != "FAIL" {
		t.Errorf("--json report: %+v %v", rep, err)
	}
	data, err := os.ReadFile(report)
	if err != nil || !strings.Contains(string(data), `"result": "FAIL"`) {
		t.Errorf("report file: %v", err)
	}
	if len(copies()) != 2 {
		t.Errorf("copies %v", copies())
	}

	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	_ = down.Close()
	for _, tc := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"--target", good, "--env", "production", "--as", "client"}, ExitDenied, "probes are refused against production CAs"},
		{[]string{"--listen", "127.0.0.1:0", "--name", "x.services.example.com", "--env", "production", "--as", "server"}, ExitDenied, "refused against production CAs"},
		{[]string{"--target", downAddr, "--env", "dev", "--as", "client"}, ExitUnavailable, "cannot connect to " + downAddr},
		{[]string{"--target", good, "--env", "dev", "--as", "sideways"}, ExitUsage, `--as "sideways"`},
		{[]string{"--target", good, "--env", "dev", "--as", "server"}, ExitUsage, "--target is for --as client"},
		{[]string{"--listen", "127.0.0.1:0", "--env", "dev", "--as", "server"}, ExitUsage, "--name"},
		{[]string{"--target", good, "--as", "client"}, ExitUsage, "env"},
		{[]string{"--target", good, "--env", "dev", "--as", "client", "--client-cert", "/nonexistent.pem", "--client-key", "/nonexistent.key"}, ExitBadRequest, "(--client-cert)"},
	} {
		file := filepath.Join(out, "refused.json")
		_, stderr, code := kw(t, append([]string{"probe", "tls", "--data", dir, "--out", file}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.text) {
			t.Errorf("%v: exit %d, want %d naming %q: %s", tc.args, code, tc.code, tc.text, stderr)
		}
		if _, err := os.Stat(file); err == nil {
			t.Errorf("%v wrote a report", tc.args)
		}
	}
	if len(copies()) != 2 {
		t.Errorf("a refused run left a copy: %v", copies())
	}
}
