package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// remoteCLI runs keyward commands against a server, as the operator whose token is in tokenFile.
type remoteCLI struct {
	t            *testing.T
	bin, url, ca string
}

// exec runs keyward with args in remote mode (flags, or with env, the KEYWARD_ variables) and returns stdout,
// stderr and the exit code.
func (r remoteCLI) exec(token string, env bool, args ...string) (string, string, int) {
	r.t.Helper()
	var cmd *exec.Cmd
	if env {
		cmd = exec.Command(r.bin, args...)
		cmd.Env = append(os.Environ(), "KEYWARD_SERVER="+r.url, "KEYWARD_TOKEN_FILE="+token, "KEYWARD_SERVER_CA="+r.ca)
	} else {
		cmd = exec.Command(r.bin, append([]string{"--server", r.url, "--token-file", token, "--server-ca", r.ca}, args...)...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// ok runs a remote command that must succeed.
func (r remoteCLI) ok(token string, args ...string) string {
	r.t.Helper()
	out, errOut, code := r.exec(token, false, args...)
	if code != 0 {
		r.t.Fatalf("keyward --server %s: exit %d\nstdout: %.2000s\nstderr: %.2000s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// json runs a remote command with --json that must succeed, and decodes its output.
func (r remoteCLI) json(token string, v any, args ...string) {
	r.t.Helper()
	out := r.ok(token, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		r.t.Fatalf("keyward --server %s --json: %v\n%.2000s", strings.Join(args, " "), err, out)
	}
}

// fail runs a remote command that must exit with want, saying msg.
func (r remoteCLI) fail(token string, want int, msg string, args ...string) {
	r.t.Helper()
	out, errOut, code := r.exec(token, false, args...)
	if code != want || !strings.Contains(errOut, msg) {
		r.t.Fatalf("keyward --server %s: exit %d, want %d with %q\nstdout: %.1000s\nstderr: %.2000s", strings.Join(args, " "), code, want, msg, out, errOut)
	}
}

func writeCSR(t *testing.T, path, cn string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRemoteCLI runs a real 'keyward serve' and drives it with the CLI in remote mode, as operators on other
// machines would: tokens, a station whose credentials enroll a device, the device registry and its history
// with inclusion proofs, issuance and revocation, a firmware release approved by two signers with their own
// tokens, and a factory batch export reconciled by upload. Each change is checked on the server's data
// directory and in its audit trail, under the operator's name; refusals (a role without the right, a command
// that needs the data directory, a server certificate from another CA) change nothing.
func TestRemoteCLI(t *testing.T) {
	local := runner{t, buildKeyward(t)}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	local.run("init", "--data", data)
	srv := startServer(t, local.bin, regexp.MustCompile(`serving https://(\S+) `), "serve", "--data", data, "--listen", "127.0.0.1:0")
	r := remoteCLI{t: t, bin: local.bin, url: srv.url, ca: filepath.Join(data, "tls", "ca.pem")}
	admin := filepath.Join(data, "admin.token")
	file := func(name string) string { return filepath.Join(dir, name) }

	// Operator tokens, created remotely; each is printed once.
	tokens := map[string]string{}
	for name, role := range map[string]string{"olga": "ca-officer", "aude": "auditor", "signer-a": "release-signer", "signer-b": "release-signer"} {
		out := r.ok(admin, "token", "create", "--name", name, "--role", role)
		tokens[name] = file(name + ".token")
		if err := os.WriteFile(tokens[name], []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	officer, auditor := tokens["olga"], tokens["aude"]
	var toks []struct {
		Name, Role, State string
	}
	r.json(auditor, &toks, "token", "list")
	if len(toks) != 5 {
		t.Fatalf("token list: %+v", toks)
	}

	// A station made remotely enrolls a device over EST with the files the command wrote.
	st := file("station")
	r.ok(officer, "station", "add", "--env", "dev", "--site", "line-1", "--product", "demo-implant", "--quota", "5", "--out", st)
	const serial = "DEMO-00000201"
	local.run("device", "enroll", "--server", srv.url, "--trust", filepath.Join(st, "trust.pem"), "--station", filepath.Join(st, "station.pem"),
		"--station-key", filepath.Join(st, "station.key"), "--product", "demo-implant", "--serial", serial, "--key-out", file("dev.key"), "--out", file("dev.pem"))
	var stations []struct {
		ID    string
		Used  int64
		State string
	}
	r.json(auditor, &stations, "station", "list")
	if len(stations) != 1 || stations[0].Used != 1 {
		t.Fatalf("station list: %+v", stations)
	}
	r.ok(officer, "station", "suspend", stations[0].ID)
	r.json(auditor, &stations, "station", "list")
	if stations[0].State != "suspended" {
		t.Fatalf("station after remote suspend: %+v", stations[0])
	}

	// The registry: the device is found by its serial alone, suspended and resumed; its history carries
	// inclusion proofs that check offline against the log's key.
	var dev struct {
		Serial, State, Certificate string
		Environment                string `json:"environment"`
	}
	r.json(officer, &dev, "device", "suspend", serial)
	if dev.State != "suspended" || dev.Environment != "dev" {
		t.Fatalf("device suspend: %+v", dev)
	}
	r.ok(officer, "device", "resume", serial)
	proofs := file("proofs")
	var hist struct {
		Events []struct{ Seq int64 }
	}
	r.json(admin, &hist, "device", "history", serial, "--proofs", proofs)
	if len(hist.Events) < 2 {
		t.Fatalf("history: %+v", hist)
	}
	local.run("audit", "pubkey", "--data", data, "--out", file("audit.pub"))
	last := hist.Events[len(hist.Events)-1].Seq
	local.run("audit", "check-proof", "--proof", filepath.Join(proofs, "event-"+strconv.FormatInt(last, 10)+".json"), "--key", file("audit.pub"))
	if out := r.ok(auditor, "device", "history", serial); !strings.Contains(out, "device.resume") || !strings.Contains(out, "operator:olga") {
		t.Fatalf("device history text lacks the remote operator's events:\n%s", out)
	}

	// Issuance and revocation; the server's data directory shows the result.
	writeCSR(t, file("c.csr"), "DEMO-00000300")
	var cert struct{ Serial, Status string }
	r.json(officer, &cert, "cert", "issue", "--profile", "implant-identity", "--csr", file("c.csr"))
	var shown struct{ Serial, Status string }
	r.json(auditor, &shown, "cert", "show", cert.Serial)
	if shown.Serial != cert.Serial || shown.Status != "valid" {
		t.Fatalf("cert show: %+v", shown)
	}
	r.fail(auditor, 4, `role "auditor" may not`, "cert", "revoke", cert.Serial, "--reason", "keyCompromise")
	local.json(&shown, "cert", "show", cert.Serial, "--data", data, "--json")
	if shown.Status != "valid" {
		t.Fatalf("a refused remote revocation changed the certificate: %+v", shown)
	}
	r.ok(officer, "cert", "revoke", cert.Serial, "--reason", "keyCompromise")
	local.json(&shown, "cert", "show", cert.Serial, "--data", data, "--json")
	if shown.Status != "revoked" {
		t.Fatalf("after a remote revocation the server's store says %+v", shown)
	}
	r.fail(officer, 6, "", "cert", "revoke", cert.Serial, "--reason", "keyCompromise")
	var certs []struct{ Serial string }
	r.json(auditor, &certs, "cert", "list", "--profile", "implant-identity")
	if len(certs) != 2 {
		t.Fatalf("cert list: %+v", certs)
	}
	if out := r.ok(auditor, "cert", "history", dev.Certificate); !strings.Contains(out, "*") {
		t.Fatalf("cert history does not mark the certificate:\n%s", out)
	}

	// A firmware release: created by one signer, approved by two with their own tokens (one through the
	// command's --token-file, one through KEYWARD_TOKEN_FILE), signed, and verified as a device would.
	image := make([]byte, 32<<10)
	rand.Read(image)
	if err := os.WriteFile(file("fw.bin"), image, 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(r.ok(tokens["signer-a"], "firmware", "release", "create", "--product", "demo-implant", "--version", "3.1.0", "--image", file("fw.bin")))
	r.fail(officer, 4, "may not", "firmware", "release", "approve", id)
	r.fail(admin, 2, "--as applies on the data directory only", "firmware", "release", "approve", id, "--token-file", tokens["signer-a"], "--as", "signer-b")
	r.ok(admin, "firmware", "release", "approve", id, "--token-file", tokens["signer-a"])
	if out, errOut, code := r.exec(tokens["signer-b"], true, "firmware", "release", "approve", id); code != 0 || !strings.Contains(out, "2 of 2 approvals") {
		t.Fatalf("approve through KEYWARD_TOKEN_FILE: exit %d\n%s%s", code, out, errOut)
	}
	r.ok(admin, "firmware", "release", "sign", id, "--out", file("fw.cose"))
	local.run("firmware", "trust", "--data", data, "--out", file("fw-trust.pem"))
	local.run("firmware", "verify", "--manifest", file("fw.cose"), "--image", file("fw.bin"), "--trust", file("fw-trust.pem"), "--device-class", "demo-implant", "--installed-sequence", "0")
	var rels []struct{ ID, Status string }
	r.json(auditor, &rels, "firmware", "release", "list")
	if len(rels) != 1 || rels[0].Status != "signed" {
		t.Fatalf("release list: %+v", rels)
	}

	// A factory batch: made, injected and exported at the site (local commands), reconciled at headquarters
	// by upload.
	local.run("factory", "site-ca", "--data", data, "--env", "dev", "--product", "demo-implant", "--site", "site-b", "--quota", "3", "--valid-for", "30d", "--keystore", "soft")
	batch := file("batch.kwb")
	local.run("factory", "batch", "--data", data, "--env", "dev", "--product", "demo-implant", "--site", "site-b", "--count", "3", "--first-serial", "DEMO-20000001",
		"--keystore", "soft", "--out", batch)
	local.run("factory", "inject", "--batch", batch, "--device-serial", "HW-1")
	local.run("factory", "export", "--data", data, "--batch", batch, "--final", "--out", file("b.kwx"))
	r.fail(officer, 2, "--keystore cannot be used with --server", "factory", "reconcile", file("b.kwx"), "--keystore", "soft")
	var rec []struct {
		Devices int64 `json:"devices_recorded"`
		Revoked int64 `json:"revoked"`
		Final   bool  `json:"final"`
	}
	r.json(officer, &rec, "factory", "reconcile", file("b.kwx"), "--final", "--attested-by", "site QA")
	if len(rec) != 1 || rec[0].Devices != 1 || rec[0].Revoked != 2 || !rec[0].Final {
		t.Fatalf("remote reconcile: %+v", rec)
	}
	r.fail(officer, 6, "", "factory", "reconcile", file("b.kwx"), "--final", "--attested-by", "site QA")
	var hw []struct {
		HardwareSerial string `json:"hardware_serial"`
	}
	r.json(auditor, &hw, "device", "list", "--hardware-serial", "HW-1")
	if len(hw) != 1 {
		t.Fatalf("device list --hardware-serial after reconcile: %+v", hw)
	}

	// Decommission remotely; the audit trail names the remote operator for every change.
	var dec struct{ State string }
	r.json(officer, &dec, "device", "decommission", serial, "--attested-by", "field service FS-9")
	if dec.State != "decommissioned" {
		t.Fatalf("decommission: %+v", dec)
	}
	var events []struct{ Actor, Action, Outcome string }
	local.json(&events, "audit", "list", "--data", data, "--json")
	want := map[string]string{"station.add": "operator:olga", "cert.revoke": "operator:olga", "firmware.release.approve": "operator:signer-b",
		"firmware.release.create": "operator:signer-a", "factory.reconcile": "operator:olga", "device.decommission": "operator:olga", "token.create": "operator:admin"}
	for _, e := range events {
		if actor, ok := want[e.Action]; ok && e.Outcome == "success" && e.Actor == actor {
			delete(want, e.Action)
		}
	}
	if len(want) > 0 {
		t.Errorf("audit trail lacks successful events by the remote operators: %v", want)
	}

	// Refusals: commands that need the data directory, a server URL that is not https, a server certificate
	// that the pinned CA did not issue, and a revoked token.
	r.fail(admin, 2, "runs only on the data directory", "key", "destroy", "soft:x", "--reason", "test")
	r.fail(admin, 2, "runs only on the data directory", "ca", "status", "--env", "dev")
	remoteCAs, localCAs := r.ok(auditor, "ca", "list", "--json"), string(local.run("ca", "list", "--data", data, "--json"))
	if remoteCAs != localCAs {
		t.Fatalf("ca list remotely and locally differ:\n%s\n%s", remoteCAs, localCAs)
	}
	if remote, loc := r.ok(auditor, "ca", "export", "--product", "demo-implant"), string(local.run("ca", "export", "--data", data, "--product", "demo-implant")); remote != loc {
		t.Fatalf("ca export remotely and locally differ")
	}
	if keys := r.ok(auditor, "key", "list"); !strings.Contains(keys, "ca-signing") {
		t.Fatalf("key list: %s", keys)
	}
	if _, errOut, code := r.exec(admin, true, "serve", "--data", data); code != 2 || !strings.Contains(errOut, "runs only on the data directory") {
		t.Fatalf("serve with KEYWARD_SERVER set: exit %d, %s", code, errOut)
	}
	other := r
	other.ca = filepath.Join(st, "station.pem") // a certificate chain, but not of the server's CA
	other.fail(admin, 7, "certificate", "cert", "show", cert.Serial)
	bad := r
	bad.url = "http://" + strings.TrimPrefix(srv.url, "https://")
	bad.fail(admin, 2, "use https://", "cert", "show", cert.Serial)
	r.fail(file("no-such.token"), 2, "token file", "cert", "show", cert.Serial)
	r.ok(admin, "token", "revoke", "aude", "--reason", "left")
	r.fail(auditor, 4, "revoked", "cert", "show", cert.Serial)
	srv.stop(t)
}
