package certpolicy

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestParseArc(t *testing.T) {
	good := []string{DefaultArc, "2.999", "1.2.840.113549", "0.39"}
	for _, s := range good {
		a, err := ParseArc(s)
		if err != nil || a.String() != s {
			t.Errorf("ParseArc(%q) = %v, %v", s, a, err)
		}
	}
	bad := map[string]string{
		"":                       "empty",
		"1":                      "at least two",
		"3.1":                    "first component",
		"1.40":                   "below 40",
		"1.3.06":                 "leading zeros",
		"1..3":                   "component 2",
		"1.3.-1":                 "component 3",
		"1.3.x":                  "component 3",
		"1.3.6 ":                 "component 3",
		"1.99999999999999999999": "too large",
	}
	for s, want := range bad {
		_, err := ParseArc(s)
		if !errors.Is(err, ErrBadArc) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseArc(%q) = %v, want ErrBadArc naming %q", s, err, want)
		}
	}
}

func TestPolicyTable(t *testing.T) {
	a := MustParseArc(DefaultArc)
	want := map[Role]string{Device: ".1", Gateway: ".2", Service: ".3", Station: ".4", Operator: ".5"}
	for _, r := range Roles() {
		p := a.Policy(r)
		if p.String() != DefaultArc+want[r] {
			t.Errorf("%s: policy %s, want %s%s", r, p, DefaultArc, want[r])
		}
		got, ok := a.RoleOf(p)
		if !ok || got != r {
			t.Errorf("RoleOf(%s) = %q, %v", p, got, ok)
		}
		if _, err := ParseRole(string(r)); err != nil {
			t.Error(err)
		}
	}
	if _, ok := MustParseArc("2.999").RoleOf(a.Policy(Device)); ok {
		t.Error("a policy under another arc was taken for a role")
	}
	if _, err := ParseRole("admin"); err == nil || !strings.Contains(err.Error(), "device, gateway") {
		t.Errorf("ParseRole(admin) = %v", err)
	}
	// The default device policy is 9 octets: the implant certificate's budget counts on it.
	der, err := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1})
	if err != nil || len(der) != 11 {
		t.Errorf("encoded default device policy: %d octets, %v", len(der), err)
	}
}

func TestAllows(t *testing.T) {
	a := MustParseArc(DefaultArc)
	station := &x509.Certificate{Policies: a.Policies(IssuerRoles(true)...)}
	issuing := &x509.Certificate{Policies: a.Policies(IssuerRoles(false)...)}
	any := &x509.Certificate{Policies: []x509.OID{AnyPolicy}}
	none := &x509.Certificate{}
	for _, r := range []Role{Device, Gateway, Service} {
		if a.Allows(station, r) {
			t.Errorf("a station CA may vouch for %s", r)
		}
		if !a.Allows(issuing, r) || !a.Allows(any, r) || a.Allows(none, r) {
			t.Errorf("Allows(%s) wrong", r)
		}
	}
	if !a.Allows(station, Station) || a.Allows(issuing, Station) {
		t.Error("station policy misplaced")
	}
}

// TestImports: standard library only.
func TestImports(t *testing.T) {
	const pkg = "github.com/keyward/keyward/pkg/certpolicy"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if deps := strings.Fields(string(out)); len(deps) != 1 || deps[0] != pkg {
		t.Errorf("%s depends on %v; it may use only the standard library", pkg, deps)
	}
}

// FuzzParseArc: keyward.yaml's policy_arc is outside input; a parsed arc round-trips and its policies
// encode.
func FuzzParseArc(f *testing.F) {
	for _, s := range []string{DefaultArc, "2.999", "1.40", "01.2", "1.2.99999999999999999999", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseArc(s)
		if err != nil {
			return
		}
		if a.String() != s {
			t.Fatalf("ParseArc(%q).String() = %q", s, a.String())
		}
		for _, r := range Roles() {
			if got, ok := a.RoleOf(a.Policy(r)); !ok || got != r {
				t.Fatalf("%s under %s does not round-trip", r, s)
			}
		}
	})
}
