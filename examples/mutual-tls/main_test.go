package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/cli"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/store/storetest"
	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/verify"
)

func TestMain(m *testing.M) { pkitest.Main(m) }

// identities are files Keyward issued for the example, made through the keyward CLI as its README does.
type identities struct {
	dir                 string
	root, chain         string // the dev root; the issuing CA then the root
	implant, implantKey string
	prog, progKey       string // a clinician programmer: gateway-identity
	cloud, cloudKey     string // cloud-service
	station, stationKey string // a factory station
	implantSerial       string
	data                string
}

func kw(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := cli.Run(context.Background(), args, cli.Env{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader("")}); code != 0 {
		t.Fatalf("keyward %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

// issue makes a key and a CSR, has Keyward issue it under profile, and returns the certificate and key files.
func (ids *identities) issue(t *testing.T, name, profile string, csr *x509.CertificateRequest) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, csr, k)
	if err != nil {
		t.Fatal(err)
	}
	csrFile := filepath.Join(ids.dir, name+".csr")
	write(t, csrFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, certFile := filepath.Join(ids.dir, name+".key"), filepath.Join(ids.dir, name+".pem")
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
	kw(t, "cert", "issue", "--data", ids.data, "--profile", profile, "--csr", csrFile, "--out", certFile)
	return certFile, keyFile
}

func write(t *testing.T, file string, data []byte) {
	t.Helper()
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, dst string, srcs ...string) string {
	t.Helper()
	var b []byte
	for _, s := range srcs {
		d, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, d...)
	}
	write(t, dst, b)
	return dst
}

var (
	idsOnce sync.Once
	idsVal  *identities
)

// newIdentities initialises a Keyward data directory and issues every identity of the example (once per test
// binary: the CLI's init costs a few hundred milliseconds of key generation).
func newIdentities(t *testing.T) *identities {
	t.Helper()
	idsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mutual-tls-")
		if err != nil {
			t.Fatal(err)
		}
		ids := &identities{dir: dir, data: filepath.Join(dir, "kw"), implantSerial: "DEMO-00000001"}
		kw(t, "init", "--data", ids.data)
		ids.root = filepath.Join(dir, "root.pem")
		write(t, ids.root, []byte(kw(t, "ca", "export", "--data", ids.data, "--env", "dev")))
		ids.chain = filepath.Join(dir, "chain.pem")
		write(t, ids.chain, []byte(kw(t, "ca", "export", "--data", ids.data, "--env", "dev", "--product", "demo-implant")))
		ids.implant, ids.implantKey = ids.issue(t, "implant", "implant-identity", &x509.CertificateRequest{Subject: pkix.Name{CommonName: ids.implantSerial}})
		prog, progKey := ids.issue(t, "programmer", "gateway-identity", &x509.CertificateRequest{Subject: pkix.Name{CommonName: "GW-PROG-0001"}})
		// A programmer and a service present their chain: the issuing CA after the leaf.
		ids.prog, ids.progKey = appendFile(t, filepath.Join(dir, "programmer-chain.pem"), prog, ids.chain), progKey
		cloud, cloudKey := ids.issue(t, "cloud", "cloud-service", &x509.CertificateRequest{DNSNames: []string{"api.services.example.com"}})
		ids.cloud, ids.cloudKey = appendFile(t, filepath.Join(dir, "cloud-chain.pem"), cloud, ids.chain), cloudKey
		kw(t, "station", "add", "--data", ids.data, "--env", "dev", "--site", "cm-a", "--product", "demo-implant", "--name", "cm-a-01", "--out", filepath.Join(dir, "station"))
		ids.station, ids.stationKey = filepath.Join(dir, "station", "station.pem"), filepath.Join(dir, "station", "station.key")
		idsVal = ids
	})
	if idsVal == nil {
		t.Fatal("identities were not made")
	}
	return idsVal
}

// start runs a server command of the example on a free port until the test ends, and returns its address and
// what it logs.
func start(t *testing.T, cmd string, c config) (string, *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		if cmd == "implant" {
			done <- serveImplant(ctx, ln, c, logs)
		} else {
			done <- serveCloud(ctx, ln, c, logs)
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", cmd, err)
		}
	})
	return ln.Addr().String(), logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (ids *identities) config(cert, key string) config {
	return config{cert: cert, key: key, anchors: ids.root, chain: ids.chain, revocation: "fail-open", arc: certpolicy.DefaultArc, env: "dev"}
}

// TestGoBothSides: implant ↔ programmer ↔ cloud with crypto/tls on every side, through the commands' own
// code paths (run), and the refusals each side makes.
func TestGoBothSides(t *testing.T) {
	ids := newIdentities(t)
	implantAddr, implantLog := start(t, "implant", ids.config(ids.implant, ids.implantKey))
	cloudAddr, cloudLog := start(t, "cloud", ids.config(ids.cloud, ids.cloudKey))
	ctx := context.Background()

	var out, errb bytes.Buffer
	code := run(ctx, []string{"programmer", "--cert", ids.prog, "--key", ids.progKey, "--anchors", ids.root, "--chain", ids.chain, "--revocation", "fail-open",
		"--implant", implantAddr, "--implant-serial", ids.implantSerial, "--cloud", "https://api.services.example.com/", "--cloud-addr", cloudAddr}, &out, &errb)
	if code != 0 {
		t.Fatalf("programmer: exit %d\n%s%s\nimplant: %s\ncloud: %s", code, out.String(), errb.String(), implantLog, cloudLog)
	}
	want := []string{"DEMO-00000001: lead impedance 520 ohm, battery 87%, for GW-PROG-0001", "cloud: hello gateway GW-PROG-0001"}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("programmer output %q lacks %q", out.String(), w)
		}
	}

	prog, err := tls.LoadX509KeyPair(ids.prog, ids.progKey)
	if err != nil {
		t.Fatal(err)
	}
	station, err := tls.LoadX509KeyPair(ids.station, ids.stationKey)
	if err != nil {
		t.Fatal(err)
	}
	implant, err := tls.LoadX509KeyPair(ids.implant, ids.implantKey)
	if err != nil {
		t.Fatal(err)
	}
	c := ids.config(ids.prog, ids.progKey)
	deviceV, err := newVerifier(c, []certpolicy.Role{certpolicy.Device}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		t.Fatal(err)
	}
	serviceV, err := newVerifier(c, []certpolicy.Role{certpolicy.Service}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		t.Fatal(err)
	}

	// A factory station's certificate is no programmer: the implant refuses it.
	if _, err := interrogate(ctx, implantAddr, ids.implantSerial, station, deviceV); err == nil {
		t.Error("the implant answered a factory station")
	}
	waitFor(t, implantLog, "refused a programmer", "certificate role not acceptable", "its role is station")
	// Nor is a device a programmer.
	if _, err := interrogate(ctx, implantAddr, ids.implantSerial, implant, deviceV); err == nil {
		t.Error("the implant answered another device")
	}
	waitFor(t, implantLog, "its role is device")
	// The programmer refuses an implant that is not the one it asked for, and a cloud with another name.
	if _, err := interrogate(ctx, implantAddr, "DEMO-00000002", prog, deviceV); !errors.Is(err, verify.ErrName) {
		t.Errorf("another implant's serial: err = %v, want ErrName", err)
	}
	if _, err := report(ctx, "https://billing.services.example.com/", cloudAddr, prog, serviceV); !errors.Is(err, verify.ErrName) {
		t.Errorf("another service name: err = %v, want ErrName", err)
	}
	// The programmer expects a service at the cloud address and a device at the implant's: swapping them
	// fails on the role.
	if _, err := interrogate(ctx, cloudAddr, ids.implantSerial, prog, deviceV); !errors.Is(err, verify.ErrWrongRole) {
		t.Errorf("a service where a device is expected: err = %v, want ErrWrongRole", err)
	}
	// An implant may report to the cloud itself (the device role is accepted there); a station may not.
	if body, err := report(ctx, "https://api.services.example.com/", cloudAddr, implant, serviceV); err != nil || !strings.Contains(body, "hello device DEMO-00000001") {
		t.Errorf("implant to cloud: %q, %v", body, err)
	}
	if _, err := report(ctx, "https://api.services.example.com/", cloudAddr, station, serviceV); err == nil {
		t.Error("the cloud served a factory station")
	}
	waitFor(t, cloudLog, "its role is station")
}

func waitFor(t *testing.T, logs *syncBuffer, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok := true
		for _, w := range wants {
			ok = ok && strings.Contains(logs.String(), w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %q lacks %q", logs.String(), wants)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		storetest.IntegrationUnavailable(t, "openssl not found: %v", err)
	}
	return p
}

// TestOpenSSLClientAgainstImplant: openssl s_client, as the programmer, verifies the implant's certificate as
// a TLS server (purpose sslserver, which the implant's certificate used to fail with "unsuitable certificate
// purpose") and, with -policy and -explicit_policy, OpenSSL's own RFC 5280 policy processing checks the device
// role through the chain; the implant's pkg/verify checks the programmer.
func TestOpenSSLClientAgainstImplant(t *testing.T) {
	openssl := needOpenSSL(t)
	ids := newIdentities(t)
	implantAddr, implantLog := start(t, "implant", ids.config(ids.implant, ids.implantKey))
	trusted := appendFile(t, filepath.Join(t.TempDir(), "trusted.pem"), ids.root, ids.chain)
	arc := certpolicy.MustParseArc(certpolicy.DefaultArc)
	sClient := func(cert, key, policy string) (string, error) {
		args := []string{"s_client", "-connect", implantAddr, "-tls1_3", "-CAfile", trusted, "-verify_return_error", "-purpose", "sslserver",
			"-key", key, "-policy", policy, "-explicit_policy", "-ign_eof"}
		args = append(args, certArgs(t, cert)...)
		cmd := exec.Command(openssl, args...)
		cmd.Stdin = strings.NewReader("INTERROGATE\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := sClient(ids.prog, ids.progKey, arc.Policy(certpolicy.Device).String())
	if err != nil || !strings.Contains(out, "Verify return code: 0 (ok)") || !strings.Contains(out, "DEMO-00000001: lead impedance") {
		t.Fatalf("s_client as programmer: %v\n%s\nimplant: %s", err, out, implantLog)
	}
	// OpenSSL refuses the implant where a service is expected: the policy does not match.
	if out, err := sClient(ids.prog, ids.progKey, arc.Policy(certpolicy.Service).String()); err == nil || strings.Contains(out, "Verify return code: 0 (ok)") {
		t.Errorf("s_client accepted a device under the service policy:\n%s", out)
	}
	// The implant refuses a station presented by s_client.
	stationChain := ids.station
	if out, _ := sClient(stationChain, ids.stationKey, arc.Policy(certpolicy.Device).String()); strings.Contains(out, "lead impedance") {
		t.Errorf("the implant answered a station:\n%s", out)
	}
	waitFor(t, implantLog, "its role is station")
}

// TestOpenSSLServerAsImplant: the implant's certificate served by openssl s_server (which requires and
// verifies the programmer's), and the Go programmer verifying it with pkg/verify.
func TestOpenSSLServerAsImplant(t *testing.T) {
	openssl := needOpenSSL(t)
	ids := newIdentities(t)
	for _, tc := range []struct {
		name, cert, key string
		wantErr         error
	}{
		{"implant", ids.implant, ids.implantKey, nil},
		{"station posing as an implant", ids.station, ids.stationKey, verify.ErrEKU},
		{"cloud service posing as an implant", ids.cloud, ids.cloudKey, verify.ErrWrongRole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, stop := sServer(t, openssl, tc.cert, tc.key, ids.root)
			defer stop()
			prog, err := tls.LoadX509KeyPair(ids.prog, ids.progKey)
			if err != nil {
				t.Fatal(err)
			}
			v, err := newVerifier(ids.config(ids.prog, ids.progKey), []certpolicy.Role{certpolicy.Device}, x509.ExtKeyUsageServerAuth)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := v.ClientConfig(&prog, "")
			if err != nil {
				t.Fatal(err)
			}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake with openssl s_server: %v", err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, "hello implant\n"); err != nil {
				t.Fatal(err)
			}
			// s_server -rev answers each line reversed: the session works both ways.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "tnalpmi olleh" {
				t.Errorf("reply %q, %v", line, err)
			}
		})
	}
}

// certArgs are the openssl s_client and s_server arguments that present the certificate file cert: they send
// only the first certificate of -cert, so the CA certificates after it go in -cert_chain.
func certArgs(t *testing.T, cert string) []string {
	data, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-cert", cert}
	if _, rest := pem.Decode(data); bytes.Contains(rest, []byte("-----BEGIN CERTIFICATE-----")) {
		chain := filepath.Join(t.TempDir(), "cert-chain.pem")
		write(t, chain, rest)
		args = append(args, "-cert_chain", chain)
	}
	return args
}

// sServer runs openssl s_server with cert and key, requiring a client certificate that verifies to root.
func sServer(t *testing.T, openssl, cert, key, root string) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{"s_server", "-accept", addr, "-tls1_3", "-key", key, "-CAfile", root, "-Verify", "2", "-verify_return_error", "-rev"}, certArgs(t, cert)...)
	cmd := exec.Command(openssl, args...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "ACCEPT") {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("openssl s_server did not start: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, func() {
		stop()
		if t.Failed() {
			fmt.Fprintf(os.Stderr, "s_server output:\n%s\n", out.String())
		}
	}
}
