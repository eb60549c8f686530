package evidence_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyward/keyward/internal/evidence"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/auditproof"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// auditKey is a test log's audit key: the signer of checkpoints and manifests, and its verifier key.
type auditKey struct {
	priv   ed25519.PrivateKey
	signer *auditproof.Signer
	vkey   string
}

func newAuditKey(t *testing.T) *auditKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &auditKey{priv: priv}
	if k.vkey, err = auditproof.VerifierKey("keyward.audit/test", pub); err != nil {
		t.Fatal(err)
	}
	if k.signer, err = auditproof.NewSigner("keyward.audit/test", pub, func(m []byte) ([]byte, error) { return ed25519.Sign(priv, m), nil }); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *auditKey) checkpoint(t *testing.T, size uint64) []byte {
	t.Helper()
	b, err := auditproof.Sign(auditproof.Checkpoint{Origin: "keyward.audit/test", Size: size, Root: bytes.Repeat([]byte{byte(size)}, 32)}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// input is a dev installation with a root, the demo-implant issuing CA and a staging root, their keys, the
// audit key, a device's key and keys of other scopes that the pack must leave out.
func input(t *testing.T, k *auditKey) evidence.Input {
	t.Helper()
	cfg, err := hierarchy.ParseConfig([]byte(strings.Replace(string(hierarchy.DefaultConfig()), "environments:\n", "environments:\n  staging:\n    root:\n      algorithm: ecdsa-p384\n      validity: 25y\n    product_lines: {}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	profiles, err := profile.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	profile.SetPolicyArc(profiles, cfg.Arc())
	root, issuing, other := pkitest.NewRoot(t, "dev root", nil), pkitest.NewRoot(t, "demo-implant dev CA", nil), pkitest.NewRoot(t, "staging root", nil)
	ca := func(id, env, pl, kind string, c *pkitest.CA) *store.CA {
		return &store.CA{ID: id, Environment: env, ProductLine: pl, Kind: kind, KeyURI: "soft:" + strings.ReplaceAll(id, "/", "-"), CertDER: c.Cert.Raw,
			Subject: c.Cert.Subject.String(), NotBefore: c.Cert.NotBefore, NotAfter: c.Cert.NotAfter, Status: store.CAStatusActive, CreatedAt: now.Add(-time.Hour), Generation: 1}
	}
	key := func(uri, purpose, alg, loc, owner string) *store.Key {
		return &store.Key{URI: uri, Purpose: purpose, Algorithm: alg, Location: loc, State: store.KeyActive, Owner: owner, CreatedAt: now.Add(-time.Hour), StateChangedAt: now.Add(-time.Hour)}
	}
	destroyed := key("spki:sha256:dd", "device-identity", "ecdsa-p256", "device", "serial-2")
	destroyed.State = store.KeyDestroyed
	d := now.Add(-time.Minute)
	destroyed.DestroyedAt = &d
	return evidence.Input{Env: "dev", Now: now, Version: "v9.9.9-test", Config: cfg, Profiles: profiles,
		CAs: []*store.CA{ca("dev/root", "dev", "", store.CAKindRoot, root), ca("dev/demo-implant", "dev", "demo-implant", store.CAKindIssuing, issuing), ca("staging/root", "staging", "", store.CAKindRoot, other)},
		Keys: []*store.Key{
			key("soft:dev-root", "root-signing", "ecdsa-p256", "software", "dev/root"),
			key("soft:dev-demo-implant", "ca-signing", "ecdsa-p256", "software", "dev/demo-implant"),
			key("soft:staging-root", "root-signing", "ecdsa-p256", "software", "staging/root"),
			key("soft:audit", "audit-signing", "ed25519", "software", "keyward.audit/test"),
			key("soft:ocsp", "ocsp-signing", "ecdsa-p256", "software", "dev/demo-implant ocsp-signing"),
			key("spki:sha256:aa", "device-identity", "ecdsa-p256", "device", "serial-1"),
			destroyed,
			key("spki:sha256:bb", "device-identity", "ecdsa-p256", "device", "serial-of-staging"),
		},
		CertIssuers: map[string]string{"serial-1": "dev/demo-implant", "serial-2": "dev/demo-implant"},
		TLS:         &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13, ClientAuth: tls.RequestClientCert},
		Checkpoint:  k.checkpoint(t, 5), VerifierKey: k.vkey, ReportsDir: t.TempDir()}
}

func fileOf(t *testing.T, files []evidence.File, path string) []byte {
	t.Helper()
	for _, f := range files {
		if f.Path == path {
			return f.Data
		}
	}
	t.Fatalf("no %s in the pack", path)
	return nil
}

func TestBuild(t *testing.T) {
	k := newAuditKey(t)
	in := input(t, k)
	files, err := evidence.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := evidence.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(again) {
		t.Fatalf("two builds of one input: %d and %d files", len(files), len(again))
	}
	for i := range files {
		if files[i].Path != again[i].Path || !bytes.Equal(files[i].Data, again[i].Data) {
			t.Fatalf("two builds of one input differ in %s", files[i].Path)
		}
	}
	cbom := fileOf(t, files, evidence.PathCBOM)
	validateCBOM(t, cbom)

	var bom struct {
		SpecVersion string `json:"specVersion"`
		Components  []struct {
			Ref              string `json:"bom-ref"`
			Type             string `json:"type"`
			CryptoProperties struct {
				AssetType string `json:"assetType"`
				OID       string `json:"oid"`
				Material  *struct {
					ID    string `json:"id"`
					Value string `json:"value"`
				} `json:"relatedCryptoMaterialProperties"`
			} `json:"cryptoProperties"`
		} `json:"components"`
	}
	if err := json.Unmarshal(cbom, &bom); err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{}
	for _, c := range bom.Components {
		if c.Type != "cryptographic-asset" {
			t.Errorf("component %s is of type %q, want cryptographic-asset", c.Ref, c.Type)
		}
		if m := c.CryptoProperties.Material; m != nil && m.Value != "" {
			t.Errorf("component %s carries key material", c.Ref)
		}
		refs[c.Ref] = c.CryptoProperties.AssetType
	}
	for ref, asset := range map[string]string{
		"crypto/key/soft:dev-root": "related-crypto-material", "crypto/key/soft:audit": "related-crypto-material", "crypto/key/soft:ocsp": "related-crypto-material",
		"crypto/certificate/dev/root": "certificate", "crypto/certificate/dev/demo-implant": "certificate",
		"crypto/profile/implant-identity": "certificate", "crypto/profile/gateway-identity": "certificate", "crypto/profile/cloud-service": "certificate",
		"crypto/protocol/tls-1.3": "protocol", "crypto/protocol/est": "protocol", "crypto/protocol/ocsp": "protocol",
		"crypto/algorithm/ECDSA-P256": "algorithm", "crypto/algorithm/Ed25519": "algorithm", "crypto/algorithm/SHA-256": "algorithm",
		"crypto/algorithm/AES-256-GCM": "algorithm", "crypto/algorithm/X25519MLKEM768": "algorithm", "crypto/algorithm/ECDSA-SHA256": "algorithm",
		"crypto/device-keys/device-identity/ecdsa-p256/active": "related-crypto-material",
	} {
		if refs[ref] != asset {
			t.Errorf("CBOM component %s: asset %q, want %q", ref, refs[ref], asset)
		}
	}
	for _, ref := range []string{"crypto/key/soft:staging-root", "crypto/certificate/staging/root", "crypto/protocol/tls-1.2"} {
		if _, ok := refs[ref]; ok {
			t.Errorf("CBOM has %s, which is outside the pack's scope or not accepted", ref)
		}
	}
	for _, f := range files {
		if bytes.Contains(f.Data, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a private key", f.Path)
		}
	}

	var g evidence.Glossary
	if err := json.Unmarshal(fileOf(t, files, "key-glossary.json"), &g); err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, k := range g.Keys {
		uris = append(uris, k.URI)
		if k.URI == "soft:dev-demo-implant" && (k.RotateBy == nil || k.Environment != "dev" || k.ProductLine != "demo-implant") {
			t.Errorf("issuing CA key: %+v", k)
		}
	}
	if got, want := strings.Join(uris, " "), "soft:audit soft:dev-demo-implant soft:ocsp soft:dev-root"; got != want {
		t.Errorf("glossary keys %q, want %q", got, want)
	}
	if len(g.DeviceKeys) != 2 || g.DeviceKeys[0].State != "active" || g.DeviceKeys[0].Count != 1 || g.DeviceKeys[1].State != "destroyed" || g.DeviceKeys[1].Destroyed == nil {
		t.Errorf("device key groups: %+v", g.DeviceKeys)
	}

	var classes []evidence.RevocationClass
	if err := json.Unmarshal(fileOf(t, files, "revocation.json"), &classes); err != nil {
		t.Fatal(err)
	}
	strategies := map[string]string{}
	for _, c := range classes {
		strategies[c.Profile] = strings.Join(c.Strategy, ",")
	}
	if strategies["implant-identity"] != "filter" {
		t.Errorf("implant-identity strategy %q: an implant's certificate names no pointer, so its relying parties carry the filter", strategies["implant-identity"])
	}

	policy := string(fileOf(t, files, "certificate-policy.html"))
	for _, want := range []string{"1.3.6.1.4.1.32473.1", "RFC 3647", "6.2 Private key protection", "8. Compliance audit", "Not generated: the manufacturer writes this section"} {
		if !strings.Contains(policy, want) {
			t.Errorf("certificate-policy.html lacks %q", want)
		}
	}
	index := string(fileOf(t, files, evidence.PathIndex))
	for _, want := range []string{"No probe report on record for dev", "No fleet scan on record for dev", "No previous evidence pack", `href="cbom.json"`, `href="key-glossary.html"`, `href="tls.html"`, `href="revocation.html"`, `href="certificate-policy.html"`} {
		if !strings.Contains(index, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	if strings.Contains(index, "<script") || strings.Contains(index, "http://") || strings.Contains(index, "https://") {
		t.Error("index.html loads something from elsewhere: it must read offline")
	}

	// A product line the environment does not have, or an unknown environment, names the field.
	for field, mod := range map[string]func(*evidence.Input){"env": func(in *evidence.Input) { in.Env = "prod" }, "product": func(in *evidence.Input) { in.Product = "nope" }} {
		bad := input(t, k)
		mod(&bad)
		var ie *evidence.InputError
		if _, err := evidence.Build(context.Background(), bad); !errors.As(err, &ie) || ie.Field != field {
			t.Errorf("%s: %v, want an InputError about it", field, err)
		}
	}
}

func TestProbeTLS(t *testing.T) {
	st, err := evidence.ProbeTLS(context.Background(), &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	accepted := func(ps []evidence.Probe) string {
		var out []string
		for _, p := range ps {
			if p.Accepted {
				out = append(out, p.Name)
			}
		}
		return strings.Join(out, ",")
	}
	if got := accepted(st.Versions); got != "TLS 1.3" {
		t.Errorf("a TLS 1.3-only listener accepts %q", got)
	}
	if len(st.CipherSuites) != 3 {
		t.Errorf("TLS 1.3 suites: %+v", st.CipherSuites)
	}
	st, err = evidence.ProbeTLS(context.Background(), &tls.Config{MinVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.CurveP256},
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	if got := accepted(st.Versions); got != "TLS 1.2,TLS 1.3" {
		t.Errorf("a TLS 1.2+ listener accepts %q", got)
	}
	if got := accepted(st.Groups); got != "CurveP256" {
		t.Errorf("a listener that prefers P-256 only agrees to %q", got)
	}
	var v12 []string
	for _, s := range st.CipherSuites {
		if s.Version == "TLS 1.2" {
			v12 = append(v12, s.Name)
		}
	}
	if strings.Join(v12, ",") != "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" {
		t.Errorf("TLS 1.2 suites %v, want the one configured", v12)
	}
}

func writeReport(t *testing.T, dir, kind, name string, v map[string]any) {
	t.Helper()
	sub := map[string]string{evidence.KindProbe: "probe", evidence.KindFleetScan: "fleet-scan"}[kind]
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, sub, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReports(t *testing.T) {
	k := newAuditKey(t)
	in := input(t, k)
	cases := func(results ...string) []map[string]string {
		var out []map[string]string
		for _, r := range results {
			out = append(out, map[string]string{"name": "case", "result": r})
		}
		return out
	}
	probe := func(target, at string, results ...string) map[string]any {
		return map[string]any{"kind": "probe-tls", "env": "dev", "product": "", "generated_at": at, "target": target, "cases": cases(results...)}
	}
	writeReport(t, in.ReportsDir, evidence.KindProbe, "20260101T000000Z-dev.json", probe("a.example:8443", "2026-01-01T00:00:00Z", "FAIL"))
	writeReport(t, in.ReportsDir, evidence.KindProbe, "20260201T000000Z-dev.json", probe("a.example:8443", "2026-02-01T00:00:00Z", "PASS", "PASS", "FAIL", "N/A"))
	writeReport(t, in.ReportsDir, evidence.KindProbe, "20260115T000000Z-dev.json", probe("b.example:443", "2026-01-15T00:00:00Z", "PASS"))
	writeReport(t, in.ReportsDir, evidence.KindProbe, "20260301T000000Z-staging.json", probe("a.example:8443", "2026-03-01T00:00:00Z", "PASS"))
	writeReport(t, in.ReportsDir, evidence.KindProbe, "20260302T000000Z-dev.json", map[string]any{"kind": "probe-tls", "env": "dev", "generated_at": "yesterday"})
	writeReport(t, in.ReportsDir, evidence.KindFleetScan, "20260101T000000Z-dev.json", map[string]any{"kind": "fleet-scan", "env": "dev", "generated_at": "2026-01-01T00:00:00Z", "findings": []int{1}})
	writeReport(t, in.ReportsDir, evidence.KindFleetScan, "20260202T000000Z-dev.json", map[string]any{"kind": "fleet-scan", "env": "dev", "generated_at": "2026-02-02T00:00:00Z", "findings": []int{1, 2, 3}})

	files, err := evidence.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var reports []string
	for _, f := range files {
		if strings.HasPrefix(f.Path, "reports/") {
			reports = append(reports, f.Path)
			orig, err := os.ReadFile(filepath.Join(in.ReportsDir, strings.TrimPrefix(f.Path, "reports/")))
			if err != nil || !bytes.Equal(orig, f.Data) {
				t.Errorf("%s is not copied verbatim", f.Path)
			}
		}
	}
	want := "reports/fleet-scan/20260202T000000Z-dev.json reports/probe/20260115T000000Z-dev.json reports/probe/20260201T000000Z-dev.json"
	if got := strings.Join(reports, " "); got != want {
		t.Errorf("reports in the pack:\n%s\nwant\n%s", got, want)
	}
	index := string(fileOf(t, files, evidence.PathIndex))
	for _, s := range []string{"PASS 2, FAIL 1, N/A 1", "PASS 1, FAIL 0, N/A 0", "<td>3</td>", "20260302T000000Z-dev.json was left out: generated_at"} {
		if !strings.Contains(index, s) {
			t.Errorf("index.html lacks %q", s)
		}
	}
	if strings.Contains(index, "No probe report on record") {
		t.Error("index.html says there is no probe report")
	}
}

// pack writes a signed pack of in to a new directory and returns it.
func pack(t *testing.T, k *auditKey, in evidence.Input) string {
	t.Helper()
	files, err := evidence.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	m := evidence.NewManifest(in.Env, in.Product, in.Now, files)
	signed, err := note.Sign(&note.Note{Text: string(m.NoteText())}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	m.Signature = string(signed)
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "pack")
	if err := evidence.Write(dir, files, mb); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVerify(t *testing.T) {
	k, other := newAuditKey(t), newAuditKey(t)
	res, err := evidence.Verify(pack(t, k, input(t, k)), k.vkey)
	if err != nil || !res.OK || res.Files == 0 || res.Checkpoint != 5 {
		t.Fatalf("an intact pack: %+v, %v", res, err)
	}
	for _, tc := range []struct {
		name, path, problem string
		tamper              func(t *testing.T, dir string)
		key                 *auditKey
	}{
		{"changed byte", "tls.json", evidence.ProblemChanged, func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, "tls.json")) }, nil},
		{"missing file", "cbom.json", evidence.ProblemMissing, func(t *testing.T, dir string) { rm(t, filepath.Join(dir, "cbom.json")) }, nil},
		{"added file", "extra.txt", evidence.ProblemAdded, func(t *testing.T, dir string) { write(t, filepath.Join(dir, "extra.txt"), "x") }, nil},
		{"added file in a folder", "audit/extra", evidence.ProblemAdded, func(t *testing.T, dir string) { write(t, filepath.Join(dir, "audit", "extra"), "x") }, nil},
		{"another key", "manifest.json", evidence.ProblemSignature, func(*testing.T, string) {}, other},
		{"manifest list edited", "manifest.json", evidence.ProblemChanged, func(t *testing.T, dir string) {
			p := filepath.Join(dir, "manifest.json")
			b, _ := os.ReadFile(p)
			var m evidence.Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			m.Files = m.Files[1:]
			mb, _ := m.Marshal()
			write(t, p, string(mb))
		}, nil},
		{"manifest signature edited", "manifest.json", evidence.ProblemSignature, func(t *testing.T, dir string) {
			p := filepath.Join(dir, "manifest.json")
			b, _ := os.ReadFile(p)
			write(t, p, strings.Replace(string(b), `generated 2026`, `generated 2027`, 1))
		}, nil},
		{"manifest missing", "manifest.json", evidence.ProblemMissing, func(t *testing.T, dir string) { rm(t, filepath.Join(dir, "manifest.json")) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := pack(t, k, input(t, k))
			tc.tamper(t, dir)
			key := k
			if tc.key != nil {
				key = tc.key
			}
			res, err := evidence.Verify(dir, key.vkey)
			if !errors.Is(err, evidence.ErrVerify) || res.OK {
				t.Fatalf("verify: %+v, %v; want ErrVerify", res, err)
			}
			if !strings.Contains(err.Error(), tc.path+": "+tc.problem) || res.Problems[0].Path != tc.path || res.Problems[0].Problem != tc.problem {
				t.Fatalf("verify: %v (%+v), want %s: %s first", err, res.Problems, tc.path, tc.problem)
			}
		})
	}
	// Several problems are all listed.
	dir := pack(t, k, input(t, k))
	flipByte(t, filepath.Join(dir, "tls.json"))
	rm(t, filepath.Join(dir, "cbom.json"))
	write(t, filepath.Join(dir, "zz"), "x")
	res, err = evidence.Verify(dir, k.vkey)
	if err == nil || len(res.Problems) != 3 || res.Problems[0].Path != "cbom.json" {
		t.Fatalf("three problems: %+v, %v", res, err)
	}
}

func TestConsistencyInPack(t *testing.T) {
	k := newAuditKey(t)
	in := input(t, k)
	// A real log's proof is tested with the RA; here, a proof whose checkpoints do not connect must fail.
	in.Consistency = &auditproof.ConsistencyProof{Format: auditproof.ConsistencyFormat, Origin: "keyward.audit/test", OldSize: 3, NewSize: 5,
		Hashes: [][]byte{bytes.Repeat([]byte{1}, 32)}, OldCheckpoint: string(k.checkpoint(t, 3)), NewCheckpoint: string(in.Checkpoint)}
	res, err := evidence.Verify(pack(t, k, in), k.vkey)
	if err == nil || res.Problems[0].Path != evidence.PathConsistency || res.Problems[0].Problem != evidence.ProblemProof {
		t.Fatalf("a proof that does not connect its checkpoints: %+v, %v", res, err)
	}
}

func TestWriteRefusesExisting(t *testing.T) {
	dir := t.TempDir() // exists, empty
	err := evidence.Write(dir, []evidence.File{{Path: "a", Data: []byte("a")}}, []byte("{}"))
	if !errors.Is(err, evidence.ErrExists) {
		t.Fatalf("write to an existing directory: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	siblings, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 0 || len(siblings) != 1 {
		t.Fatalf("something was written: %v, %v", entries, siblings)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"format":"keyward-evidence-manifest/1","environment":"dev","generated_at":"2026-01-01T00:00:00Z","files":[{"path":"a","sha256":"` + strings.Repeat("0", 64) + `","size":1}],"signature":""}`))
	f.Add([]byte(`{"format":"keyward-evidence-manifest/1","environment":"dev","files":[{"path":"../x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := evidence.ParseManifest(b)
		if err != nil {
			if !errors.Is(err, evidence.ErrMalformedManifest) {
				t.Fatalf("error not ErrMalformedManifest: %v", err)
			}
			return
		}
		for _, e := range m.Files {
			if strings.Contains(e.Path, "..") && strings.Contains("/"+e.Path+"/", "/../") || strings.HasPrefix(e.Path, "/") {
				t.Fatalf("accepted path %q outside the pack", e.Path)
			}
		}
		_ = m.NoteText()
	})
}

func FuzzParseReport(f *testing.F) {
	f.Add([]byte(`{"kind":"probe-tls","env":"dev","generated_at":"2026-01-01T00:00:00Z","cases":[{"result":"PASS"}]}`))
	f.Add([]byte(`{"kind":"fleet-scan","env":"dev","generated_at":"2026-01-01T00:00:00Z","findings":[{}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := evidence.ParseReport(b)
		if err != nil {
			return
		}
		if r.Env == "" || (r.Kind == evidence.KindFleetScan) != (r.Findings != nil) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	write(t, path, string(b))
}

func rm(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
