package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/server"
)

// kwCode runs keyward and fails the test unless it exits with want; it returns stdout and stderr together.
func kwCode(t *testing.T, want int, args ...string) string {
	t.Helper()
	out, errs, code := kw(t, args...)
	if code != want {
		t.Fatalf("keyward %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
	}
	return out + errs
}

// signerToken returns the file holding release signer name's own operator token in data directory dir,
// creating the token on first use.
func signerToken(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name+".token")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tok := mustKW(t, "token", "create", "--data", dir, "--name", name, "--role", "release-signer")
	if err := os.WriteFile(path, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestApprovalNeedsTheSignersOwnToken: in local CLI mode one person holding one release signer's token cannot
// approve twice: not again in that name, not in another signer's name with it, and not without a token at
// all; a revoked token approves nothing. The approval event names the token's operator and the local user.
func TestApprovalNeedsTheSignersOwnToken(t *testing.T) {
	dir := initDir(t)
	id := release(t, dir, "dev", "1.0.0", randomImage(t, 4096))
	a := signerToken(t, dir, "signer-a")
	mustKW(t, "firmware", "release", "approve", id, "--data", dir, "--token-file", a)
	if ev := lastEvent(t, dir); ev.Actor != "operator:signer-a" || ev.Details["signer"] != "signer-a" || !strings.HasPrefix(ev.Details["via"], "cli:") {
		t.Fatalf("approval event: %+v", ev)
	}
	for _, args := range [][]string{
		{"--as", "signer-b", "--token-file", a}, // signer-a's token in signer-b's name
		{"--as", "signer-b"},                    // no token: the local administrator names a signer
		{},                                      // no token, no name
	} {
		out := kwCode(t, ExitDenied, append([]string{"firmware", "release", "approve", id, "--data", dir}, args...)...)
		if !strings.Contains(out, "token") {
			t.Errorf("approve %v: %s", args, out)
		}
		if ev := lastEvent(t, dir); ev.Outcome != "refused" || ev.Action != "firmware.release.approve" {
			t.Errorf("approve %v: last event %+v, want the refusal", args, ev)
		}
	}
	kwCode(t, ExitConflict, "firmware", "release", "approve", id, "--data", dir, "--token-file", a)
	b := signerToken(t, dir, "signer-b")
	mustKW(t, "token", "revoke", "signer-b", "--data", dir, "--reason", "left the team")
	if out := kwCode(t, ExitDenied, "firmware", "release", "approve", id, "--data", dir, "--token-file", b); !strings.Contains(out, "revoked") {
		t.Errorf("approve with a revoked token: %s", out)
	}
	if ev := lastEvent(t, dir); ev.Action != "auth.refuse" || ev.Details["token"] != "signer-b" {
		t.Errorf("approve with a revoked token: last event %+v", ev)
	}
	kwCode(t, ExitConflict, "firmware", "release", "sign", id, "--data", dir, "--out", filepath.Join(t.TempDir(), "m"))
}

// release creates a release of image in env and returns its id.
func release(t *testing.T, dir, env, version, image string) string {
	t.Helper()
	return strings.TrimSpace(mustKW(t, "firmware", "release", "create", "--data", dir, "--env", env, "--product", "demo-implant", "--version", version, "--image", image))
}

// approveAndSign approves id by signer-a and signer-b and writes the signed manifest.
func approveAndSign(t *testing.T, dir, id string) string {
	t.Helper()
	mustKW(t, "firmware", "release", "approve", id, "--data", dir, "--as", "signer-a", "--token-file", signerToken(t, dir, "signer-a"))
	mustKW(t, "firmware", "release", "approve", id, "--data", dir, "--as", "signer-b", "--token-file", signerToken(t, dir, "signer-b"))
	out := filepath.Join(t.TempDir(), id+".cbor")
	mustKW(t, "firmware", "release", "sign", id, "--data", dir, "--out", out)
	return out
}

func randomImage(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return writeTemp(t, "image.bin", b)
}

// TestFirmwareReleaseEndToEnd takes a release from draft through 2-of-3 approval to a signed manifest that the
// verifier accepts, checks the refusals on the way, then recovers from a signing-key compromise and rotates the
// root, as a device sees it through trust updates.
func TestFirmwareReleaseEndToEnd(t *testing.T) {
	dir := initDir(t)
	image := randomImage(t, 300<<10)
	trustFile := filepath.Join(t.TempDir(), "firmware-root.pem")
	mustKW(t, "firmware", "trust", "--data", dir, "--env", "dev", "--out", trustFile)
	trustPEM, err := os.ReadFile(trustFile)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(trustPEM); b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("firmware trust does not start with a certificate:\n%s", trustPEM)
	} else if c, err := x509.ParseCertificate(b.Bytes); err != nil || !c.IsCA || !strings.Contains(c.Subject.CommonName, "dev Firmware Root") {
		t.Fatalf("firmware root certificate: %v %v", c.Subject, err)
	}

	id := release(t, dir, "dev", "1.0.0", image)
	// Refusals before the threshold.
	if out := kwCode(t, ExitConflict, "firmware", "release", "sign", id, "--data", dir, "--out", filepath.Join(t.TempDir(), "m")); !strings.Contains(out, "0 of the 2 approvals") {
		t.Errorf("sign before any approval: %s", out)
	}
	mustKW(t, "firmware", "release", "approve", id, "--data", dir, "--as", "signer-a", "--token-file", signerToken(t, dir, "signer-a"))
	if out := kwCode(t, ExitConflict, "firmware", "release", "approve", id, "--data", dir, "--as", "signer-a", "--token-file", signerToken(t, dir, "signer-a")); !strings.Contains(out, "already") {
		t.Errorf("second approval by signer-a: %s", out)
	}
	kwCode(t, ExitDenied, "firmware", "release", "approve", id, "--data", dir, "--as", "mallory", "--token-file", signerToken(t, dir, "mallory"))
	kwCode(t, ExitConflict, "firmware", "release", "sign", id, "--data", dir, "--out", filepath.Join(t.TempDir(), "m"))
	kwCode(t, ExitConflict, "firmware", "release", "create", "--data", dir, "--product", "demo-implant", "--version", "1.0.0", "--image", image)
	kwCode(t, ExitBadRequest, "firmware", "release", "create", "--data", dir, "--product", "demo-implant", "--version", "1.0", "--image", image)
	kwCode(t, ExitBadRequest, "firmware", "release", "create", "--data", dir, "--product", "no-such-line", "--version", "1.0.1", "--image", image)
	mustKW(t, "firmware", "release", "approve", id, "--data", dir, "--as", "signer-c", "--token-file", signerToken(t, dir, "signer-c"))
	m1 := filepath.Join(t.TempDir(), "manifest.cbor")
	mustKW(t, "firmware", "release", "sign", id, "--data", dir, "--out", m1)
	manifest1, _ := os.ReadFile(m1)
	t.Logf("classical signed manifest: %d bytes", len(manifest1))

	verifyArgs := func(manifest, img string, seq string, extra ...string) []string {
		return append([]string{"firmware", "verify", "--manifest", manifest, "--image", img, "--trust", trustFile, "--device-class", "demo-implant", "--installed-sequence", seq}, extra...)
	}
	if out := mustKW(t, verifyArgs(m1, image, "0")...); !strings.Contains(out, "OK: demo-implant 1.0.0 (sequence 1") {
		t.Errorf("verify: %s", out)
	}
	tampered, _ := os.ReadFile(image)
	tampered[1000] ^= 1
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"tampered image", verifyArgs(m1, writeTemp(t, "bad.bin", tampered), "0"), "image digest"},
		{"rollback", verifyArgs(m1, image, "1"), "not newer"},
		{"other device class", append(verifyArgs(m1, image, "0"), "--device-class", "pacemaker-x1"), "another device class"},
		{"hybrid required", verifyArgs(m1, image, "0", "--require-hybrid"), "hybrid"},
		{"expired", verifyArgs(m1, image, "0", "--now", "2099-01-01T00:00:00Z"), "expired"},
	} {
		if out := kwCode(t, ExitBadRequest, tc.args...); !strings.Contains(out, tc.want) {
			t.Errorf("%s: %s does not say %q", tc.name, out, tc.want)
		}
	}

	// Compromise of the signing key: rotate with revocation; a device that applies the update refuses the old
	// key's manifests, even at a higher sequence, and accepts the new key's.
	id2 := release(t, dir, "dev", "1.1.0", image)
	m2old := approveAndSign(t, dir, id2) // signed by the soon-compromised key, sequence 2
	mustKW(t, "firmware", "key", "rotate", "--data", dir, "--env", "dev", "--compromised")
	updates := t.TempDir()
	mustKW(t, "firmware", "trust", "--data", dir, "--env", "dev", "--updates-dir", updates)
	v2 := filepath.Join(updates, "trust-update-v2.cbor")
	if out := kwCode(t, ExitBadRequest, verifyArgs(m2old, image, "1", "--trust-update", v2)...); !strings.Contains(out, "revoked") {
		t.Errorf("manifest of the compromised key after the update: %s", out)
	}
	mustKW(t, verifyArgs(m2old, image, "1")...) // a device without the update still trusts it: why updates matter
	id3 := release(t, dir, "dev", "1.2.0", image)
	m3 := approveAndSign(t, dir, id3)
	mustKW(t, verifyArgs(m3, image, "2", "--trust-update", v2)...)

	// Root rotation: version 3, signed by the old and the new roots.
	mustKW(t, "firmware", "key", "rotate", "--data", dir, "--env", "dev", "--new-root")
	mustKW(t, "firmware", "trust", "--data", dir, "--env", "dev", "--updates-dir", updates)
	v3 := filepath.Join(updates, "trust-update-v3.cbor")
	id4 := release(t, dir, "dev", "2.0.0", image)
	m4 := approveAndSign(t, dir, id4)
	mustKW(t, verifyArgs(m4, image, "3", "--trust-update", v2, "--trust-update", v3)...)
	kwCode(t, ExitBadRequest, verifyArgs(m4, image, "3")...)                                             // old root alone: unknown key
	kwCode(t, ExitBadRequest, verifyArgs(m4, image, "3", "--trust-update", v3)...)                       // skipped version
	kwCode(t, ExitBadRequest, verifyArgs(m3, image, "2", "--trust-update", v2, "--trust-update", v3)...) // key of the retired root

	keys := listJSON[struct {
		Status string `json:"status"`
	}](t, "firmware", "key", "list", "--data", dir, "--env", "dev", "--json")
	status := map[string]int{}
	for _, k := range keys {
		status[k.Status]++
	}
	if status["revoked"] != 2 || status["retired"] != 2 || status["active"] != 2 {
		t.Errorf("signing key states = %v, want 2 revoked, 2 retired, 2 active", status)
	}
	if out := mustKW(t, "audit", "verify", "--data", dir); !strings.Contains(out, "audit chain intact") {
		t.Errorf("audit verify: %s", out)
	}
	actions := map[string]int{}
	for _, e := range listJSON[eventJSON](t, "audit", "list", "--data", dir, "--json", "--limit", "0") {
		actions[e.Action+"/"+e.Outcome]++
	}
	for _, a := range []string{"firmware.release.create/success", "firmware.release.approve/success", "firmware.release.approve/refused",
		"firmware.release.sign/success", "firmware.release.sign/refused", "firmware.trust.create/success", "firmware.trust.update/success", "firmware.key.revoked/success"} {
		if actions[a] == 0 {
			t.Errorf("no %s audit event (have %v)", a, actions)
		}
	}
}

// addEnvironments declares staging and production, each with demo-implant and its firmware policy; hybrid sets
// the hybrid policy on every demo-implant line.
func addEnvironments(t *testing.T, dir string, hybrid bool) {
	t.Helper()
	path := filepath.Join(dir, "keyward.yaml")
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	if hybrid {
		s = strings.ReplaceAll(s, "          signers: [signer-a, signer-b, signer-c]", "          signers: [signer-a, signer-b, signer-c]\n          hybrid: true")
	}
	for _, env := range []string{"staging", "production"} {
		offline := ""
		if env == "production" {
			offline = "\n      offline: true"
		}
		s += "  " + env + ":\n    root:\n      algorithm: ecdsa-p384\n      validity: 25y" + offline +
			"\n    product_lines:\n      demo-implant:\n        algorithm: ecdsa-p256\n        validity: 20y\n        profiles: [implant-identity]\n" +
			"        firmware:\n          threshold: 2\n          signers: [signer-a, signer-b, signer-c]\n"
		if hybrid {
			s += "          hybrid: true\n"
		}
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFirmwareEnvironmentsApart: a production release is signed with production keys only (here held in a
// SoftHSM2 token), and a device pinned to dev refuses it; hybrid manifests need both signatures.
func TestFirmwareEnvironmentsApartHybridHSM(t *testing.T) {
	token := pkcs11test.NewToken(t)
	t.Setenv("KEYWARD_PKCS11_PIN", pkcs11test.PIN) // keystores.yaml keeps the token URI without its PIN
	dir := initDir(t)
	addEnvironments(t, dir, true)
	image := randomImage(t, 64<<10)
	kwCode(t, ExitNotFound, "firmware", "trust", "--data", dir, "--env", "production") // never created implicitly
	mustKW(t, "firmware", "init", "--data", dir, "--env", "production", "--keystore", token)
	kwCode(t, ExitConflict, "firmware", "init", "--data", dir, "--env", "production")

	prodTrust := writeTemp(t, "prod.pem", []byte(mustKW(t, "firmware", "trust", "--data", dir, "--env", "production")))
	devTrust := writeTemp(t, "dev.pem", []byte(mustKW(t, "firmware", "trust", "--data", dir, "--env", "dev")))
	id := release(t, dir, "production", "3.0.0", image)
	m := approveAndSign(t, dir, id)
	data, _ := os.ReadFile(m)
	if len(data) < 3309 || !bytes.HasPrefix(data, []byte{0xd8, 0x62}) {
		t.Fatalf("hybrid manifest is %d bytes starting %x; want a COSE_Sign with an ML-DSA-65 signature", len(data), data[:2])
	}
	t.Logf("hybrid signed manifest: %d bytes", len(data))
	args := func(trust string) []string {
		return []string{"firmware", "verify", "--manifest", m, "--image", image, "--trust", trust, "--device-class", "demo-implant", "--installed-sequence", "0", "--require-hybrid"}
	}
	mustKW(t, args(prodTrust)...)
	if out := kwCode(t, ExitBadRequest, args(devTrust)...); !strings.Contains(out, "not certified") {
		t.Errorf("production manifest against the dev trust: %s", out)
	}
	keys := listJSON[struct {
		URI       string `json:"uri"`
		Algorithm string `json:"algorithm"`
	}](t, "firmware", "key", "list", "--data", dir, "--env", "production", "--json")
	for _, k := range keys {
		if k.Algorithm == "ecdsa-p256" && !strings.HasPrefix(k.URI, "pkcs11:") {
			t.Errorf("production ECDSA firmware-signing key %s is not in the HSM", k.URI)
		}
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command("openssl", "x509", "-in", prodTrust, "-noout", "-subject").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "production Firmware Root") {
			t.Errorf("openssl x509 on the trust file: %v %s", err, out)
		}
	}
}

// TestFirmwareReleaseJSONSameInCLIAndAPI: the CLI's --json and the API answer for the same release carry the
// same field names (one view type, api.FirmwareRelease), approvers among them.
func TestFirmwareReleaseJSONSameInCLIAndAPI(t *testing.T) {
	dir := initDir(t)
	id := release(t, dir, "dev", "1.0.0", randomImage(t, 4096))
	fields := func(what string, data []byte) []string {
		t.Helper()
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, data)
		}
		return slices.Sorted(maps.Keys(m))
	}
	cli := fields("firmware release approve --json", []byte(mustKW(t, "firmware", "release", "approve", id, "--data", dir, "--as", "signer-a", "--token-file", signerToken(t, dir, "signer-a"), "--json")))
	listed := listJSON[json.RawMessage](t, "firmware", "release", "list", "--data", dir, "--json")
	if len(listed) != 1 {
		t.Fatalf("release list: %d releases", len(listed))
	}
	list := fields("firmware release list --json", listed[0])

	ctx := context.Background()
	n, err := node.Open(ctx, node.Options{Dir: dir, Warn: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	tok, err := os.ReadFile(filepath.Join(dir, node.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/api/v1/firmware/releases/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	rec := httptest.NewRecorder()
	server.New(server.Deps{RA: n.RA}).Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET release: %d %s", rec.Code, rec.Body)
	}
	apiFields := fields("GET /api/v1/firmware/releases/{id}", rec.Body.Bytes())

	if !slices.Equal(cli, apiFields) || !slices.Equal(list, apiFields) {
		t.Errorf("field names differ:\n  approve --json %v\n  list --json    %v\n  API            %v", cli, list, apiFields)
	}
	if !slices.Contains(apiFields, "approvers") || slices.Contains(apiFields, "approvals") {
		t.Errorf("release fields %v: want approvers, not approvals", apiFields)
	}
}
