package hierarchy

import (
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/certpolicy"
)

func TestDefaultConfig(t *testing.T) {
	c, err := ParseConfig(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.EnvironmentNames(); len(got) != 1 || got[0] != "dev" {
		t.Fatalf("environments = %v, want [dev]", got)
	}
	pl := c.Environments["dev"].ProductLines["demo-implant"]
	if pl == nil || !strings.Contains(strings.Join(pl.Profiles, ","), "implant-identity") {
		t.Fatalf("demo-implant = %+v", pl)
	}
}

func TestParseConfigErrors(t *testing.T) {
	base := "organization: X\nenvironments:\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", base + "  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y, colour: red}\n", "field colour not found"},
		{"unknown environment", base + "  qa:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n", `"qa" is not an environment`},
		{"bad algorithm", base + "  dev:\n    root: {algorithm: p192, validity: 10y}\n", `unknown key algorithm "p192"`},
		{"bad duration", base + "  dev:\n    root: {algorithm: ecdsa-p256, validity: 10x}\n", `"10x" is not a duration`},
		{"online production root", base + "  production:\n    root: {algorithm: ecdsa-p384, validity: 25y}\n", "production.root.offline must be true"},
		{"issuing outlives root", base + "  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n    product_lines:\n      x1: {algorithm: ecdsa-p256, validity: 20y, profiles: [p]}\n", "must be shorter than the root's"},
		{"bad product name", base + "  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n    product_lines:\n      X_1: {algorithm: ecdsa-p256, validity: 2y, profiles: [p]}\n", "product line names"},
		{"no profiles", base + "  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n    product_lines:\n      x1: {algorithm: ecdsa-p256, validity: 2y}\n", "at least one profile"},
		{"bad policy arc", "organization: X\npolicy_arc: 1.3.6.01\nenvironments:\n  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n", "policy_arc: invalid policy arc \"1.3.6.01\""},
		{"policy arc of one component", "organization: X\npolicy_arc: \"1\"\nenvironments:\n  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n", "at least two components"},
		{"no organization", "environments:\n  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n", "organization is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPolicyArc(t *testing.T) {
	c, err := ParseConfig(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Arc().String(); got != certpolicy.DefaultArc {
		t.Errorf("default arc %s, want %s", got, certpolicy.DefaultArc)
	}
	// A keyward.yaml written before policy arcs existed has none: it gets the default.
	old, err := ParseConfig([]byte("organization: X\nenvironments:\n  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n"))
	if err != nil || old.Arc().String() != certpolicy.DefaultArc {
		t.Errorf("config without policy_arc: %v, %v", old, err)
	}
	own, err := ParseConfig([]byte("organization: X\npolicy_arc: 1.3.6.1.4.1.99999.7\nenvironments:\n  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n"))
	if err != nil || own.Arc().Policy(certpolicy.Station).String() != "1.3.6.1.4.1.99999.7.4" {
		t.Errorf("own arc: %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"15y": 15 * 365 * 24 * time.Hour, "90d": 90 * 24 * time.Hour, "720h": 720 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0d", "-1y", "y", "1.5y", "abc"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", bad)
		}
	}
}
