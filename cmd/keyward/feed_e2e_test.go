package main

// Every state change made by a CLI process reaches every running server within the propagation time, without a
// restart, through the change feed: on SQLite a CLI process beside one server, on PostgreSQL two servers on one
// database. Each scenario starts its own servers on a fresh data directory or database, each with a public
// listener (CRLs and OCSP), and logs how long each server took.

import (
	"bytes"
	"context"
	"crypto"
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
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/keyward/keyward/internal/store/storetest"
	"github.com/keyward/keyward/pkg/est"
)

// propagation is how soon a change committed by one process must take effect on every running server.
const propagation = 2 * time.Second

// The product line every scenario works on, and its issuing CA's first two generations.
const (
	product = "demo-implant"
	gen1    = "dev/demo-implant"
	gen2    = "dev/demo-implant@2"
)

// apiClient posts issuance requests to one server.
type apiClient struct {
	url, token string
	http       *http.Client
}

func newAPIClient(t *testing.T, url, dataDir string) *apiClient {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &apiClient{url: url, token: strings.TrimSpace(string(token)),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

// issue posts a CSR for a new key and serial under the default product line; it returns the status and body.
func (c *apiClient) issue(t *testing.T, serial int) (int, string) {
	t.Helper()
	return c.issueIn(t, "", "", serial)
}

// issueIn posts a CSR for a new key and serial under env's product line (the server's defaults when empty).
func (c *apiClient) issueIn(t *testing.T, env, productLine string, serial int) (int, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("DEMO-%08d", serial)}}, k)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"profile": "implant-identity", "environment": env, "product_line": productLine,
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
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

// issued is a certificate a server issued through the API: the certificate, the id of the CA that issued it,
// and that CA's certificate.
type issued struct {
	cert     *x509.Certificate
	issuerID string
	issuer   *x509.Certificate
}

// decodeIssued parses the body of a 201 answer to POST /api/v1/certificates.
func decodeIssued(t *testing.T, body string) issued {
	t.Helper()
	var v struct {
		Issuer string `json:"issuer"`
		PEM    string `json:"pem"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("issuance answer: %v\n%s", err, body)
	}
	b, _ := pem.Decode([]byte(v.PEM))
	if b == nil {
		t.Fatalf("issuance answer holds no PEM certificate: %s", body)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return issued{cert: cert, issuerID: v.Issuer}
}

// issueCert issues a certificate for serial, which must succeed, with the certificate of its issuer from the
// chain the server serves for the product line.
func (c *apiClient) issueCert(t *testing.T, serial int) issued {
	t.Helper()
	status, body := c.issue(t, serial)
	if status != http.StatusCreated {
		t.Fatalf("issue DEMO-%08d on %s: %d %s", serial, c.url, status, body)
	}
	is := decodeIssued(t, body)
	is.issuer = c.issuerOf(t, is.cert)
	return is
}

// issuerOf returns the CA certificate that signed leaf, from the chain the server serves for the product line
// (during a rollover it holds the earlier generations that still answer for what they issued).
func (c *apiClient) issuerOf(t *testing.T, leaf *x509.Certificate) *x509.Certificate {
	t.Helper()
	req, _ := http.NewRequest("GET", c.url+"/api/v1/cas/dev/chain?product="+product, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET chain: %d %s", resp.StatusCode, data)
	}
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		ca, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(ca.SubjectKeyId, leaf.AuthorityKeyId) && leaf.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	t.Fatalf("no certificate of the served chain signed %s (issuer %q)", leaf.Subject.CommonName, leaf.Issuer.CommonName)
	return nil
}

// caKey returns the key URI of CA id.
func caKey(t *testing.T, s *setup, id string) string {
	t.Helper()
	var cas []struct {
		ID     string `json:"id"`
		KeyURI string `json:"key_uri"`
	}
	s.r.json(&cas, append([]string{"ca", "list", "--json"}, s.flags...)...)
	for _, c := range cas {
		if c.ID == id {
			return c.KeyURI
		}
	}
	t.Fatalf("no CA %s", id)
	return ""
}

// ocspStatus names an OCSP certificate status.
func ocspStatus(status int) string {
	switch status {
	case ocsp.Good:
		return "good"
	case ocsp.Revoked:
		return "revoked"
	case ocsp.Unknown:
		return "unknown"
	}
	return fmt.Sprint(status)
}

var oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// ocspRequestDER returns an OCSP request for cert (CertID hashed with SHA-1, as OpenSSL sends it); with a nonce
// it carries id-pkix-ocsp-nonce (RFC 8954), which golang.org/x/crypto/ocsp cannot add, so that the responder
// signs afresh instead of answering from its cache.
func ocspRequestDER(t *testing.T, cert, issuer *x509.Certificate, nonce []byte) []byte {
	t.Helper()
	der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	if nonce == nil {
		return der
	}
	// RFC 6960 4.1.1, the structures golang.org/x/crypto/ocsp marshals, with requestExtensions.
	type certID struct {
		HashAlgorithm pkix.AlgorithmIdentifier
		NameHash      []byte
		IssuerKeyHash []byte
		SerialNumber  *big.Int
	}
	type request struct{ Cert certID }
	type tbsRequest struct {
		RequestList []request
		Extensions  []pkix.Extension `asn1:"explicit,tag:2,optional"`
	}
	type ocspRequest struct{ TBSRequest tbsRequest }
	var q ocspRequest
	if _, err := asn1.Unmarshal(der, &q); err != nil {
		t.Fatal(err)
	}
	value, err := asn1.Marshal(nonce)
	if err != nil {
		t.Fatal(err)
	}
	q.TBSRequest.Extensions = []pkix.Extension{{Id: oidOCSPNonce, Value: value}}
	if der, err = asn1.Marshal(q); err != nil {
		t.Fatal(err)
	}
	return der
}

// ocspQuery asks the OCSP responder at publicURL about cert and verifies the signed answer against issuer
// (which, answering through a delegated responder, certified the responder's certificate). fresh adds a nonce.
func ocspQuery(t *testing.T, publicURL string, cert, issuer *x509.Certificate, fresh bool) (*ocsp.Response, error) {
	t.Helper()
	var nonce []byte
	if fresh {
		nonce = make([]byte, 16)
		_, _ = rand.Read(nonce)
	}
	resp, err := http.Post(publicURL+"/ocsp", "application/ocsp-request", bytes.NewReader(ocspRequestDER(t, cert, issuer, nonce)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s/ocsp: %d %s", publicURL, resp.StatusCode, body)
	}
	return ocsp.ParseResponseForCert(body, cert, issuer)
}

// node is one running server of a setup.
type node struct {
	name   string
	data   string
	srv    *server
	api    *apiClient
	public string // http:// URL of its public listener (CRLs, OCSP)
}

// setup is the servers of one scenario and the flags with which a CLI process reaches their state.
type setup struct {
	r      runner
	flags  []string // --data, and --db on PostgreSQL
	nodes  []*node
	serial int // the last device serial used
}

// cli runs keyward with args on the setup's state; it must succeed.
func (s *setup) cli(args ...string) []byte { return s.r.run(append(args, s.flags...)...) }

// next returns a device serial not used before in the setup.
func (s *setup) next() int {
	s.serial++
	return s.serial
}

// stop stops every server, which must exit cleanly.
func (s *setup) stop(t *testing.T) {
	t.Helper()
	for _, n := range s.nodes {
		n.srv.stop(t)
	}
}

var (
	servingRe = regexp.MustCompile(`serving https://(\S+) `)
	publicRe  = regexp.MustCompile(`serving public objects on (http://\S+) `)
)

// startNode runs 'keyward serve' on data with a public listener; extra are further flags (--db).
func startNode(t *testing.T, bin, name, data string, extra ...string) *node {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--public-listen", "127.0.0.1:0"}, extra...)
	srv, addrs := startServerAddrs(t, bin, []*regexp.Regexp{servingRe, publicRe}, args...)
	srv.url = "https://" + addrs[0]
	return &node{name: name, data: data, srv: srv, api: newAPIClient(t, srv.url, data), public: addrs[1]}
}

// sqliteSetup is one server on a new SQLite data directory; CLI processes work on the same directory beside it.
func sqliteSetup(t *testing.T, bin string) *setup {
	t.Helper()
	r := runner{t, bin}
	data := filepath.Join(t.TempDir(), "data")
	r.run("init", "--data", data)
	return &setup{r: r, flags: []string{"--data", data}, nodes: []*node{startNode(t, bin, "server", data)}}
}

// postgresSetup is two servers on one new PostgreSQL schema. Both use one keystore directory, as nodes sharing
// a network HSM do, so that a key generated by a CLI process (a rollover's) is there for both; each server
// keeps the keys it has used unsealed in memory, so only the change feed stops it using one destroyed by
// another process. CLI processes work through the first node's data directory.
func postgresSetup(t *testing.T, bin string) *setup {
	t.Helper()
	r := runner{t, bin}
	dsn := storetest.PostgresDSN(t)
	d1 := filepath.Join(t.TempDir(), "node1")
	r.run("init", "--data", d1, "--db", dsn)
	n1 := startNode(t, bin, "node1", d1, "--db", dsn)
	// The second node's data directory is a copy of the first's once the first has made the service TLS CA.
	d2 := filepath.Join(t.TempDir(), "node2")
	if out, err := exec.Command("cp", "-a", d1, d2).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v %s", err, out)
	}
	if err := os.RemoveAll(filepath.Join(d2, "keys")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(d1, "keys"), filepath.Join(d2, "keys")); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, bin, "node2", d2, "--db", dsn)
	return &setup{r: r, flags: []string{"--data", d1, "--db", dsn}, nodes: []*node{n1, n2}}
}

// probe asks one server whether a change has reached it: done once it answers the way it must after the
// change, an error when it answers neither that way nor the way it did before.
type probe struct {
	name  string
	check func() (done bool, err error)
}

// changeAndWatch checks that no probe sees the change yet, makes it (with a CLI process), and polls every probe
// until each sees it. A probe still answering the old way after the propagation time fails the test. It logs
// how long each probe took, measured from the end of the CLI process (which commits before it exits; the
// time it ran is logged too).
func changeAndWatch(t *testing.T, what string, change func(), probes ...probe) {
	t.Helper()
	for _, p := range probes {
		if done, err := p.check(); done || err != nil {
			t.Fatalf("%s, before %s: done=%v, %v", p.name, what, done, err)
		}
	}
	started := time.Now()
	change()
	changed := time.Now()
	t.Logf("%s: the CLI process ran %s", what, changed.Sub(started).Round(time.Millisecond))
	took := make([]time.Duration, len(probes))
	for left := len(probes); left > 0; time.Sleep(20 * time.Millisecond) {
		for i, p := range probes {
			if took[i] > 0 {
				continue
			}
			done, err := p.check()
			elapsed := time.Since(changed)
			switch {
			case err != nil:
				t.Fatalf("%s, %s after %s: %v", p.name, elapsed.Round(time.Millisecond), what, err)
			case done:
				took[i], left = elapsed, left-1
				t.Logf("%s: %s after %s", what, p.name, elapsed.Round(time.Millisecond))
			case elapsed > propagation:
				t.Fatalf("%s: %s still answers as before %s after it", what, p.name, elapsed.Round(time.Millisecond))
			}
		}
	}
}

// refusedProbe: the node's next issuance is refused with 409 and a message holding want.
func refusedProbe(t *testing.T, s *setup, n *node, want string) probe {
	return probe{n.name + " refuses issuance", func() (bool, error) {
		status, body := n.api.issue(t, s.next())
		switch {
		case status == http.StatusCreated:
			return false, nil
		case status == http.StatusConflict && strings.Contains(body, want):
			return true, nil
		}
		return false, fmt.Errorf("issuance: %d %s; want 201 before, 409 naming %q after", status, body, want)
	}}
}

// issuerProbe: the node's next issuance is by CA to, not from; the certificate issued by to is kept in got.
func issuerProbe(t *testing.T, s *setup, n *node, from, to string, got *issued) probe {
	return probe{n.name + " issues with " + to, func() (bool, error) {
		status, body := n.api.issue(t, s.next())
		if status != http.StatusCreated {
			return false, fmt.Errorf("issuance: %d %s", status, body)
		}
		switch is := decodeIssued(t, body); is.issuerID {
		case from:
			return false, nil
		case to:
			*got = is
			return true, nil
		default:
			return false, fmt.Errorf("issued by %s; want %s before, %s after", is.issuerID, from, to)
		}
	}}
}

// ocspProbe: the node's OCSP responder answers status to instead of from for is; verify checks the answer
// after the change.
func ocspProbe(t *testing.T, n *node, is *issued, from, to int, verify func(*ocsp.Response) error) probe {
	return probe{fmt.Sprintf("%s answers OCSP %s for %s", n.name, ocspStatus(to), is.cert.Subject.CommonName), func() (bool, error) {
		resp, err := ocspQuery(t, n.public, is.cert, is.issuer, false)
		switch {
		case err != nil:
			return false, err
		case resp.Status == from:
			return false, nil
		case resp.Status != to:
			return false, fmt.Errorf("OCSP %s; want %s before, %s after", ocspStatus(resp.Status), ocspStatus(from), ocspStatus(to))
		case verify != nil:
			return true, verify(resp)
		}
		return true, nil
	}}
}

// stationEnroller enrolls devices over EST through one server with the station credentials in dir, made by
// 'keyward station add --out dir'.
type stationEnroller struct {
	dir    string
	node   *node
	client *est.Client
}

// enroll enrolls a new device key for serial; it returns the HTTP status (200 on success) and the reason.
func (e *stationEnroller) enroll(t *testing.T, serial int) (int, string) {
	t.Helper()
	if e.client == nil {
		pair, err := tls.LoadX509KeyPair(filepath.Join(e.dir, "station.pem"), filepath.Join(e.dir, "station.key"))
		if err != nil {
			t.Fatal(err)
		}
		trust, err := os.ReadFile(filepath.Join(e.dir, "trust.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := est.TLSConfig(trust, &pair)
		if err != nil {
			t.Fatal(err)
		}
		// The label is the product line (docs/enrollment.md).
		if e.client, err = est.NewClient(e.node.srv.url, product, cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.client.Close)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := est.NewCSR(k, fmt.Sprintf("DEMO-%08d", serial))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = e.client.SimpleEnroll(ctx, csr, nil)
	var ee *est.Error
	switch {
	case err == nil:
		return http.StatusOK, ""
	case errors.As(err, &ee):
		return ee.StatusCode, ee.Reason
	}
	t.Fatalf("enroll through %s: %v", e.node.name, err)
	return 0, ""
}

// enrollProbe: the station's next enrollment through the node answers to instead of from (HTTP statuses);
// after the change the reason must hold want.
func enrollProbe(t *testing.T, s *setup, e *stationEnroller, from, to int, want string) probe {
	return probe{fmt.Sprintf("%s answers the station's enrollment with %d", e.node.name, to), func() (bool, error) {
		status, reason := e.enroll(t, s.next())
		switch {
		case status == from:
			return false, nil
		case status == to && strings.Contains(reason, want):
			return true, nil
		}
		return false, fmt.Errorf("enrollment: %d %s; want %d before, %d naming %q after", status, reason, from, to, want)
	}}
}

// Scenarios, each on its own setup.

// keyDestroy: the issuing CA's key destroyed; every server stops issuing with it.
func keyDestroy(t *testing.T, s *setup) {
	var probes []probe
	for _, n := range s.nodes {
		n.api.issueCert(t, s.next()) // each server holds the key's signer in memory
		probes = append(probes, refusedProbe(t, s, n, "cannot issue"))
	}
	key := caKey(t, s, gen1)
	changeAndWatch(t, "key destroy", func() { s.cli("key", "destroy", key, "--reason", "compromise drill") }, probes...)
}

// caRevoke: the issuing CA revoked; every server refuses to issue, naming the reason, and its OCSP responder
// answers revoked for a certificate it issued before.
func caRevoke(t *testing.T, s *setup) {
	var probes []probe
	for _, n := range s.nodes {
		before := n.api.issueCert(t, s.next())
		probes = append(probes, refusedProbe(t, s, n, "revoked (keyCompromise)"),
			// Everything a revoked CA issued is revoked with it, as cACompromise (RFC 5280 5.3.1).
			ocspProbe(t, n, &before, ocsp.Good, ocsp.Revoked, func(r *ocsp.Response) error {
				if r.RevocationReason != ocsp.CACompromise {
					return fmt.Errorf("revocation reason %d, want cACompromise (%d)", r.RevocationReason, ocsp.CACompromise)
				}
				return nil
			}))
	}
	changeAndWatch(t, "ca revoke", func() { s.cli("ca", "revoke", gen1, "--reason", "keyCompromise") }, probes...)
}

// caRollover: the issuing CA rolled over; every server issues with the next generation (and its OCSP responder
// answers for it), and keeps answering good for a certificate of the first.
func caRollover(t *testing.T, s *setup) {
	var probes []probe
	before := make([]issued, len(s.nodes))
	after := make([]issued, len(s.nodes))
	for i, n := range s.nodes {
		before[i] = n.api.issueCert(t, s.next())
		probes = append(probes, issuerProbe(t, s, n, gen1, gen2, &after[i]))
		// Asked once the server has issued with the next generation.
		probes = append(probes, probe{n.name + " answers OCSP good for a certificate of " + gen2, func() (bool, error) {
			if after[i].cert == nil {
				return false, nil
			}
			if after[i].issuer == nil {
				after[i].issuer = n.api.issuerOf(t, after[i].cert)
			}
			resp, err := ocspQuery(t, n.public, after[i].cert, after[i].issuer, false)
			if resp == nil && errors.As(err, new(ocsp.ResponseError)) {
				return false, nil // the responder does not serve the next generation yet
			}
			if err != nil || resp.Status != ocsp.Good {
				return false, fmt.Errorf("OCSP %v, %v; want good", resp, err)
			}
			return true, nil
		}})
	}
	changeAndWatch(t, "ca rollover", func() { s.cli("ca", "rollover", "--env", "dev", "--product", product) }, probes...)
	for i, n := range s.nodes {
		if after[i].issuer.Equal(before[i].issuer) || after[i].cert.Issuer.String() == before[i].cert.Issuer.String() {
			t.Fatalf("%s: certificate of %s issued by %q, the first generation's name", n.name, gen2, after[i].cert.Issuer)
		}
		for _, m := range s.nodes {
			resp, err := ocspQuery(t, m.public, before[i].cert, before[i].issuer, true)
			if err != nil || resp.Status != ocsp.Good {
				t.Fatalf("%s: OCSP for %s of %s after the rollover: %v %v; want good", m.name, before[i].cert.Subject.CommonName, gen1, resp, err)
			}
		}
	}
}

// supersededKey: the key of a superseded generation cannot be destroyed while that generation answers for valid
// certificates; revoked, its certificates answer revoked on every server; then its key can be destroyed, and
// every server keeps answering revoked for them through the generation's delegated OCSP responder, whose own
// key is not destroyed (the CA's key never signs OCSP answers itself).
func supersededKey(t *testing.T, s *setup) {
	old := make([]issued, len(s.nodes))
	for i, n := range s.nodes {
		old[i] = n.api.issueCert(t, s.next())
	}
	s.cli("ca", "rollover", "--env", "dev", "--product", product)
	key := caKey(t, s, gen1)
	s.r.fail(6, "still answers for", append([]string{"key", "destroy", key, "--reason", "superseded"}, s.flags...)...)

	// Revoked: every server answers revoked for the first generation's certificates, signed by its delegated
	// responder as before.
	responder := map[string]*x509.Certificate{}
	var probes []probe
	for _, n := range s.nodes {
		for i := range old {
			resp, err := ocspQuery(t, n.public, old[i].cert, old[i].issuer, false)
			if err != nil || resp.Certificate == nil {
				t.Fatalf("%s: OCSP for %s: %v %v", n.name, old[i].cert.Subject.CommonName, resp, err)
			}
			responder[n.name] = resp.Certificate
			probes = append(probes, ocspProbe(t, n, &old[i], ocsp.Good, ocsp.Revoked, nil))
		}
	}
	changeAndWatch(t, "ca revoke of the superseded generation", func() { s.cli("ca", "revoke", gen1, "--reason", "keyCompromise") }, probes...)
	for _, n := range s.nodes {
		if is := n.api.issueCert(t, s.next()); is.issuerID != gen2 {
			t.Fatalf("%s issues with %s after %s was revoked; want %s", n.name, is.issuerID, gen1, gen2)
		}
	}

	// Destroyed: the first generation's key goes; what every server answers for its certificates, from its cache
	// and signed afresh (with a nonce), over the propagation time and a margin.
	s.cli("key", "destroy", key, "--reason", "compromised")
	destroyed := time.Now()
	answers := 0
	for time.Since(destroyed) < propagation+500*time.Millisecond {
		for _, n := range s.nodes {
			for i := range old {
				for _, fresh := range []bool{false, true} {
					resp, err := ocspQuery(t, n.public, old[i].cert, old[i].issuer, fresh)
					if err != nil {
						t.Fatalf("%s: OCSP (fresh %v) for %s %s after its CA's key was destroyed: %v", n.name, fresh, old[i].cert.Subject.CommonName,
							time.Since(destroyed).Round(time.Millisecond), err)
					}
					if resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.CACompromise || !resp.Certificate.Equal(responder[n.name]) {
						t.Fatalf("%s: OCSP (fresh %v) for %s after its CA's key was destroyed: %s reason %d by %q; want revoked, cACompromise, by the same delegated responder",
							n.name, fresh, old[i].cert.Subject.CommonName, ocspStatus(resp.Status), resp.RevocationReason, resp.Certificate.Subject)
					}
					if fresh && resp.ProducedAt.Before(destroyed.Truncate(time.Second)) {
						t.Fatalf("%s: an OCSP answer to a request with a nonce was produced at %s, before the request", n.name, resp.ProducedAt)
					}
					answers++
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("key destroy of %s: %d OCSP answers over %s, every one revoked (cACompromise) and signed by its delegated responder %q",
		gen1, answers, time.Since(destroyed).Round(time.Millisecond), responder[s.nodes[0].name].Subject.CommonName)
}

// stationStates: a station added, suspended, resumed and revoked; each reaches every server's EST enrollment.
func stationStates(t *testing.T, s *setup) {
	dir := filepath.Join(t.TempDir(), "station")
	const name = "line-1-01"
	enrollers := make([]*stationEnroller, len(s.nodes))
	for i, n := range s.nodes {
		enrollers[i] = &stationEnroller{dir: dir, node: n}
	}
	watch := func(what string, from, to int, want string, args ...string) {
		var probes []probe
		for _, e := range enrollers {
			probes = append(probes, enrollProbe(t, s, e, from, to, want))
		}
		changeAndWatch(t, what, func() { s.cli(args...) }, probes...)
	}
	// Added after the servers started: its station CA is new to them too.
	var added []probe
	for _, e := range enrollers {
		added = append(added, probe{e.node.name + " enrolls through the new station", func() (bool, error) {
			if _, err := os.Stat(filepath.Join(dir, "station.pem")); errors.Is(err, os.ErrNotExist) {
				return false, nil // not added yet
			} else if err != nil {
				return false, err
			}
			switch status, reason := e.enroll(t, s.next()); status {
			case http.StatusOK:
				return true, nil
			case http.StatusUnauthorized:
				return false, nil
			default:
				return false, fmt.Errorf("enrollment: %d %s", status, reason)
			}
		}})
	}
	changeAndWatch(t, "station add", func() {
		s.cli("station", "add", "--env", "dev", "--site", "line-1", "--product", product, "--name", name, "--out", dir)
	}, added...)
	watch("station suspend", http.StatusOK, http.StatusForbidden, "suspended", "station", "suspend", name)
	watch("station resume", http.StatusForbidden, http.StatusOK, "", "station", "resume", name)
	watch("station revoke", http.StatusOK, http.StatusForbidden, "never enroll again", "station", "revoke", name)
}

// tokenRevoke: an operator token revoked by a CLI process; every server, each of which has just authenticated
// it (so holds it in its token cache), answers 401 within the propagation time.
func tokenRevoke(t *testing.T, s *setup) {
	tok := strings.TrimSpace(string(s.cli("token", "create", "--name", "auditor-1", "--role", "auditor")))
	get := func(n *node) (int, string) {
		req, err := http.NewRequest("GET", n.srv.url+"/api/v1/cas", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := n.api.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	var probes []probe
	for _, n := range s.nodes {
		if status, body := get(n); status != http.StatusOK {
			t.Fatalf("%s with a new token: %d %s", n.name, status, body)
		}
		probes = append(probes, probe{n.name + " refuses the token", func() (bool, error) {
			switch status, body := get(n); {
			case status == http.StatusOK:
				return false, nil
			case status == http.StatusUnauthorized && strings.Contains(body, "revoked"):
				return true, nil
			default:
				return false, fmt.Errorf("GET /api/v1/cas: %d %s; want 200 before, 401 naming the revocation after", status, body)
			}
		}})
	}
	changeAndWatch(t, "token revoke", func() { s.cli("token", "revoke", "auditor-1", "--reason", "drill") }, probes...)
}

var scenarios = []struct {
	name string
	run  func(*testing.T, *setup)
}{
	{"key-destroy", keyDestroy},
	{"ca-revoke", caRevoke},
	{"ca-rollover", caRollover},
	{"superseded-key", supersededKey},
	{"station", stationStates},
	{"token-revoke", tokenRevoke},
}

// TestChangesReachRunningServerSQLite: CLI processes beside a running server on one SQLite data directory.
func TestChangesReachRunningServerSQLite(t *testing.T) {
	bin := buildKeyward(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			s := sqliteSetup(t, bin)
			sc.run(t, s)
			s.stop(t)
		})
	}
}

// TestChangesReachEveryNodePostgres: two servers on one PostgreSQL database, CLI processes beside them.
func TestChangesReachEveryNodePostgres(t *testing.T) {
	storetest.PostgresDSN(t) // fail or skip before building when PostgreSQL is missing
	bin := buildKeyward(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			s := postgresSetup(t, bin)
			sc.run(t, s)
			s.stop(t)
		})
	}
}
