package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// validateCBOMFile holds a pack's cbom.json to the official CycloneDX 1.6 JSON schema (internal/evidence/testdata).
func validateCBOMFile(t *testing.T, path string) {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, name := range []string{"bom-1.6.schema.json", "spdx.schema.json", "jsf-0.82.schema.json"} {
		b, err := os.ReadFile(filepath.Join("..", "evidence", "testdata", "cyclonedx", name))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("http://cyclonedx.org/schema/"+name, doc); err != nil {
			t.Fatal(err)
		}
	}
	sch, err := c.Compile("http://cyclonedx.org/schema/bom-1.6.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("%s does not validate against the CycloneDX 1.6 schema: %v", path, err)
	}
}

func TestEvidenceEndToEnd(t *testing.T) {
	data := initDir(t)
	base := t.TempDir()
	// A probe report in the contract's shape, as 'keyward probe tls' saves it.
	probeDir := filepath.Join(data, "reports", "probe")
	if err := os.MkdirAll(probeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	report := `{"kind":"probe-tls","env":"dev","product":"demo-implant","generated_at":"2026-01-02T03:04:05Z","target":"127.0.0.1:8443","cases":[{"result":"PASS"},{"result":"PASS"},{"result":"FAIL"}]}`
	if err := os.WriteFile(filepath.Join(probeDir, "20260102T030405Z-dev.json"), []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}

	pack1 := filepath.Join(base, "pack1")
	out := mustKW(t, "evidence", "--data", data, "--env", "dev", "--out", pack1, "--json")
	var gen map[string]any
	if err := json.Unmarshal([]byte(out), &gen); err != nil || gen["out"] != pack1 || gen["extends"] != nil {
		t.Fatalf("evidence --json: %s (%v)", out, err)
	}
	validateCBOMFile(t, filepath.Join(pack1, "cbom.json"))
	if b, err := os.ReadFile(filepath.Join(pack1, "reports", "probe", "20260102T030405Z-dev.json")); err != nil || string(b) != report {
		t.Fatalf("the probe report is not in the pack verbatim: %q, %v", b, err)
	}
	index, _ := os.ReadFile(filepath.Join(pack1, "index.html"))
	if !strings.Contains(string(index), "PASS 2, FAIL 1, N/A 0") || !strings.Contains(string(index), "No fleet scan on record for dev") {
		t.Errorf("index.html does not summarise the reports:\n%s", index)
	}
	tlsJSON, _ := os.ReadFile(filepath.Join(pack1, "tls.json"))
	var st struct {
		Versions []struct {
			Name     string
			Accepted bool
		}
	}
	if err := json.Unmarshal(tlsJSON, &st); err != nil {
		t.Fatal(err)
	}
	for _, v := range st.Versions {
		if v.Accepted != (v.Name == "TLS 1.3") {
			t.Errorf("the server listener %s %s: it is TLS 1.3 only", map[bool]string{true: "accepts", false: "refuses"}[v.Accepted], v.Name)
		}
	}
	mustKW(t, "evidence", "verify", pack1, "--data", data)
	keyFile := filepath.Join(base, "audit.pub")
	mustKW(t, "audit", "pubkey", "--data", data, "--out", keyFile)
	if out := mustKW(t, "evidence", "verify", pack1, "--key", keyFile); !strings.Contains(out, "intact") {
		t.Errorf("verify --key: %s", out)
	}

	// The generation is audited.
	events := mustKW(t, "audit", "list", "--data", data, "--json")
	if !strings.Contains(events, `"evidence.generate"`) {
		t.Error("no evidence.generate audit event")
	}

	// A second pack proves that the log extends the first one's checkpoint.
	mustKW(t, "cert", "list", "--data", data) // no change; the evidence event of pack1 is new since its checkpoint
	pack2 := filepath.Join(base, "pack2")
	out = mustKW(t, "evidence", "--data", data, "--env", "dev", "--product", "demo-implant", "--out", pack2, "--json")
	if err := json.Unmarshal([]byte(out), &gen); err != nil || gen["extends"] == nil {
		t.Fatalf("second pack: %s (%v), want a consistency proof", out, err)
	}
	if out := mustKW(t, "evidence", "verify", pack2, "--key", keyFile); !strings.Contains(out, "consistency proof verified") {
		t.Errorf("verify of the second pack: %s", out)
	}
	// --previous names the first pack explicitly.
	mustKW(t, "evidence", "--data", data, "--env", "dev", "--out", filepath.Join(base, "pack3"), "--previous", pack1)
	mustKW(t, "evidence", "verify", filepath.Join(base, "pack3"), "--key", keyFile)

	// A previous pack of another installation: its checkpoint is not this log's, exit 8, nothing written.
	other := initDir(t)
	otherPack := filepath.Join(t.TempDir(), "other")
	mustKW(t, "evidence", "--data", other, "--env", "dev", "--out", otherPack)
	if _, errs, code := kw(t, "evidence", "--data", data, "--env", "dev", "--out", filepath.Join(base, "pack4"), "--previous", otherPack); code != ExitAuditBroken || !strings.Contains(errs, "--previous") {
		t.Errorf("--previous of another installation: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(base, "pack4")); err == nil {
		t.Error("a refused pack was written")
	}

	// An existing --out: exit 6, nothing written, the last checkpoint recorded unchanged.
	last := filepath.Join(data, "reports", "evidence", "dev-last-checkpoint")
	before, _ := os.ReadFile(last)
	entries, _ := os.ReadDir(base)
	_, errs, code := kw(t, "evidence", "--data", data, "--env", "dev", "--out", pack1)
	if code != ExitConflict || !strings.Contains(errs, "exists already") {
		t.Fatalf("existing --out: exit %d, %s", code, errs)
	}
	after, _ := os.ReadFile(last)
	entries2, _ := os.ReadDir(base)
	if !bytes.Equal(before, after) || len(entries) != len(entries2) {
		t.Fatal("a refused pack wrote something")
	}
	mustKW(t, "evidence", "verify", pack1, "--key", keyFile)

	// Unknown environment or product line: exit 5 naming the flag.
	if _, errs, code := kw(t, "evidence", "--data", data, "--env", "production", "--out", filepath.Join(base, "x")); code != ExitNotFound || !strings.Contains(errs, "(--env)") {
		t.Errorf("unknown env: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(base, "x")); err == nil {
		t.Error("a refused pack was written")
	}

	// Tampering: a changed byte, a missing file, an added file, each exit 8 naming the file.
	for _, tc := range []struct {
		name, file, problem string
		tamper              func(dir string)
	}{
		{"changed", "cbom.json", "changed", func(dir string) {
			p := filepath.Join(dir, "cbom.json")
			b, _ := os.ReadFile(p)
			b[100] ^= 1
			_ = os.WriteFile(p, b, 0o644)
		}},
		{"missing", "key-glossary.json", "missing", func(dir string) { _ = os.Remove(filepath.Join(dir, "key-glossary.json")) }},
		{"added", "notes.txt", "added", func(dir string) { _ = os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hi"), 0o644) }},
		// Another installation's key: the pack's own audit/audit.pub does not vouch for it.
		{"another key", "manifest.json", "bad signature", func(string) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "p")
			mustKW(t, "evidence", "--data", data, "--env", "dev", "--out", dir)
			tc.tamper(dir)
			key := keyFile
			if tc.name == "another key" {
				other := initDir(t)
				mustKW(t, "audit", "checkpoint", "--data", other)
				key = filepath.Join(t.TempDir(), "other.pub")
				mustKW(t, "audit", "pubkey", "--data", other, "--out", key)
			}
			_, errs, code := kw(t, "evidence", "verify", dir, "--key", key)
			if code != ExitAuditBroken || !strings.Contains(errs, tc.file+": "+tc.problem) {
				t.Fatalf("exit %d, %s; want 8 naming %s: %s", code, errs, tc.file, tc.problem)
			}
			out, _, _ := kw(t, "evidence", "verify", dir, "--key", key, "--json")
			var res struct {
				OK       bool
				Problems []struct{ Path, Problem string }
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil || res.OK || len(res.Problems) == 0 || res.Problems[0].Path != tc.file {
				t.Fatalf("verify --json: %s (%v)", out, err)
			}
		})
	}
}
