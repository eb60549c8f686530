package hierarchy

import (
	"slices"
	"strings"
	"testing"
)

// A validation error names the file and the line of the field at fault.
func TestParseConfigFileLines(t *testing.T) {
	data := []byte("organization: X\nenvironments:\n  dev:\n    root:\n      algorithm: ecdsa-p256\n      validity: 10y\n    product_lines:\n      pump:\n        algorithm: ecdsa-p256\n        validity: 20y\n        profiles: [a]\n")
	_, err := ParseConfigFile("kw/keyward.yaml", data)
	if err == nil || !strings.HasPrefix(err.Error(), "kw/keyward.yaml:10: environments.dev.product_lines.pump.validity (") {
		t.Fatalf("error %v", err)
	}
	_, err = ParseConfigFile("kw/keyward.yaml", []byte("organization: X\nenvironmnts: {}\n"))
	if err == nil || !strings.Contains(err.Error(), "kw/keyward.yaml:2: field environmnts not found") || !strings.Contains(err.Error(), "check the key's spelling") {
		t.Fatalf("error %v", err)
	}
	// The sections internal/config reads are accepted and kept.
	c, err := ParseConfigFile("kw/keyward.yaml", append(DefaultConfig(), []byte("store:\n  db: sqlite:keyward.db\nserve:\n  listen: 0.0.0.0:8443\n")...))
	if err != nil || c.Store.Kind == 0 || c.Serve.Kind == 0 {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestRuntimeUpdate(t *testing.T) {
	cur, err := ParseConfig(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	next, _ := ParseConfig(DefaultConfig())
	pl := next.Environments["dev"].ProductLines["demo-implant"]
	pl.Profiles = []string{"implant-identity"}
	pl.Firmware.Threshold = 3
	if !cur.Changed(next) {
		t.Fatal("a new profile list is no change")
	}
	merged, refused := cur.RuntimeUpdate(next)
	if len(refused) != 0 {
		t.Fatalf("refused %v", refused)
	}
	if got := merged.Environments["dev"].ProductLines["demo-implant"]; !slices.Equal(got.Profiles, []string{"implant-identity"}) || got.Firmware.Threshold != 3 {
		t.Fatalf("merged %+v", got)
	}
	if cur.Environments["dev"].ProductLines["demo-implant"].Firmware.Threshold != 2 {
		t.Fatal("RuntimeUpdate changed the running configuration")
	}

	// What takes a restart is refused, and kept as it was.
	next, _ = ParseConfig(DefaultConfig())
	next.Organization = "Other"
	next.PolicyArc = "1.3.6.1.4.1.99999.1"
	next.Environments["dev"].Root.Validity *= 2
	next.Environments["dev"].ProductLines["demo-implant"].Algorithm = "ecdsa-p384"
	next.Environments["dev"].ProductLines["new-pump"] = &ProductLineSpec{Algorithm: "ecdsa-p256", Validity: 1, Profiles: []string{"x"}}
	next.Environments["staging"] = next.Environments["dev"]
	merged, refused = cur.RuntimeUpdate(next)
	want := []string{"organization:", "policy_arc:", "environments.staging: added", "environments.dev.root:", "environments.dev.product_lines.demo-implant: the issuing CA's algorithm", "environments.dev.product_lines.new-pump: added"}
	if len(refused) != len(want) {
		t.Fatalf("refused %q", refused)
	}
	for _, w := range want {
		if !slices.ContainsFunc(refused, func(r string) bool { return strings.HasPrefix(r, w) }) {
			t.Errorf("refused %q lacks %q", refused, w)
		}
	}
	if merged.Organization != cur.Organization || merged.Environments["staging"] != nil || merged.Environments["dev"].ProductLines["new-pump"] != nil ||
		merged.Environments["dev"].ProductLines["demo-implant"].Algorithm != "ecdsa-p256" || merged.Environments["dev"].Root != cur.Environments["dev"].Root {
		t.Fatalf("merged took a refused change: %+v", merged)
	}
}
