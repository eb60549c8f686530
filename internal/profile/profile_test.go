package profile

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/pkg/certpolicy"
)

func mustDefaults(t testing.TB) map[string]*Profile {
	t.Helper()
	ps, err := LoadDefaults()
	if err != nil {
		t.Fatalf("LoadDefaults: %v", err)
	}
	return ps
}

func TestDefaults(t *testing.T) {
	ps := mustDefaults(t)
	imp, gw, cloud := ps["implant-identity"], ps["gateway-identity"], ps["cloud-service"]
	if cloud == nil {
		t.Fatal("no cloud-service default profile")
	}
	if imp == nil || gw == nil {
		t.Fatalf("defaults = %v; want implant-identity and gateway-identity", ps)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"implant algs", len(imp.KeyAlgorithms) == 1 && imp.KeyAlgorithms[0] == keystore.ECDSAP256},
		{"implant validity 15y", imp.Validity == 15*365*24*time.Hour},
		{"implant backdate 1h", imp.Backdate == time.Hour},
		{"implant CN rule", imp.Subject.CommonName.String() == "^DEMO-[0-9]{8}$" && imp.Subject.CommonNameRequired},
		{"implant no SANs", imp.SANs.DNS.Max == 0 && imp.SANs.URI.Max == 0 && !imp.SANs.IP},
		{"implant KU", imp.KeyUsage == x509.KeyUsageDigitalSignature},
		{"implant no EKU extension (both TLS sides)", len(imp.ExtKeyUsage) == 0},
		{"implant role", imp.Role == certpolicy.Device},
		{"gateway role", gw.Role == certpolicy.Gateway},
		{"implant no SKI", !imp.IncludeSKI},
		{"implant no URLs", len(imp.CRLDistributionPoints)+len(imp.OCSPServers)+len(imp.IssuingCertificateURLs) == 0},
		{"implant 400 bytes", imp.MaxDERSize == 400},
		{"implant principals", strings.Join(imp.AllowedPrincipals, ",") == "admin,ca-officer,factory-station"},
		{"gateway algs", len(gw.KeyAlgorithms) == 3},
		{"gateway validity 2y", gw.Validity == 2*365*24*time.Hour},
		{"gateway dns", gw.SANs.DNS.Max == 4 && gw.SANs.DNS.Pattern.MatchString("a-1.gateways.example.com")},
		{"gateway dns anchored", !gw.SANs.DNS.Pattern.MatchString("a.gateways.example.com.evil")},
		{"gateway EKU", len(gw.ExtKeyUsage) == 2},
		{"gateway SKI", gw.IncludeSKI},
		{"gateway CRL", len(gw.CRLDistributionPoints) == 1 && strings.Contains(gw.CRLDistributionPoints[0], "{issuer}")},
		{"gateway OCSP", len(gw.OCSPServers) == 1},
		{"gateway 1200", gw.MaxDERSize == 1200},
		{"cloud role", cloud.Role == certpolicy.Service},
		{"cloud EKU", slices.Equal(cloud.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})},
		{"cloud DNS SANs", cloud.SANs.DNS.Max > 0 && cloud.SANs.DNS.Pattern.MatchString("ingest.eu.services.example.com") && !cloud.SANs.DNS.Pattern.MatchString("services.example.com.evil")},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: not as specified", c.name)
		}
	}
	// Defaults returns copies: changing one must not change the next.
	d := Defaults()
	d["implant-identity"][0] = 'X'
	if Defaults()["implant-identity"][0] == 'X' {
		t.Error("Defaults shares its buffers")
	}
}

// base is a valid profile that the error cases below mutate one line at a time.
const base = `name: test-profile
version: 1
key_algorithms: [ecdsa-p256]
validity: 90d
subject:
  common_name:
    regex: '^DEV-[0-9]+$'
    required: true
sans:
  dns:
    regex: '^[a-z]+\.example\.com$'
    max: 2
key_usage: [digitalSignature]
ext_key_usage: [clientAuth]
max_der_size: 800
allowed_principals: [admin]
`

func TestParseValidBase(t *testing.T) {
	p, err := Parse("test-profile", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if p.Backdate != 0 || !p.IncludeSKI || p.RenewalWindow != 0.2 {
		t.Errorf("defaults not applied: backdate %v, include_ski %v, renewal_window %v", p.Backdate, p.IncludeSKI, p.RenewalWindow)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		from    string // replaced in base ("" = append `to`)
		to      string
		want    string // substring of the error
		field   string
		line    int
		asName  string // Parse's name argument; default test-profile
		rawYAML string // replaces base entirely
	}{
		{name: "bad duration", from: "validity: 90d", to: "validity: 15x",
			want: `profile "test-profile" field validity: "15x" is not a duration (use 720h, 90d or 15y) (line 4)`, field: "validity", line: 4},
		{name: "zero validity", from: "validity: 90d", to: "validity: 0s", want: `"0s" must be positive`, field: "validity"},
		{name: "negative validity", from: "validity: 90d", to: "validity: -5h", want: "must be positive", field: "validity"},
		{name: "huge validity", from: "validity: 90d", to: "validity: 500y", want: "more than 100 years", field: "validity"},
		{name: "missing validity", from: "validity: 90d\n", to: "", want: "is required", field: "validity"},
		{name: "unknown field", from: "", to: "colour: blue\n", want: `unknown field "colour"`, field: "colour", line: 17},
		{name: "unknown nested field", from: "    max: 2", to: "    max: 2\n    min: 1", want: `unknown field "min" (known fields here: max, regex)`, field: "sans.dns.min", line: 13},
		{name: "type mismatch", from: "version: 1", to: "version: one", want: `got the string "one", want an integer`, field: "version", line: 2},
		{name: "bool mismatch", from: "", to: "include_ski: maybe\n", want: `want true or false`, field: "include_ski"},
		{name: "version zero", from: "version: 1", to: "version: 0", want: "0 must be 1 or more", field: "version"},
		{name: "version missing", from: "version: 1\n", to: "", want: "is required", field: "version"},
		{name: "name mismatch", from: "name: test-profile", to: "name: other", want: `"other" does not match the file name "test-profile"`, field: "name"},
		{name: "bad name", from: "name: test-profile", to: "name: Test_Profile", asName: "Test_Profile", want: "lower-case", field: "name"},
		{name: "empty key algs", from: "key_algorithms: [ecdsa-p256]", to: "key_algorithms: []", want: "key_algorithms: is empty", field: "key_algorithms"},
		{name: "rsa 2048", from: "key_algorithms: [ecdsa-p256]", to: "key_algorithms: [ecdsa-p256, rsa-2048]", want: `"rsa-2048" is below the minimum RSA size 3072`, field: "key_algorithms[1]", line: 3},
		{name: "unknown alg", from: "key_algorithms: [ecdsa-p256]", to: "key_algorithms: [dsa]", want: `"dsa" is not a key algorithm`},
		{name: "dup alg", from: "key_algorithms: [ecdsa-p256]", to: "key_algorithms: [ecdsa-p256, ecdsa-p256]", want: "listed twice"},
		{name: "unanchored regex", from: `'^DEV-[0-9]+$'`, to: `'DEV-[0-9]+'`, want: "is not anchored", field: "subject.common_name.regex", line: 7},
		{name: "half anchored alternation", from: `'^DEV-[0-9]+$'`, to: `'^DEV-1|DEV-2$'`, want: "is not anchored"},
		{name: "multiline anchors", from: `'^DEV-[0-9]+$'`, to: `'(?m)^DEV-[0-9]+$'`, want: "is not anchored"},
		{name: "bad regex", from: `'^DEV-[0-9]+$'`, to: `'^DEV-[0-9+$'`, want: "does not compile", field: "subject.common_name.regex"},
		{name: "cn regex missing", from: "    regex: '^DEV-[0-9]+$'\n", to: "", want: "is required when subject.common_name is present"},
		{name: "negative max", from: "    max: 2", to: "    max: -1", want: "-1 must be 0 or more", field: "sans.dns.max", line: 12},
		{name: "max zero with regex", from: "    max: 2", to: "    max: 0", want: "can never apply", field: "sans.dns.max"},
		{name: "max without regex", from: "    regex: '^[a-z]+\\.example\\.com$'\n", to: "", want: "sans.dns.regex: is required"},
		{name: "no cn no san", from: "    required: true", to: "    required: false\n", rawYAML: strings.Replace(strings.Replace(base, "    required: true", "    required: false", 1), "sans:\n  dns:\n    regex: '^[a-z]+\\.example\\.com$'\n    max: 2\n", "", 1),
			want: "neither a subject nor a SAN"},
		{name: "max der small", from: "max_der_size: 800", to: "max_der_size: 150", want: "150 is too small", field: "max_der_size"},
		{name: "max der missing", from: "max_der_size: 800\n", to: "", want: "max_der_size: is required"},
		{name: "certSign", from: "key_usage: [digitalSignature]", to: "key_usage: [digitalSignature, keyCertSign]", want: `"keyCertSign" is for CA certificates`, field: "key_usage[1]"},
		{name: "certSign alias", from: "key_usage: [digitalSignature]", to: "key_usage: [certSign]", want: "is for CA certificates"},
		{name: "unknown KU", from: "key_usage: [digitalSignature]", to: "key_usage: [digitalSignatures]", want: `"digitalSignatures" is not a key usage`},
		{name: "empty KU", from: "key_usage: [digitalSignature]", to: "key_usage: []", want: "key_usage: is empty"},
		{name: "keyEncipherment with EC", from: "key_usage: [digitalSignature]", to: "key_usage: [digitalSignature, keyEncipherment]", want: "need RSA keys"},
		{name: "unknown EKU", from: "ext_key_usage: [clientAuth]", to: "ext_key_usage: [clientAuthentication]", want: `"clientAuthentication" is not an extended key usage`},
		{name: "any EKU", from: "ext_key_usage: [clientAuth]", to: "ext_key_usage: [anyExtendedKeyUsage]", want: "is not allowed"},
		{name: "https crl", from: "", to: "crl_distribution_points: ['https://x.example/a.crl']\n", want: "must be an http:// URL", field: "crl_distribution_points[0]"},
		{name: "unknown placeholder", from: "", to: "ocsp_servers: ['http://x.example/{serial}']\n", want: "unknown placeholder"},
		{name: "unknown role", from: "allowed_principals: [admin]", to: "allowed_principals: [admin, ca_officer]", want: `"ca_officer" is not a role`, field: "allowed_principals[1]"},
		{name: "unknown holder role", from: "version: 1", to: "version: 1\nrole: implant", want: `"implant" is not a role (use device, gateway, service, station, operator)`, field: "role"},
		{name: "station role", from: "version: 1", to: "version: 1\nrole: station", want: "keyward station add", field: "role"},
		{name: "no roles", from: "allowed_principals: [admin]", to: "allowed_principals: []", want: "allowed_principals: is empty"},
		{name: "renewal window", from: "", to: "renewal_window: 1.5\n", want: "1.5 must be a fraction"},
		{name: "short lived too long", from: "", to: "short_lived: true\n", want: "a short-lived certificate lasts at most 7d"},
		{name: "short lived 7d and 1s", from: "validity: 90d", to: "validity: 604801s\nshort_lived: true", want: "lasts at most 7d", field: "short_lived"},
		{name: "short lived with CRL", from: "validity: 90d", to: "validity: 7d\nshort_lived: true\ncrl_distribution_points: ['http://x.example/a.crl']",
			want:  `field crl_distribution_points: lists 1 URL(s) but short_lived is true: a short-lived certificate carries no revocation pointer (RFC 9608 section 2); remove crl_distribution_points or set short_lived: false (line 6)`,
			field: "crl_distribution_points", line: 6},
		{name: "short lived with OCSP", from: "validity: 90d", to: "validity: 24h\nshort_lived: true\nocsp_servers: ['http://x.example/ocsp', 'http://y.example/ocsp']",
			want: "ocsp_servers: lists 2 URL(s) but short_lived is true", field: "ocsp_servers", line: 6},
		{name: "backdate too long", from: "", to: "backdate: 48h\n", want: "more than the 24h limit"},
		{name: "backdate negative", from: "", to: "backdate: -1h\n", want: "must not be negative"},
		{name: "syntax error", from: "version: 1", to: "version: [1", want: `profile "test-profile"`},
		{name: "two documents", from: "", to: "---\nname: x\n", want: "more than one YAML document"},
		{name: "empty", rawYAML: "", want: "profile is empty"},
		{name: "not a mapping", rawYAML: "- a\n- b\n", want: "must be a YAML mapping"},
		{name: "organization too long", from: "subject:\n", to: "subject:\n  organization: " + strings.Repeat("x", 65) + "\n", want: "longer than 64 characters", field: "subject.organization", line: 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := tc.rawYAML
			if y == "" && tc.name != "empty" {
				if tc.from == "" {
					y = base + tc.to
				} else {
					if !strings.Contains(base, tc.from) {
						t.Fatalf("base has no %q", tc.from)
					}
					y = strings.Replace(base, tc.from, tc.to, 1)
				}
			}
			name := "test-profile"
			if tc.asName != "" {
				name = tc.asName
			}
			_, err := Parse(name, []byte(y))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", y)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidProfile) {
				t.Errorf("error is not ErrInvalidProfile: %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is %T, want *Error", err)
			}
			if tc.field != "" && e.Field != tc.field {
				t.Errorf("Field = %q, want %q (%v)", e.Field, tc.field, err)
			}
			if tc.line != 0 && e.Line != tc.line {
				t.Errorf("Line = %d, want %d (%v)", e.Line, tc.line, err)
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	write := func(dir, name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("ok", func(t *testing.T) {
		dir := t.TempDir()
		for name, data := range Defaults() {
			write(dir, name+".yaml", string(data))
		}
		write(dir, "README.txt", "not a profile")
		ps, err := LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != len(Defaults()) {
			t.Errorf("loaded %d profiles, want %d", len(ps), len(Defaults()))
		}
	})
	t.Run("name mismatch names the file", func(t *testing.T) {
		dir := t.TempDir()
		write(dir, "renamed.yaml", base)
		_, err := LoadDir(dir)
		if err == nil || !strings.Contains(err.Error(), "renamed.yaml") || !strings.Contains(err.Error(), `does not match the file name "renamed"`) {
			t.Errorf("err = %v", err)
		}
		if !errors.Is(err, ErrInvalidProfile) {
			t.Errorf("err is not ErrInvalidProfile")
		}
	})
	t.Run("yaml and yml", func(t *testing.T) {
		dir := t.TempDir()
		write(dir, "test-profile.yaml", base)
		write(dir, "test-profile.yml", base)
		if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "both") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if _, err := LoadDir(t.TempDir()); err == nil {
			t.Error("LoadDir accepted an empty directory")
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := LoadDir(filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Error("LoadDir accepted a missing directory")
		}
	})
}

func TestAnchored(t *testing.T) {
	tests := map[string]bool{
		`^DEMO-[0-9]{8}$`:     true,
		`^(a|b)$`:             true,
		`^a$|^b$`:             true,
		`^a|b$`:               false,
		`a$`:                  false,
		`^a`:                  false,
		`(?m)^a$`:             false,
		`^a\$`:                false,
		`^(?:x(y))$`:          true,
		`^[a-z0-9-]+\.gw\.x$`: true,
	}
	for re, want := range tests {
		if got := anchored(re); got != want {
			t.Errorf("anchored(%q) = %v, want %v", re, got, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"720h", 720 * time.Hour, true},
		{"90d", 90 * day, true},
		{"15y", 15 * 365 * day, true},
		{"1h30m", 90 * time.Minute, true},
		{"15x", 0, false},
		{"y", 0, false},
		{"-1d", 0, false},
		{"1.5y", 0, false},
		{"99999999999999999999y", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// FuzzParseProfile: any input yields a profile or an *Error, never a panic.
func FuzzParseProfile(f *testing.F) {
	for _, d := range Defaults() {
		f.Add(d)
	}
	f.Add([]byte(base))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("name: x\nversion: 1\nvalidity: 1y\nsubject: {common_name: {regex: '^a$'}}\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalidProfile) {
				t.Fatalf("error %v is %T, not a profile *Error", err, err)
			}
			return
		}
		if p.Validity <= 0 || p.MaxDERSize < 200 || len(p.KeyAlgorithms) == 0 || len(p.AllowedPrincipals) == 0 {
			t.Fatalf("Parse accepted an invalid profile: %+v", p)
		}
	})
}
