package trust_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/pkg/trust"
)

func TestAnchorsPEMRoundTrip(t *testing.T) {
	oldRoot := pkitest.NewRoot(t, "Keyward dev Root CA", nil)
	newRoot := pkitest.NewRoot(t, "Keyward dev Root CA 2", pkitest.KeyOf(t, "Ed25519"))
	a := held(t, "dev", 4, oldRoot, newRoot)
	data, err := a.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"", "dev"} {
		again, err := trust.ParseAnchorsPEM(data, env)
		if err != nil {
			t.Fatalf("ParseAnchorsPEM(%q): %v", env, err)
		}
		if again.Environment != "dev" || again.Version != 4 || len(again.Certificates()) != 2 ||
			!again.Certificates()[0].Equal(oldRoot.Cert) || !again.Certificates()[1].Equal(newRoot.Cert) {
			t.Fatalf("round trip: %s version %d, %d certificates", again.Environment, again.Version, len(again.Certificates()))
		}
	}
	if out, err := must(trust.ParseAnchorsPEM(data, "")).MarshalPEM(); err != nil || !bytes.Equal(out, data) {
		t.Fatalf("re-encoding differs (%v)", err)
	}

	// A factory's initial set: certificates only, version 0 of the environment its reader names.
	factoryPEM := pkitest.PEM("CERTIFICATE", oldRoot.Cert.Raw)
	f, err := trust.ParseAnchorsPEM(factoryPEM, "staging")
	if err != nil || f.Environment != "staging" || f.Version != 0 {
		t.Fatalf("factory set = %+v, %v", f, err)
	}
	unnamed, err := trust.ParseAnchorsPEM(factoryPEM, "")
	if err != nil || unnamed.Environment != "" {
		t.Fatalf("unnamed factory set = %+v, %v", unnamed, err)
	}
	if out, err := unnamed.MarshalPEM(); err != nil || !bytes.Equal(out, factoryPEM) {
		t.Fatalf("unnamed factory set re-encodes as %q (%v)", out, err)
	}
}

func TestParseAnchorsPEMRefusals(t *testing.T) {
	root := pkitest.NewRoot(t, "Keyward dev Root CA", nil)
	good := must(held(t, "dev", 2, root).MarshalPEM())
	certOnly := pkitest.PEM("CERTIFICATE", root.Cert.Raw)
	state := good[len(certOnly):]
	sub := root.Sub(t, "issuing", nil)
	tests := []struct {
		name string
		data []byte
		env  string
		want error
	}{
		{"empty", nil, "dev", trust.ErrMalformed},
		{"state only", state, "dev", trust.ErrMalformed},
		{"another environment", good, "production", trust.ErrWrongEnvironment},
		{"two state blocks", append(bytes.Clone(good), state...), "", trust.ErrMalformed},
		{"unknown block", append(bytes.Clone(good), pkitest.PEM("PRIVATE KEY", []byte{1})...), "", trust.ErrMalformed},
		{"trailing text", append(bytes.Clone(good), "junk"...), "", trust.ErrMalformed},
		{"not DER", pkitest.PEM("CERTIFICATE", []byte("junk")), "dev", trust.ErrMalformed},
		{"state not CBOR", append(bytes.Clone(certOnly), pkitest.PEM(trust.PEMState, []byte{0xff})...), "", trust.ErrMalformed},
		{"state without its version", append(bytes.Clone(certOnly), pkitest.PEM(trust.PEMState, []byte{0xa1, 0x01, 0x63, 'd', 'e', 'v'})...), "", trust.ErrMalformed},
		{"state naming no environment", append(bytes.Clone(certOnly), pkitest.PEM(trust.PEMState, []byte{0xa2, 0x01, 0x60, 0x02, 0x00})...), "", trust.ErrMalformed},
		{"PEM headers", []byte(strings.Replace(string(certOnly), "\n", "\nProc-Type: 4,ENCRYPTED\n\n", 1)), "dev", trust.ErrMalformed},
		{"an issuing CA", pkitest.PEM("CERTIFICATE", sub.Cert.Raw), "dev", trust.ErrInvalidAnchor},
		{"too large", make([]byte, trust.MaxAnchorsFileSize+1), "dev", trust.ErrMalformed},
		{"too many certificates", bytes.Repeat(certOnly, trust.MaxAnchors+1), "dev", trust.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := trust.ParseAnchorsPEM(tc.data, tc.env)
			if a != nil || !errors.Is(err, tc.want) {
				t.Fatalf("ParseAnchorsPEM = %v, %v; want %v", a, err, tc.want)
			}
			if w := wraps(err); len(w) != 1 {
				t.Errorf("error %q wraps %d sentinels", err, len(w))
			}
		})
	}
}

// TestOpenSSLReadsAnchors: openssl verify takes an anchors file as its CAfile, skipping the state block, and
// verifies chains under each anchor in it.
func TestOpenSSLReadsAnchors(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: the anchors file's OpenSSL compatibility is not checked")
	}
	oldRoot := pkitest.NewRoot(t, "Keyward dev Root CA", nil)
	newRoot := pkitest.NewRoot(t, "Keyward dev Root CA 2", pkitest.KeyOf(t, "P-384"))
	other := pkitest.NewRoot(t, "Keyward staging Root CA", nil)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	anchors := write("anchors.pem", must(held(t, "dev", 1, oldRoot, newRoot).MarshalPEM()))
	if !bytes.Contains(must(os.ReadFile(anchors)), []byte("BEGIN "+trust.PEMState)) {
		t.Fatal("the anchors file has no state block: the test would not show that openssl skips it")
	}
	leafPath := filepath.Join(dir, "leaf.pem")
	run := func(root *pkitest.CA) (string, error) {
		issuing := root.Sub(t, "demo-implant CA", nil)
		leaf := issuing.Leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, pkitest.Key(t).Public())
		write("leaf.pem", pkitest.PEM("CERTIFICATE", leaf.Raw))
		out, err := exec.Command(openssl, "verify", "-CAfile", anchors,
			"-untrusted", write("issuing.pem", pkitest.PEM("CERTIFICATE", issuing.Cert.Raw)), leafPath).CombinedOutput()
		return string(out), err
	}
	for _, root := range []*pkitest.CA{oldRoot, newRoot} {
		// Exactly the verdict: no complaint about the state block either.
		if out, err := run(root); err != nil || out != leafPath+": OK\n" {
			t.Fatalf("openssl verify under %s: %v\n%s", root.Cert.Subject, err, out)
		}
	}
	if out, err := run(other); err == nil {
		t.Fatalf("openssl verified a chain under a root the anchors file does not hold:\n%s", out)
	}
}
