package main

// Offline manufacturing end to end, run against the real binary as separate processes: a site batch is
// provisioned, SIGKILLed mid-way and resumed, a subset is injected, the batch is closed with a final export
// and reconciled at headquarters, and the registry, certificates, keys, CRL and audit trail are checked to hold
// exactly what was injected, with every unused credential revoked and its key destroyed.
//
// KEYWARD_FACTORY_E2E_N sets the batch size (default 2,000; a full-size run is 100,000).
// KEYWARD_FACTORY_E2E_INJECT sets how many credentials are injected (default 20 % of N). Each injection is one
// 'keyward factory inject' process; after the first, which builds the batch's index (BATCH.kwb.kwi), each reads
// a few kilobytes whatever N is, so the cost per injection is the process start and its fsyncs.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
)

func TestMain(m *testing.M) { pkcs11test.Main(m) }

// buildKeyward builds the keyward binary into a temporary directory.
func buildKeyward(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keyward")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runner runs keyward commands as processes.
type runner struct {
	t   *testing.T
	bin string
}

// run runs keyward with args and returns its stdout, failing the test on a non-zero exit.
func (r runner) run(args ...string) []byte {
	r.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(r.bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("keyward %s: %v\nstdout: %.2000s\nstderr: %.2000s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// json runs keyward with args and decodes its stdout into v.
func (r runner) json(v any, args ...string) {
	r.t.Helper()
	out := r.run(args...)
	if err := json.Unmarshal(out, v); err != nil {
		r.t.Fatalf("keyward %s: decode JSON output: %v\n%.2000s", strings.Join(args, " "), err, out)
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

type batchInfo struct {
	Header struct {
		BatchID string `json:"batch_id"`
		Custody string `json:"custody"`
	} `json:"header"`
	Count             int64 `json:"count"`
	Credentials       int64 `json:"credentials"`
	Complete          bool  `json:"complete"`
	UniqueIndexes     int64 `json:"unique_indexes"`
	UniqueSerials     int64 `json:"unique_serials"`
	UniqueCommonNames int64 `json:"unique_common_names"`
	Injected          int64 `json:"injected"`
	TornTail          bool  `json:"torn_tail"`
}

// TestFactoryBatchKillResumeInjectReconcile runs it with software-wrapped device keys (dev).
func TestFactoryBatchKillResumeInjectReconcile(t *testing.T) {
	n := envInt(t, "KEYWARD_FACTORY_E2E_N", 2000)
	k := envInt(t, "KEYWARD_FACTORY_E2E_INJECT", n*2/10)
	if n < 100 || k >= n {
		t.Fatalf("KEYWARD_FACTORY_E2E_N=%d, KEYWARD_FACTORY_E2E_INJECT=%d: want N >= 100 and fewer injected than N", n, k)
	}
	factoryE2E(t, "soft", n, k)
}

// TestFactoryBatchKillResumeInjectReconcilePKCS11 is the same flow with the site CA and every device key in a
// SoftHSM2 token: the unused keys are destroyed in the token by the reconciliation. It skips without SoftHSM2,
// and fails under KEYWARD_REQUIRE_INTEGRATION=1. Key generation in the token is slow, so the batch is small.
func TestFactoryBatchKillResumeInjectReconcilePKCS11(t *testing.T) {
	token := pkcs11test.NewToken(t)
	// Every later process opens the site CA key by its recorded URI, which carries no PIN; the site's
	// operator supplies it as KEYWARD_PKCS11_PIN.
	t.Setenv("KEYWARD_PKCS11_PIN", pkcs11test.PIN)
	factoryE2E(t, token, 300, 120)
}

// factoryE2E runs the flow with a batch of n credentials, k of them injected. keystore is "soft" (the site
// CA key in the software keystore, device keys software-wrapped) or a pkcs11: URI (the site HSM).
func factoryE2E(t *testing.T, keystore string, n, k int) {
	const (
		env, product, site = "dev", "demo-implant", "site-a"
		siteCA             = env + "/" + product + "/" + site
		firstSerial        = "DEMO-10000001"
	)
	phase := func(name string, start time.Time) { t.Logf("%-28s %8.1fs", name, time.Since(start).Seconds()) }

	start := time.Now()
	r := runner{t, buildKeyward(t)}
	phase("build", start)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	r.run("init", "--data", data)
	r.run("factory", "site-ca", "--data", data, "--env", env, "--product", product, "--site", site,
		"--quota", strconv.Itoa(n), "--valid-for", "30d", "--keystore", keystore)

	// Provision, SIGKILL mid-way, resume with the very same command.
	batch := filepath.Join(dir, "batch.kwb")
	batchArgs := []string{"factory", "batch", "--data", data, "--env", env, "--product", product, "--site", site,
		"--count", strconv.Itoa(n), "--first-serial", firstSerial, "--keystore", keystore, "--out", batch}
	start = time.Now()
	var stderr bytes.Buffer
	cmd := exec.Command(r.bin, batchArgs...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// A credential frame is about 860 bytes; killing at n*300 bytes is about a third of the way.
	threshold := int64(n) * 300
	killed := false
	for !killed {
		select {
		case err := <-done:
			t.Fatalf("the batch ended (%v) before it grew to %d bytes and could be killed; stderr:\n%s", err, threshold, stderr.String())
		case <-time.After(2 * time.Millisecond):
		}
		if st, err := os.Stat(batch); err == nil && st.Size() >= threshold {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	var ee *exec.ExitError
	if err := <-done; !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("batch process: %v, want killed by SIGKILL", err)
	}
	phase("batch until SIGKILL", start)
	var info batchInfo
	r.json(&info, "factory", "batch", "show", batch, "--json")
	if info.Complete || info.Credentials <= 0 || info.Credentials >= int64(n) {
		t.Fatalf("after SIGKILL: %+v; want a partial batch", info)
	}
	t.Logf("killed with %d of %d credentials in the file (torn tail %v)", info.Credentials, n, info.TornTail)

	start = time.Now()
	var sum struct {
		BatchID   string  `json:"batch_id"`
		Resumed   int64   `json:"resumed_from"`
		Written   int64   `json:"written"`
		PerSecond float64 `json:"per_second"`
	}
	r.json(&sum, append(batchArgs, "--json")...)
	phase("batch resume", start)
	if sum.Resumed != info.Credentials || sum.Resumed+sum.Written != int64(n) || sum.BatchID != info.Header.BatchID {
		t.Fatalf("resume summary %+v after %d credentials of batch %s", sum, info.Credentials, info.Header.BatchID)
	}
	t.Logf("resume wrote %d credentials at %.0f/s", sum.Written, sum.PerSecond)
	r.json(&info, "factory", "batch", "show", batch, "--json")
	if info.Count != int64(n) || info.Credentials != int64(n) || !info.Complete || info.UniqueIndexes != int64(n) ||
		info.UniqueSerials != int64(n) || info.UniqueCommonNames != int64(n) || info.Injected != 0 || info.TornTail {
		t.Fatalf("resumed batch: %+v; want %d whole credentials with unique indexes, serials and names", info, n)
	}
	batchID := info.Header.BatchID

	// Inject the first k credentials, each into a device with its own hardware serial.
	start = time.Now()
	type injected struct {
		Index        int64  `json:"index"`
		DeviceSerial string `json:"device_serial"`
		CommonName   string `json:"common_name"`
		CertSerial   string `json:"cert_serial"`
		CertDER      []byte `json:"certificate"`
		WrappedKey   []byte `json:"wrapped_key"`
		KeyReleased  bool   `json:"key_released"`
	}
	// With the site HSM, the first few devices get their key exported wrapped under a transport key their
	// secure element holds (here one the test knows), and the HSM's copy destroyed.
	var wrapArgs []string
	kek := []byte("0011223344556677889900aabbccddee")
	const wrapped = 5
	if keystore != "soft" {
		kekFile := filepath.Join(dir, "transport.hex")
		if err := os.WriteFile(kekFile, []byte(fmt.Sprintf("%x\n", kek)), 0o600); err != nil {
			t.Fatal(err)
		}
		var tk struct {
			URI string `json:"uri"`
		}
		r.json(&tk, "factory", "transport-key", "--keystore", keystore, "--import", kekFile, "--json")
		wrapArgs = []string{"--keystore", keystore, "--wrap-with", tk.URI}
	}
	byCN := make(map[string]injected, k) // device identity (certificate CN) -> credential
	injectedCerts := make(map[string]bool, k)
	for i := range k {
		var in injected
		hw := fmt.Sprintf("HW-%07d", i)
		args := []string{"factory", "inject", "--batch", batch, "--device-serial", hw, "--json"}
		if wrapArgs != nil && i < wrapped {
			args = append(args, wrapArgs...)
		}
		r.json(&in, args...)
		if in.Index != int64(i) || in.DeviceSerial != hw || len(in.CertDER) == 0 {
			t.Fatalf("injection %d: %+v", i, in)
		}
		if wrapArgs != nil && i < wrapped {
			pkcs8, err := pkcs11test.UnwrapRFC5649(kek, in.WrappedKey)
			if err != nil {
				t.Fatalf("injection %d: unwrap: %v", i, err)
			}
			key, err := x509.ParsePKCS8PrivateKey(pkcs8)
			cert, _ := x509.ParseCertificate(in.CertDER)
			if err != nil || !key.(*ecdsa.PrivateKey).PublicKey.Equal(cert.PublicKey) || !in.KeyReleased {
				t.Fatalf("injection %d: the wrapped key is not the certificate's (%v), or the HSM kept it (released %v)", i, err, in.KeyReleased)
			}
		}
		if _, dup := byCN[in.CommonName]; dup || injectedCerts[in.CertSerial] {
			t.Fatalf("injection %d handed out %s (certificate %s) twice", i, in.CommonName, in.CertSerial)
		}
		byCN[in.CommonName] = in
		injectedCerts[in.CertSerial] = true
	}
	phase(fmt.Sprintf("inject %d", k), start)
	r.json(&info, "factory", "batch", "show", batch, "--json")
	if info.Injected != int64(k) {
		t.Fatalf("after %d injections show says %d", k, info.Injected)
	}

	// Close the batch at the site, reconcile at headquarters (the same data directory holds both here, as in
	// internal/factory's reconcile tests).
	start = time.Now()
	export := filepath.Join(dir, "site-export.kwx")
	var xs struct {
		Injected, Unused, Records int64
		Final                     bool
	}
	r.json(&xs, "factory", "export", "--data", data, "--batch", batch, "--out", export, "--final", "--json")
	if xs.Injected != int64(k) || xs.Unused != int64(n-k) || xs.Records != int64(n) || !xs.Final {
		t.Fatalf("final export %+v", xs)
	}
	phase("export --final", start)
	var before struct {
		OK     bool  `json:"ok"`
		Events int64 `json:"events"`
	}
	r.json(&before, "audit", "verify", "--data", data, "--json")
	start = time.Now()
	var rec []struct {
		BatchID       string `json:"batch_id"`
		Devices       int64  `json:"devices_recorded"`
		Certificates  int64  `json:"certificates_recorded"`
		Revoked       int64  `json:"revoked"`
		KeysDestroyed int64  `json:"keys_destroyed"`
		Final         bool   `json:"final"`
		Destruction   string `json:"destruction"`
	}
	destroy := []string{"--attested-by", "QA destruction record 1"} // software-wrapped keys: only the site can erase them
	if keystore != "soft" {
		destroy = []string{"--keystore", keystore} // destroyed in the site HSM
	}
	r.json(&rec, append([]string{"factory", "reconcile", "--data", data, "--env", env, "--site", site, "--final", "--json", export}, destroy...)...)
	phase("reconcile --final", start)
	if len(rec) != 1 || rec[0].BatchID != batchID || rec[0].Devices != int64(k) || rec[0].Certificates != int64(n) ||
		rec[0].Revoked != int64(n-k) || rec[0].KeysDestroyed != int64(n-k) || !rec[0].Final ||
		(keystore == "soft") != (rec[0].Destruction == "attested") {
		t.Fatalf("reconcile: %+v", rec)
	}

	// The registry is exactly the injected set: the device identities and their certificates.
	start = time.Now()
	var devices []struct {
		Environment    string `json:"environment"`
		ProductLine    string `json:"product_line"`
		Serial         string `json:"serial"`
		State          string `json:"state"`
		Station        string `json:"station"`
		Site           string `json:"site"`
		Certificate    string `json:"certificate"`
		HardwareSerial string `json:"hardware_serial"`
	}
	r.json(&devices, "device", "list", "--data", data, "--json")
	if len(devices) != k {
		t.Fatalf("registry holds %d devices; %d were injected", len(devices), k)
	}
	for _, d := range devices {
		in, ok := byCN[d.Serial]
		if !ok || d.Certificate != in.CertSerial || d.Environment != env || d.ProductLine != product || d.Site != site ||
			d.State != "active" || d.Station != "batch:"+batchID || d.HardwareSerial != in.DeviceSerial {
			t.Fatalf("registry device %+v is not an injected credential (injected as %+v, %v)", d, in, ok)
		}
	}

	// Every certificate of the batch is known: the injected ones valid, every other one revoked.
	var certs []struct {
		Serial  string `json:"serial"`
		Issuer  string `json:"issuer"`
		Subject string `json:"subject"`
		Status  string `json:"status"`
		SPKI    string `json:"spki_sha256"`
	}
	r.json(&certs, "cert", "list", "--data", data, "--issuer", siteCA, "--limit", "0", "--json")
	if len(certs) != n {
		t.Fatalf("%d certificates under %s; the batch holds %d", len(certs), siteCA, n)
	}
	unused := make(map[string]bool, n-k) // certificate serial
	injectedSPKI := make(map[string]bool, k)
	for _, c := range certs {
		cn := strings.TrimPrefix(c.Subject, "CN=")
		switch in, ok := byCN[cn]; {
		case ok && in.CertSerial == c.Serial && c.Status == "valid":
			injectedSPKI[c.SPKI] = true
		case !ok && c.Status == "revoked" && !injectedCerts[c.Serial]:
			unused[c.Serial] = true
		default:
			t.Fatalf("certificate %s (%s) is %s; injected as %+v (%v)", c.Serial, c.Subject, c.Status, in, ok)
		}
	}
	if len(unused) != n-k || len(injectedSPKI) != k {
		t.Fatalf("%d revoked unused and %d valid injected certificates; want %d and %d", len(unused), len(injectedSPKI), n-k, k)
	}

	// Revoked for cessationOfOperation (RFC 5280 5.3.1), as the site CA's CRL publishes it.
	crlFile := filepath.Join(dir, "site.crl")
	r.run("revocation", "crl", "--data", data, "--ca", siteCA, "--out", crlFile)
	der, err := os.ReadFile(crlFile)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != n-k {
		t.Fatalf("CRL of %s lists %d certificates; %d are unused", siteCA, len(crl.RevokedCertificateEntries), n-k)
	}
	const cessationOfOperation = 5
	for _, e := range crl.RevokedCertificateEntries {
		if s := e.SerialNumber.Text(16); !unused[s] || e.ReasonCode != cessationOfOperation {
			t.Fatalf("CRL entry %s reason %d: want an unused credential with reason cessationOfOperation (5)", s, e.ReasonCode)
		}
	}

	// Device keys: the injected ones live on their devices, every unused one is destroyed.
	var keys []struct {
		Purpose     string     `json:"purpose"`
		Location    string     `json:"location"`
		State       string     `json:"state"`
		SPKI        string     `json:"spki_sha256"`
		DestroyedAt *time.Time `json:"destroyed_at"`
	}
	r.json(&keys, "key", "list", "--data", data, "--json")
	var active, destroyed int
	for _, key := range keys {
		if key.Purpose != "device-identity" {
			continue
		}
		switch {
		case key.State == "active" && key.Location == "device" && injectedSPKI[key.SPKI]:
			active++
		case key.State == "destroyed" && key.DestroyedAt != nil && !injectedSPKI[key.SPKI] && (keystore == "soft") != (key.Location == "pkcs11"):
			destroyed++
		default:
			t.Fatalf("device key %+v", key)
		}
	}
	if active != k || destroyed != n-k {
		t.Fatalf("device keys: %d active on devices and %d destroyed; want %d and %d", active, destroyed, k, n-k)
	}

	// The audit trail binds each device identity to the hardware serial it was injected into, and verifies.
	var events []struct {
		Action  string            `json:"action"`
		Subject string            `json:"subject"`
		Details map[string]string `json:"details"`
	}
	r.json(&events, "audit", "list", "--data", data, "--after", strconv.FormatInt(before.Events, 10), "--limit", "0", "--json")
	counts := map[string]int{}
	for _, e := range events {
		counts[e.Action]++
		switch e.Action {
		case "device.register":
			if in, ok := byCN[e.Subject]; !ok || e.Details["device_serial"] != in.DeviceSerial || e.Details["certificate"] != in.CertSerial {
				t.Fatalf("audit %s %s %v: not an injected credential", e.Action, e.Subject, e.Details)
			}
		case "cert.revoke":
			if !unused[e.Subject] || e.Details["reason"] != "cessationOfOperation" {
				t.Fatalf("audit %s %s %v", e.Action, e.Subject, e.Details)
			}
		}
	}
	if counts["device.register"] != k || counts["cert.revoke"] != n-k || counts["key.destroy"] != n-k || counts["cert.issue"] != n {
		t.Fatalf("audit events of the reconciliation: %v", counts)
	}
	var verify struct {
		OK     bool  `json:"ok"`
		Events int64 `json:"events"`
	}
	r.json(&verify, "audit", "verify", "--data", data, "--json")
	if !verify.OK || verify.Events <= before.Events {
		t.Fatalf("audit verify: %+v", verify)
	}
	phase("check registry", start)
}
