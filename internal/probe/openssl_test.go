package probe_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/probe"
	"github.com/keyward/keyward/pkg/certpolicy"
)

// needOpenSSL returns the openssl binary, or skips the test (fails it under KEYWARD_REQUIRE_INTEGRATION=1).
func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("KEYWARD_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("openssl not found (KEYWARD_REQUIRE_INTEGRATION=1)")
		}
		t.Skip("openssl not found: the interop tests with openssl s_server and s_client are skipped (KEYWARD_REQUIRE_INTEGRATION=1 makes this a failure)")
	}
	return p
}

func writePEM(t *testing.T, name, typ string, der ...[]byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	var out []byte
	for _, d := range der {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// opensslVerify are the verification options of a correctly configured OpenSSL peer: the environment's root
// alone, verification errors fatal, TLS 1.3 only, and the role's certificate policy required through the
// chain (RFC 5280 6.1: a station CA carries only the station policy). Each test adds the leaf's CRL.
func opensslVerify(root string, role certpolicy.Role) []string {
	arc := certpolicy.MustParseArc(certpolicy.DefaultArc)
	return []string{"-CAfile", root, "-verify_return_error", "-tls1_3", "-x509_strict",
		"-policy", arc.Policy(role).String(), "-explicit_policy"}
}

// openssl s_server -Verify 1 -verify_return_error as the device, the probe as its client: every case PASS.
func TestOpenSSLServerDevice(t *testing.T) {
	bin := needOpenSSL(t)
	e := newEnv(t)
	id := selfCert(t)
	key, err := x509.MarshalPKCS8PrivateKey(id.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writePEM(t, "srv.pem", "CERTIFICATE", id.Certificate[0]), writePEM(t, "srv.key", "PRIVATE KEY", key)
	root := writePEM(t, "root.pem", "CERTIFICATE", e.root.Raw)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	crlFile := filepath.Join(t.TempDir(), "issuing.crl")
	var out lockedBuffer
	var cmd *exec.Cmd
	var stdin io.WriteCloser
	stop := func() {
		if cmd != nil {
			_ = stdin.Close()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	// start (re)starts the device: openssl s_server reads its CRL only when it starts, so the device is
	// restarted with the CRL the probe republishes, as a device handed a new CRL would reload it.
	start := func(crl bool) {
		stop()
		args := append([]string{"s_server", "-accept", addr, "-cert", certFile, "-key", keyFile, "-Verify", "1"}, opensslVerify(root, certpolicy.Gateway)...)
		if crl {
			args = append(args, "-crl_check", "-CRL", crlFile, "-CRLform", "DER")
		}
		cmd = exec.Command(bin, args...)
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil { // held open: s_server stops at the end of its input
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				_ = c.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("openssl s_server did not listen on %s: %s", addr, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	start(false)
	o := e.options(probe.Client)
	o.Target = addr
	publish := o.Publish
	o.Publish = func(path string, data []byte) error {
		if err := publish(path, data); err != nil {
			return err
		}
		if strings.HasPrefix(path, "/crl/") {
			if err := os.WriteFile(crlFile, data, 0o600); err != nil {
				return err
			}
			start(true)
		}
		return nil
	}
	r, err := probe.Run(context.Background(), e.authority(), o)
	if err != nil {
		t.Fatalf("%v\nopenssl: %s", err, out.String())
	}
	wantResults(t, r, nil)
	if t.Failed() {
		t.Logf("openssl s_server said:\n%s", out.String())
	}
}

// openssl s_client as the device connecting to the probe's listener: every case PASS.
func TestOpenSSLClientDevice(t *testing.T) {
	bin := needOpenSSL(t)
	e := newEnv(t)
	root := writePEM(t, "root.pem", "CERTIFICATE", e.root.Raw)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"s_client", "-connect", ln.Addr().String(), "-verify_hostname", serverName, "-crl_check", "-crl_download"}, opensslVerify(root, certpolicy.Service)...)
	stop, done := make(chan struct{}), make(chan struct{})
	var out lockedBuffer
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			cmd := exec.Command(bin, args...) // stdin is empty: s_client closes after the handshake
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				time.Sleep(20 * time.Millisecond) // a refused handshake exits 1; try the next case
			}
		}
	}()
	o := e.options(probe.Server)
	o.Listener, o.Name = ln, serverName
	r, err := probe.Run(context.Background(), e.authority(), o)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	wantResults(t, r, nil)
	if t.Failed() {
		t.Logf("openssl s_client said:\n%s", out.String())
	}
}
