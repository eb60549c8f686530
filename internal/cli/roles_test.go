package cli

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/certpolicy"
)

func pemCertOf(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s holds no PEM block", file)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRolePolicies: a new data directory's CAs, stations and certificates carry the role policies under the
// configured arc, and the station CA only the station's.
func TestRolePolicies(t *testing.T) {
	dir := initDir(t)
	cfgFile := filepath.Join(dir, "keyward.yaml")
	cfg, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "policy_arc: "+certpolicy.DefaultArc) {
		t.Fatalf("keyward.yaml names no policy_arc:\n%s", cfg)
	}
	arc := certpolicy.MustParseArc(certpolicy.DefaultArc)
	chain := writeTemp(t, "chain.pem", []byte(mustKW(t, "ca", "export", "--data", dir, "--env", "dev", "--product", "demo-implant")))
	issuing, root := pemCertOf(t, chain), pemCertOf(t, writeTemp(t, "root.pem", []byte(mustKW(t, "ca", "export", "--data", dir, "--env", "dev"))))
	if len(root.Policies) != 0 {
		t.Errorf("root carries policies %v", root.Policies)
	}
	for _, r := range []certpolicy.Role{certpolicy.Device, certpolicy.Gateway, certpolicy.Service, certpolicy.Operator} {
		if !arc.Allows(issuing, r) {
			t.Errorf("issuing CA does not carry the %s policy: %v", r, issuing.Policies)
		}
	}
	if arc.Allows(issuing, certpolicy.Station) {
		t.Error("issuing CA carries the station policy")
	}
	for profile, want := range map[string]certpolicy.Role{"implant-identity": certpolicy.Device, "gateway-identity": certpolicy.Gateway, "cloud-service": certpolicy.Service} {
		cn, dns := "DEMO-00000031", []string(nil)
		switch profile {
		case "gateway-identity":
			cn = "GW-ROLES-1"
		case "cloud-service":
			cn, dns = "", []string{"api.services.example.com"}
		}
		csr := writeTemp(t, profile+".csr", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: newCSR(t, p256(t), cn, dns...)}))
		out := filepath.Join(t.TempDir(), profile+".pem")
		mustKW(t, "cert", "issue", "--data", dir, "--profile", profile, "--csr", csr, "--out", out)
		c := pemCertOf(t, out)
		if got := arc.Roles(c); len(got) != 1 || got[0] != want || len(c.Policies) != 1 {
			t.Errorf("%s: policies %v, want the %s policy alone", profile, c.Policies, want)
		}
		if profile == "implant-identity" && len(c.Raw) > 400 {
			t.Errorf("implant certificate is %d bytes", len(c.Raw))
		}
	}
	stDir := filepath.Join(t.TempDir(), "st")
	mustKW(t, "station", "add", "--data", dir, "--env", "dev", "--site", "cm-a", "--product", "demo-implant", "--out", stDir)
	data, err := os.ReadFile(filepath.Join(stDir, "station.pem"))
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(data)
	cb, _ := pem.Decode(rest)
	st, _ := x509.ParseCertificate(b.Bytes)
	stCA, _ := x509.ParseCertificate(cb.Bytes)
	if got := arc.Roles(st); len(got) != 1 || got[0] != certpolicy.Station {
		t.Errorf("station certificate policies %v", st.Policies)
	}
	if len(stCA.Policies) != 1 || !arc.Allows(stCA, certpolicy.Station) || len(stCA.ExtKeyUsage) != 1 || stCA.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("station CA: policies %v, EKU %v; want the station policy alone and clientAuth", stCA.Policies, stCA.ExtKeyUsage)
	}
}

// TestDataFromBeforeRoles: a data directory whose keyward.yaml has no policy_arc and whose profiles name no
// role (as every one written before roles) still opens, creates new CAs and issues; its profiles' certificates
// carry no policy, and 'profile check' says what that means.
func TestDataFromBeforeRoles(t *testing.T) {
	dir := initDir(t)
	cfgFile := filepath.Join(dir, "keyward.yaml")
	cfg, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	old := strings.Replace(string(cfg), "policy_arc: "+certpolicy.DefaultArc+"\n", "", 1)
	old += "      pump-x:\n        algorithm: ecdsa-p256\n        validity: 20y\n        profiles: [implant-identity]\n"
	if err := os.WriteFile(cfgFile, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	prof := filepath.Join(dir, "profiles", "implant-identity.yaml")
	pdata, err := os.ReadFile(prof)
	if err != nil {
		t.Fatal(err)
	}
	legacy := strings.Replace(string(pdata), "\nrole: device\n", "\n", 1)
	if legacy == string(pdata) {
		t.Fatal("the default implant profile has no 'role: device' line to remove")
	}
	if err := os.WriteFile(prof, []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustKW(t, "profile", "check", prof); !strings.Contains(out, "names no role") {
		t.Errorf("profile check: %s", out)
	}
	if out := mustKW(t, "ca", "create", "--data", dir, "--env", "dev"); !strings.Contains(out, "dev/pump-x") {
		t.Fatalf("ca create: %s", out)
	}
	csr := writeTemp(t, "d.csr", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: newCSR(t, p256(t), "DEMO-00000041")}))
	out := filepath.Join(t.TempDir(), "d.pem")
	mustKW(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--product", "pump-x", "--csr", csr, "--out", out)
	if c := pemCertOf(t, out); len(c.Policies) != 0 {
		t.Errorf("a profile without role issued policies %v", c.Policies)
	}
}
