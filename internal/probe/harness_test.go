package probe_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/probe"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/revocation/filter"
	"github.com/keyward/keyward/pkg/verify"
)

func TestMain(m *testing.M) { pkitest.Main(m) }

// hierarchyYAML declares dev and staging with a product line that issues every default profile, and an
// offline production root.
const hierarchyYAML = `organization: Keyward Probe Test
environments:
  dev:
    root: {algorithm: ecdsa-p256, validity: 25y}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity, gateway-identity, cloud-service]}
  staging:
    root: {algorithm: ecdsa-p256, validity: 25y}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity, gateway-identity, cloud-service]}
  production:
    root: {algorithm: ecdsa-p384, validity: 25y, offline: true}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity, gateway-identity]}
`

// env is an initialised data directory, opened, with the directory the probe publishes revocation objects
// to and an HTTP server that serves that directory as the public listener would (the profiles' CRL
// distribution points name it).
type env struct {
	t       *testing.T
	node    *node.Node
	publish string
	http    *httptest.Server
	root    *x509.Certificate
}

var envOnce sync.Mutex

func newEnv(t *testing.T) *env {
	t.Helper()
	envOnce.Lock() // two inits at once would share nothing, but they would share the 2 cores
	defer envOnce.Unlock()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keyward.yaml"), []byte(hierarchyYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: dir, Warn: io.Discard}, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	e := &env{t: t, publish: t.TempDir()}
	e.http = httptest.NewServer(http.FileServer(http.Dir(e.publish)))
	t.Cleanup(e.http.Close)
	// The profiles' CRL distribution points name this test's public objects; no OCSP responder.
	profiles, _ := filepath.Glob(filepath.Join(dir, "profiles", "*.yaml"))
	if len(profiles) == 0 {
		t.Fatal("init wrote no profiles")
	}
	for _, p := range profiles {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "http://127.0.0.1:8080/crl/", e.http.URL+"/crl/")
		s = strings.ReplaceAll(s, "ocsp_servers: ['http://127.0.0.1:8080/ocsp']", "ocsp_servers: []")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if e.node, err = node.Open(ctx, node.Options{Dir: dir, Warn: io.Discard}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.node.Close() })
	chain, err := e.node.RA.Chain(ctx, "dev", "")
	if err != nil {
		t.Fatal(err)
	}
	if e.root, err = x509.ParseCertificate(chain[0]); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) authority() probe.Authority {
	return probe.Authority{RA: e.node.RA, Revocation: revocation.New(e.node.RA, e.node.CA, e.node.Store), Principal: ra.Principal{ID: "probe:test", Role: ra.RoleAdmin}}
}

// options are a run's options with the test's publication directory.
func (e *env) options(side probe.Side) probe.Options {
	return probe.Options{Env: "dev", Side: side, Settle: time.Second, Wait: 30 * time.Second,
		CRL: revocation.CRLConfig{BaseURL: e.http.URL, SpoolDir: e.node.Dir},
		Publish: func(path string, data []byte) error {
			file := filepath.Join(e.publish, filepath.FromSlash(strings.TrimPrefix(path, "/")))
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				return err
			}
			return os.WriteFile(file, data, 0o644)
		}}
}

// filter returns the newest dev revocation filter the probe published, or nil before it has.
func (e *env) filter() *filter.Filter {
	data, err := os.ReadFile(filepath.Join(e.publish, "filter", "dev.kwf"))
	if err != nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.root)
	f, err := filter.Verify(data, filter.VerifyOptions{Roots: pool, Environment: "dev"})
	if err != nil {
		e.t.Errorf("published filter: %v", err)
		return nil
	}
	return f
}

// verifier is a correctly configured relying party: the dev root pinned, no intermediates of its own, the
// roles accepted, the TLS side checked, revocation by the newest published filter, fail-closed.
func (e *env) verifier(roles []certpolicy.Role, usage x509.ExtKeyUsage) *verify.Verifier {
	v, err := verify.New(verify.Options{Anchors: []*x509.Certificate{e.root}, Roles: roles, Usage: usage, ClockSkew: 5 * time.Minute,
		Revocation: verify.Revocation{Policy: verify.FailClosed, Filter: e.filter()}})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// selfCert is a TLS identity for a test peer whose own certificate nobody checks (the probe as a client
// verifies nothing of the server).
func selfCert(t *testing.T) tls.Certificate {
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

// connectDevice dials the probe's listener over and over, as a device retrying its server would, with the
// configuration config returns for each connection, until stop is closed.
func connectDevice(addr string, config func() *tls.Config, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		tc := tls.Client(c, config())
		_ = tc.SetDeadline(time.Now().Add(15 * time.Second))
		_ = tc.Handshake()
		_ = tc.Close()
	}
}

// wantResults compares a report's results with want (case → result); a case want does not name must PASS,
// but for the two that are N/A by nature (p-192 always; wrong-name as a client).
func wantResults(t *testing.T, r *probe.Report, want map[string]string) {
	t.Helper()
	if len(r.Cases) != 17 {
		t.Fatalf("%d cases, want the catalogue's 17", len(r.Cases))
	}
	for _, c := range r.Cases {
		t.Logf("%-22s %-4s expected %-8s alert %-30q %s", c.Name, c.Result, c.Expected, c.Alert, c.Observed)
	}
	for _, c := range r.Cases {
		w, ok := want[c.Name]
		if !ok {
			w = probe.Pass
			if c.Name == probe.CaseP192 || (c.Name == probe.CaseWrongName && r.As == probe.Client) {
				w = probe.NA
			}
		}
		if c.Result != w {
			t.Errorf("%s: %s, want %s (expected %s, observed %s)", c.Name, c.Result, w, c.Expected, c.Observed)
		}
	}
}

func countCerts(t *testing.T, s store.Store) int {
	t.Helper()
	certs, err := s.ListCertificates(context.Background(), store.CertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

// lockedBuffer collects a child process's output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
