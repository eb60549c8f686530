package main

// Production end to end, against the real binary as separate processes, as a manufacturer runs it: the root
// only ever in a ceremony workspace (its key in a SoftHSM2 token of its own), every CA below it made through
// a ceremony (request on the server, signature offline, import on the server), the server's CA keys in a
// second token, a contract manufacturer's site CA key in a third. Then a station enrolls devices over EST and
// they renew; a site pre-issues a batch, injects, exports and is reconciled; an issuing CA is revoked (every
// node refuses it within the propagation time, OCSP answers revoked for it and everything under it, the
// filter refuses its subtree, OpenSSL finds it revoked through the ceremony-signed root CRL); another issuing
// CA is rolled over through a ceremony and devices renew onto the new generation while the old one keeps
// answering OCSP; and the root is rolled over: a device holding only the old root applies the signed
// trust-anchor update and verifies certificates under the new root, and every forged or replayed update is
// refused. On SQLite one server with CLI processes beside it; on PostgreSQL two servers on one database.

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store/storetest"
	"github.com/keyward/keyward/pkg/trust"
)

// prodConfig declares production with an offline root and two product lines: pacemaker-x1 (its devices are
// enrolled at a station and at a site, and its issuing CA rolled over) and pump-x (its issuing CA revoked).
const prodConfig = `organization: Keyward Production E2E
environments:
  dev:
    root: {algorithm: ecdsa-p256, validity: 25y}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity]}
  production:
    root: {algorithm: ecdsa-p384, validity: 25y, offline: true}
    product_lines:
      pacemaker-x1: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity]}
      pump-x: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity]}
`

const (
	prodEnv   = "production"
	pacemaker = "pacemaker-x1"
	pump      = "pump-x"
	site      = "cm-east"
)

// production is one run of the flow: the processes' state, the three tokens and the ceremony workspace.
type production struct {
	t                         *testing.T
	s                         *setup
	dir                       string // work files: requests, certificates, device keys
	ceremony, pass            string // the ceremony workspace and its passphrase file
	rootToken, caToken, siteT string // SoftHSM2 tokens: the root's (offline), the server's CA keys, the site's
	root                      string // the root certificate file (PEM)
}

func (p *production) path(name string) string { return filepath.Join(p.dir, name) }

// witnesses are the two custodians every production ceremony needs.
var witnesses = []string{"--witness", "alice", "--witness", "bob"}

// ceremonyRun runs a ceremony command against the workspace, with the witnesses.
func (p *production) ceremonyRun(args ...string) []byte {
	p.t.Helper()
	args = append(append(args, "--dir", p.ceremony, "--passphrase-file", p.pass), witnesses...)
	return p.s.r.run(args...)
}

// makeCA makes one CA below the root through the ceremony: the request on the server (the key generated in
// keystore), the signature offline, the import on the server. It returns the certificate file.
func (p *production) makeCA(name, keystore, root string, request []string, importArgs ...string) string {
	p.t.Helper()
	csr, cert := p.path(name+".csr"), p.path(name+".pem")
	p.s.cli(append([]string{"ca", "csr", "--env", prodEnv, "--keystore", keystore, "--out", csr}, request...)...)
	out := p.ceremonyRun("ca", "ceremony", "sign", "--env", prodEnv, "--csr", csr, "--out", cert)
	p.t.Logf("ceremony sign %s:\n%s", name, out)
	p.s.cli(append([]string{"ca", "import", "--env", prodEnv, "--cert", cert, "--root", root}, importArgs...)...)
	return cert
}

// caState is one CA as 'keyward ca status --json' shows it.
type caState struct {
	ID               string `json:"id"`
	Kind             string `json:"kind"`
	Status           string `json:"status"`
	Generation       int    `json:"generation"`
	RevocationReason string `json:"revocation_reason"`
}

func (p *production) status() map[string]caState {
	p.t.Helper()
	var st struct {
		CAs     []caState `json:"cas"`
		Pending []struct {
			CA string `json:"ca"`
		} `json:"pending_requests"`
	}
	p.s.r.json(&st, append([]string{"ca", "status", "--env", prodEnv, "--json"}, p.s.flags...)...)
	if len(st.Pending) != 0 {
		p.t.Fatalf("pending CA requests left: %+v", st.Pending)
	}
	m := map[string]caState{}
	for _, c := range st.CAs {
		m[c.ID] = c
	}
	return m
}

// enroll enrolls device serial over EST at node n through the station in stDir; it returns the certificate
// and key files.
func (p *production) enroll(n *node, stDir, product, serial string) (certFile, keyFile string) {
	p.t.Helper()
	certFile, keyFile = p.path(serial+".pem"), p.path(serial+".key")
	p.s.r.run("device", "enroll", "--server", n.srv.url, "--product", product, "--trust", filepath.Join(stDir, "trust.pem"),
		"--station", filepath.Join(stDir, "station.pem"), "--station-key", filepath.Join(stDir, "station.key"),
		"--serial", serial, "--key-out", keyFile, "--out", certFile)
	return certFile, keyFile
}

// renew renews device serial's certificate at node n (early: an operator allows it first) and returns the
// new certificate's file.
func (p *production) renew(n *node, stDir, product, serial, certFile, keyFile, out string) *x509.Certificate {
	p.t.Helper()
	p.s.cli("device", "force-renew", serial, "--env", prodEnv, "--product", product)
	p.s.r.run("device", "renew", "--server", n.srv.url, "--product", product, "--trust", filepath.Join(stDir, "trust.pem"),
		"--cert", certFile, "--key", keyFile, "--out", out)
	return readCert(p.t, out)
}

// verifyChain checks leaf under roots (PEM file) with intermediates, as a relying party does.
func verifyChain(t *testing.T, leaf *x509.Certificate, rootsFile string, intermediates ...*x509.Certificate) error {
	t.Helper()
	data, err := os.ReadFile(rootsFile)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data) {
		t.Fatalf("%s holds no certificate", rootsFile)
	}
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// writePEM writes certificates (or a DER CRL) as PEM blocks of typ to a work file and returns its path.
func (p *production) writePEM(name, typ string, ders ...[]byte) string {
	p.t.Helper()
	var b bytes.Buffer
	for _, der := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	}
	path := p.path(name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// pemBlock returns the DER of the first PEM block of typ in file.
func pemBlock(t *testing.T, file, typ string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		if b.Type == typ {
			return b.Bytes
		}
	}
	t.Fatalf("%s holds no %s block", file, typ)
	return nil
}

// prodRefusedProbe: the node's next issuance under product is refused with 409 naming want (after the change)
// or succeeds (before).
func prodRefusedProbe(t *testing.T, s *setup, n *node, product, want string) probe {
	return probe{n.name + " refuses issuance under " + product, func() (bool, error) {
		status, body := n.api.issueIn(t, prodEnv, product, s.next())
		switch {
		case status == http.StatusCreated:
			return false, nil
		case status == http.StatusConflict && strings.Contains(body, want):
			return true, nil
		}
		return false, fmt.Errorf("issuance: %d %s; want 201 before, 409 naming %q after", status, body, want)
	}}
}

// prodIssue issues a certificate under product through node n's API, which must succeed.
func prodIssue(t *testing.T, s *setup, n *node, product string) issued {
	t.Helper()
	status, body := n.api.issueIn(t, prodEnv, product, s.next())
	if status != http.StatusCreated {
		t.Fatalf("issue under %s/%s on %s: %d %s", prodEnv, product, n.name, status, body)
	}
	return decodeIssued(t, body)
}

func TestProductionEndToEndSQLite(t *testing.T) {
	bin := buildKeyward(t)
	productionE2E(t, bin, func(data string, r runner) *setup {
		r.run("init", "--data", data)
		return &setup{r: r, flags: []string{"--data", data}}
	}, func(s *setup, data string) {
		s.nodes = []*node{startNode(t, bin, "server", data)}
	})
}

func TestProductionEndToEndPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	bin := buildKeyward(t)
	productionE2E(t, bin, func(data string, r runner) *setup {
		r.run("init", "--data", data, "--db", dsn)
		return &setup{r: r, flags: []string{"--data", data, "--db", dsn}}
	}, func(s *setup, data string) {
		// Two servers on one database; the second's data directory is a copy of the first's (the same service TLS
		// CA, operator token and profiles). The CA keys are in the token both reach, as nodes sharing an HSM do.
		n1 := startNode(t, bin, "node1", data, "--db", dsn)
		d2 := filepath.Join(t.TempDir(), "node2")
		if out, err := exec.Command("cp", "-a", data, d2).CombinedOutput(); err != nil {
			t.Fatalf("copy the data directory: %v %s", err, out)
		}
		s.nodes = []*node{n1, startNode(t, bin, "node2", d2, "--db", dsn)}
	})
}

// productionE2E runs the flow: initialise makes the data directory's state, start starts its servers once the
// hierarchy stands.
func productionE2E(t *testing.T, bin string, initialise func(data string, r runner) *setup, start func(s *setup, data string)) {
	t.Setenv("KEYWARD_PKCS11_PIN", pkcs11test.PIN) // recorded key URIs carry no PIN
	r := runner{t, bin}
	dir := t.TempDir()
	data := filepath.Join(dir, "hq")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "keyward.yaml"), []byte(prodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &production{t: t, s: initialise(data, r), dir: dir, ceremony: filepath.Join(dir, "ceremony"),
		rootToken: pkcs11test.NewToken(t), caToken: pkcs11test.NewToken(t), siteT: pkcs11test.NewToken(t)}
	p.pass = filepath.Join(dir, "ceremony-passphrase")
	if err := os.WriteFile(p.pass, []byte("correct horse battery staple ceremony\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := p.s

	// 1. The root, offline: one witness is not enough; with two, its key is made in the root's own token.
	p.root = p.path("root.pem")
	r.fail(3, "two distinct witnesses", "ca", "ceremony", "root", "--dir", p.ceremony, "--passphrase-file", p.pass,
		"--env", prodEnv, "--keystore", p.rootToken, "--out", p.root, "--witness", "alice")
	p.ceremonyRun("ca", "ceremony", "root", "--env", prodEnv, "--keystore", p.rootToken, "--out", p.root)
	root := readCert(t, p.root)
	// Production has no online path to a CA below the root.
	r.fail(3, "ceremony", append([]string{"ca", "rollover", "--env", prodEnv, "--product", pacemaker}, s.flags...)...)

	// 2. Every CA below it through a ceremony: two issuing CAs, the station CA and the root's OCSP responder with
	// their keys in the server's token; the site CA with its key in the site's token.
	pacemakerCA := p.makeCA("pacemaker-x1", p.caToken, p.root, []string{"--kind", "issuing", "--product", pacemaker})
	pumpCA := p.makeCA("pump-x", p.caToken, p.root, []string{"--kind", "issuing", "--product", pump})
	p.makeCA("station", p.caToken, p.root, []string{"--kind", "station"})
	p.makeCA("ocsp", p.caToken, p.root, []string{"--kind", "ocsp-signer"})
	siteCA := p.makeCA("site", p.siteT, p.root, []string{"--kind", "site", "--product", pacemaker, "--site", site, "--quota", "20", "--valid-for", "30d"})
	for _, f := range []string{pacemakerCA, pumpCA, siteCA} {
		if c := readCert(t, f); c.CheckSignatureFrom(root) != nil {
			t.Fatalf("%s is not signed by the ceremony's root", f)
		}
	}
	st := p.status()
	for id, kind := range map[string]string{"production/root": "root", "production/pacemaker-x1": "issuing", "production/pump-x": "issuing",
		"production/stations": "station", "production/root-ocsp": "ocsp-signer", "production/pacemaker-x1/cm-east": "site"} {
		if c, ok := st[id]; !ok || c.Kind != kind || c.Status != "active" {
			t.Fatalf("CA %s after the ceremonies: %+v (%v); want an active %s CA. All: %+v", id, c, ok, kind, st)
		}
	}
	// The ceremony's transcript names the witnesses and verifies; the server holds no root key.
	if log := string(r.run("ca", "ceremony", "log", "--dir", p.ceremony, "--passphrase-file", p.pass)); !strings.Contains(log, "alice") || !strings.Contains(log, "bob") {
		t.Fatalf("ceremony log does not name the witnesses:\n%s", log)
	}
	r.run("audit", "verify", "--data", p.ceremony, "--passphrase-file", p.pass)
	var keys []struct {
		Purpose string `json:"purpose"`
		Owner   string `json:"owner"`
		URI     string `json:"uri"`
		State   string `json:"state"`
	}
	r.json(&keys, append([]string{"key", "list", "--json"}, s.flags...)...)
	for _, k := range keys {
		if k.Purpose == "root-signing" && strings.HasPrefix(k.Owner, prodEnv) {
			t.Fatalf("the server holds a production root key: %+v", k)
		}
		if strings.HasPrefix(k.Owner, prodEnv+"/") && k.Purpose == "ca-signing" && !strings.HasPrefix(k.URI, "pkcs11:") {
			t.Fatalf("production CA key %+v is not in a token", k)
		}
	}

	// 3. Stations (their certificates from the ceremony-made station CA), then the servers.
	stDir, siteStDir := p.path("station-line-1"), p.path("station-cm-east")
	s.cli("station", "add", "--env", prodEnv, "--site", "line-1", "--product", pacemaker, "--name", "line-1-01", "--out", stDir)
	s.cli("station", "add", "--env", prodEnv, "--site", site, "--product", pacemaker, "--name", "cm-east-01", "--out", siteStDir)
	start(s, filepath.Join(dir, "hq"))
	defer s.stop(t)
	nodes := s.nodes
	last := nodes[len(nodes)-1]

	// 4. A device enrolls over EST at the factory station (node 1) and renews (on the last node).
	dev1, dev1Key := p.enroll(nodes[0], stDir, pacemaker, "DEMO-10000001")
	c1 := readCert(t, dev1)
	pacemaker1 := readCert(t, pacemakerCA)
	if err := verifyChain(t, c1, p.root, pacemaker1); err != nil {
		t.Fatalf("enrolled device certificate under the production root: %v", err)
	}
	current := p.path("DEMO-10000001-r1.pem") // the device's certificate: renewal replaces it
	renewed := p.renew(last, stDir, pacemaker, "DEMO-10000001", dev1, dev1Key, current)
	if renewed.Subject.CommonName != "DEMO-10000001" || !bytes.Equal(renewed.AuthorityKeyId, pacemaker1.SubjectKeyId) || renewed.SerialNumber.Cmp(c1.SerialNumber) == 0 {
		t.Fatalf("renewed certificate: %q by %q", renewed.Subject.CommonName, renewed.Issuer.CommonName)
	}

	// 5. The site: its data directory, a batch pre-issued in the site's token, two credentials injected, the
	// batch closed and reconciled at headquarters (the unused ones revoked, their keys destroyed in the token).
	siteData := p.path("cm-east-data")
	s.cli("factory", "site-package", "--env", prodEnv, "--product", pacemaker, "--site", site, "--out", siteData)
	batch := p.path("batch.kwb")
	r.run("factory", "batch", "--data", siteData, "--env", prodEnv, "--product", pacemaker, "--site", site, "--count", "6",
		"--first-serial", "DEMO-60000001", "--keystore", p.siteT, "--out", batch)
	for _, hw := range []string{"HW-0001", "HW-0002"} {
		r.run("factory", "inject", "--batch", batch, "--device-serial", hw)
	}
	export := p.path("batch.kwx")
	r.run("factory", "export", "--data", siteData, "--batch", batch, "--out", export, "--final")
	var rec []struct {
		Devices       int64 `json:"devices_recorded"`
		Revoked       int64 `json:"revoked"`
		KeysDestroyed int64 `json:"keys_destroyed"`
	}
	r.json(&rec, append([]string{"factory", "reconcile", "--env", prodEnv, "--site", site, "--final", "--keystore", p.siteT, "--json", export}, s.flags...)...)
	if len(rec) != 1 || rec[0].Devices != 2 || rec[0].Revoked != 4 || rec[0].KeysDestroyed != 4 {
		t.Fatalf("reconcile of the site's batch: %+v", rec)
	}
	r.fail(6, "already reconciled", append([]string{"factory", "reconcile", "--env", prodEnv, "--site", site, "--final", "--keystore", p.siteT, export}, s.flags...)...)

	// 6. pump-x's issuing CA is revoked: every node refuses to issue with it within the propagation time, and
	// answers OCSP revoked (cACompromise) for what it issued and, through the root's delegated responder, for
	// the CA itself.
	pumpCert := readCert(t, pumpCA)
	var probes []probe
	for _, n := range nodes {
		is := prodIssue(t, s, n, pump)
		is.issuer = pumpCert
		probes = append(probes, prodRefusedProbe(t, s, n, pump, "revoked (keyCompromise)"),
			ocspProbe(t, n, &is, ocsp.Good, ocsp.Revoked, func(r *ocsp.Response) error {
				if r.RevocationReason != ocsp.CACompromise {
					return fmt.Errorf("reason %d, want cACompromise", r.RevocationReason)
				}
				return nil
			}),
			ocspProbe(t, n, &issued{cert: pumpCert, issuer: root}, ocsp.Good, ocsp.Revoked, func(r *ocsp.Response) error {
				if r.Certificate == nil || !r.Certificate.Equal(readCert(t, p.path("ocsp.pem"))) {
					return fmt.Errorf("the root's answer is not signed by its ceremony-made OCSP responder")
				}
				return nil
			}))
	}
	pumpDevice := prodIssue(t, s, nodes[0], pump)
	changeAndWatch(t, "ca revoke production/pump-x", func() {
		s.cli("ca", "revoke", "production/pump-x", "--reason", "keyCompromise")
	}, probes...)
	if c := p.status()["production/pump-x"]; c.Status != "revoked" || c.RevocationReason != "keyCompromise" {
		t.Fatalf("ca status after the revocation: %+v", c)
	}

	// The filter lists the revoked CA: a device refuses everything under it, not what is under pacemaker-x1.
	pumpChain := p.writePEM("pump-device-chain.pem", "CERTIFICATE", pumpDevice.cert.Raw, pumpCert.Raw)
	pacemakerChain := p.writePEM("pacemaker-device-chain.pem", "CERTIFICATE", c1.Raw, pacemaker1.Raw)
	for _, tc := range []struct {
		product, chain string
		revoked        bool
	}{{pump, pumpChain, true}, {pacemaker, pacemakerChain, false}} {
		f := p.path(tc.product + ".kwf")
		s.cli("revocation", "filter", "--env", prodEnv, "--product", tc.product, "--out", f)
		var check struct {
			Revoked       bool `json:"revoked"`
			IssuerRevoked bool `json:"issuer_revoked"`
		}
		// Exit 9 answers "revoked", 0 "not revoked".
		cmd := exec.Command(r.bin, "revocation", "check", "--filter", f, "--trust", p.root, "--cert", tc.chain, "--env", prodEnv, "--json")
		out, err := cmd.Output()
		if code := cmd.ProcessState.ExitCode(); (code == 9) != tc.revoked || (code != 0 && code != 9) {
			t.Fatalf("revocation check of a %s device: exit %d (%v), want %v", tc.product, code, err, map[bool]int{true: 9, false: 0}[tc.revoked])
		}
		if err := json.Unmarshal(out, &check); err != nil {
			t.Fatalf("revocation check --json: %v\n%s", err, out)
		}
		if check.Revoked != tc.revoked || check.IssuerRevoked != tc.revoked {
			t.Fatalf("filter of %s: a device of %s %+v; want revoked %v through its issuer", tc.product, tc.product, check, tc.revoked)
		}
	}

	// The root's CRL, signed in a CRL ceremony, lists pump-x's CA: OpenSSL checking every CRL of the chain finds
	// the device certificate's issuer revoked (error 23 at depth 1).
	crlReq, rootCRL := p.path("root-crl-request.json"), p.path("root.crl")
	s.cli("ca", "crl-request", "--env", prodEnv, "--out", crlReq)
	p.ceremonyRun("ca", "ceremony", "crl", "--env", prodEnv, "--request", crlReq, "--out", rootCRL)
	s.cli("ca", "import-crl", rootCRL, "--env", prodEnv)
	// Every node serves it on the public listener at the root's CRL path within the propagation time.
	rootCRLDER := pemBlock(t, rootCRL, "X509 CRL")
	imported := time.Now()
	for _, n := range nodes {
		url := n.public + revocation.CRLPath(root)
		for {
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Equal(body, rootCRLDER) {
				t.Logf("%s serves the imported root CRL %s after the import", n.name, time.Since(imported).Round(time.Millisecond))
				break
			}
			if time.Since(imported) > propagation {
				t.Fatalf("%s: GET %s: %d, %d bytes %s after the import; want the imported root CRL (%d bytes)", n.name, url, resp.StatusCode, len(body),
					time.Since(imported).Round(time.Millisecond), len(rootCRLDER))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	pumpCRL := p.path("pump-x.crl.der")
	s.cli("revocation", "crl", "--ca", "production/pump-x", "--out", pumpCRL)
	der, err := os.ReadFile(pumpCRL)
	if err != nil {
		t.Fatal(err)
	}
	pumpCRLPEM := p.writePEM("pump-x.crl.pem", "X509 CRL", der)
	leafFile := p.writePEM("pump-device.pem", "CERTIFICATE", pumpDevice.cert.Raw)
	out, err := exec.Command("openssl", "verify", "-crl_check_all", "-CAfile", p.root, "-untrusted", pumpCA,
		"-CRLfile", rootCRL, "-CRLfile", pumpCRLPEM, leafFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "error 23 at 1 depth") {
		t.Fatalf("openssl verify -crl_check_all of a device under the revoked CA: %v\n%s", err, out)
	}
	// The same check passes for a pacemaker-x1 device: the CRLs are complete and current, not merely present.
	pacemakerCRL := p.path("pacemaker-x1.crl.der")
	s.cli("revocation", "crl", "--ca", "production/pacemaker-x1", "--out", pacemakerCRL)
	if der, err = os.ReadFile(pacemakerCRL); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("openssl", "verify", "-crl_check_all", "-CAfile", p.root, "-untrusted", pacemakerCA,
		"-CRLfile", rootCRL, "-CRLfile", p.writePEM("pacemaker-x1.crl.pem", "X509 CRL", der), dev1).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify -crl_check_all of a pacemaker-x1 device: %v\n%s", err, out)
	}

	// 7. pacemaker-x1's issuing CA is rolled over through a ceremony while the servers run: every node issues
	// with the second generation once it is imported, devices renew onto it, and the first keeps answering
	// OCSP for what it issued.
	before := prodIssue(t, s, nodes[0], pacemaker)
	before.issuer = pacemaker1
	gen2CSR, gen2 := p.path("pacemaker-x1-2.csr"), p.path("pacemaker-x1-2.pem")
	s.cli("ca", "csr", "--env", prodEnv, "--kind", "issuing", "--product", pacemaker, "--keystore", p.caToken, "--out", gen2CSR)
	p.ceremonyRun("ca", "ceremony", "sign", "--env", prodEnv, "--csr", gen2CSR, "--out", gen2)
	probes = nil
	for _, n := range nodes {
		probes = append(probes, probe{n.name + " issues with production/pacemaker-x1@2", func() (bool, error) {
			status, body := n.api.issueIn(t, prodEnv, pacemaker, s.next())
			if status != http.StatusCreated {
				return false, fmt.Errorf("issuance: %d %s", status, body)
			}
			switch id := decodeIssued(t, body).issuerID; id {
			case "production/pacemaker-x1":
				return false, nil
			case "production/pacemaker-x1@2":
				return true, nil
			default:
				return false, fmt.Errorf("issued by %s", id)
			}
		}})
	}
	changeAndWatch(t, "ca import of production/pacemaker-x1@2", func() {
		s.cli("ca", "import", "--env", prodEnv, "--cert", gen2, "--root", p.root)
	}, probes...)
	pacemaker2 := readCert(t, gen2)
	for i, n := range nodes {
		out := p.path(fmt.Sprintf("DEMO-10000001-gen2-%d.pem", i))
		got := p.renew(n, stDir, pacemaker, "DEMO-10000001", current, dev1Key, out)
		current = out
		if !bytes.Equal(got.AuthorityKeyId, pacemaker2.SubjectKeyId) || verifyChain(t, got, p.root, pacemaker2) != nil {
			t.Fatalf("%s renewed the device under %q; want the second generation", n.name, got.Issuer.CommonName)
		}
		resp, err := ocspQuery(t, n.public, before.cert, pacemaker1, true)
		if err != nil || resp.Status != ocsp.Good {
			t.Fatalf("%s: OCSP for a certificate of the first generation after the rollover: %v %v; want good", n.name, resp, err)
		}
	}

	// 8. The root is rolled over: a new root, link certificates and a trust-anchor update signed by both.
	rr := p.path("root-rollover")
	p.ceremonyRun("ca", "ceremony", "root-rollover", "--env", prodEnv, "--keystore", p.rootToken, "--out", rr)
	newRoot := readCert(t, filepath.Join(rr, "root.pem"))
	if newRoot.Equal(root) || newRoot.CheckSignatureFrom(newRoot) != nil {
		t.Fatalf("new root %q", newRoot.Subject)
	}
	// pacemaker-x1 moves under it as its third generation.
	gen3 := p.makeCA("pacemaker-x1-3", p.caToken, filepath.Join(rr, "root.pem"), []string{"--kind", "issuing", "--product", pacemaker},
		"--link", filepath.Join(rr, "new-with-old.pem"))
	pacemaker3 := readCert(t, gen3)
	if pacemaker3.CheckSignatureFrom(newRoot) != nil {
		t.Fatal("the third generation is not signed by the new root")
	}
	var leaf3 *x509.Certificate
	for _, n := range nodes {
		is := prodIssue(t, s, n, pacemaker)
		if is.issuerID != "production/pacemaker-x1@3" {
			t.Fatalf("%s issues with %s after the import under the new root", n.name, is.issuerID)
		}
		leaf3 = is.cert
	}
	leaf3File := p.writePEM("leaf3.pem", "CERTIFICATE", leaf3.Raw)

	// A device made before the rollover holds the old root only (a factory's initial set, version 0).
	anchors := p.path("device-anchors.pem")
	if data, err := os.ReadFile(p.root); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(anchors, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := verifyChain(t, leaf3, anchors, pacemaker3); err == nil {
		t.Fatal("a certificate under the new root verifies under the old root alone")
	}
	// Before it applies the update it reaches the new root through the link certificate.
	if err := verifyChain(t, leaf3, anchors, pacemaker3, readCert(t, filepath.Join(rr, "new-with-old.pem"))); err != nil {
		t.Fatalf("under the old root through new-with-old: %v", err)
	}
	update := filepath.Join(rr, "anchors-update.cbor")
	// Forged: a signature byte changed (exit 4); broken: a truncated update (exit 3). Nothing is written on a
	// refusal.
	raw, err := os.ReadFile(update)
	if err != nil {
		t.Fatal(err)
	}
	forged := append([]byte(nil), raw...)
	forged[len(forged)-1] ^= 0x01
	forgedFile := p.path("forged-update.cbor")
	if err := os.WriteFile(forgedFile, forged, 0o644); err != nil {
		t.Fatal(err)
	}
	applied := p.path("device-anchors-1.pem")
	r.fail(4, "signature", "trust", "apply", "--anchors", anchors, "--env", prodEnv, "--update", forgedFile, "--out", applied)
	truncFile := p.path("truncated-update.cbor")
	if err := os.WriteFile(truncFile, raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	r.fail(3, "", "trust", "apply", "--anchors", anchors, "--env", prodEnv, "--update", truncFile, "--out", applied)
	// Forged: a well-formed update that adds an attacker's root, signed by that root alone (exit 4: no held root
	// signed it).
	rogue := pkitest.NewRoot(t, "Keyward production Root CA", nil)
	rogueUpdate, err := trust.Sign(&trust.Update{Environment: prodEnv, Version: 7, Anchors: [][]byte{root.Raw, rogue.Cert.Raw},
		NotBefore: time.Now().Add(-time.Hour).Unix(), NotAfter: time.Now().Add(time.Hour).Unix(), IssuedAt: time.Now().Unix()}, rogue.Key)
	if err != nil {
		t.Fatal(err)
	}
	rogueFile := p.path("rogue-update.cbor")
	if err := os.WriteFile(rogueFile, rogueUpdate, 0o644); err != nil {
		t.Fatal(err)
	}
	r.fail(4, "", "trust", "apply", "--anchors", anchors, "--env", prodEnv, "--update", rogueFile, "--out", applied)
	// Misdirected: the update is production's; a dev device refuses it (exit 3).
	r.fail(3, "environment", "trust", "apply", "--anchors", anchors, "--env", "dev", "--update", update, "--out", applied)
	if _, err := os.Stat(applied); !os.IsNotExist(err) {
		t.Fatalf("a refused update wrote %s (%v)", applied, err)
	}
	var res struct {
		FromVersion int `json:"from_version"`
		ToVersion   int `json:"to_version"`
		Added       []struct {
			SHA256 string `json:"sha256"`
		} `json:"added"`
	}
	r.json(&res, "trust", "apply", "--anchors", anchors, "--env", prodEnv, "--update", update, "--out", applied, "--json")
	if res.FromVersion != 0 || res.ToVersion != 1 || len(res.Added) != 1 {
		t.Fatalf("trust apply: %+v; want version 0 -> 1 adding the new root", res)
	}
	if err := verifyChain(t, leaf3, applied, pacemaker3); err != nil {
		t.Fatalf("under the anchors the update installed: %v", err)
	}
	if out, err := exec.Command("openssl", "verify", "-CAfile", applied, "-untrusted", gen3, leaf3File).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify under the updated anchors: %v\n%s", err, out)
	}
	// The old root's certificates still verify under the updated anchors.
	if err := verifyChain(t, c1, applied, pacemaker1); err != nil {
		t.Fatalf("a certificate of the old root under the updated anchors: %v", err)
	}
	// Replayed: the same update again is refused as not newer (exit 3), and leaves the anchors as they are.
	r.fail(3, "not newer", "trust", "apply", "--anchors", applied, "--update", update, "--out", applied)
	var shown struct {
		Version int `json:"version"`
	}
	r.json(&shown, "trust", "show", "--anchors", applied, "--json")
	if shown.Version != 1 {
		t.Fatalf("anchors after a replayed update: version %d, want 1", shown.Version)
	}
	if c := p.status()["production/root"]; c.Status != "superseded" {
		t.Fatalf("old root after the rollover: %+v", c)
	}
	for _, d := range []string{p.ceremony} {
		r.run("audit", "verify", "--data", d, "--passphrase-file", p.pass)
	}
	r.run(append([]string{"audit", "verify"}, s.flags...)...)
}
