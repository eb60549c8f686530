package cli

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/factory"
	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
)

// TestKDKAndDeriveCLI: a KDK made, rotated and listed; a batch with --symmetric injected, exported and
// reconciled; then 'key derive' for the reconciled device gives, wrapped with RFC 5649 under a transport key
// the test holds, exactly the key the device got from the batch. Refusals: unknown purpose, wrong environment,
// missing or unknown device, no --wrap-with, a decommissioned device.
func TestKDKAndDeriveCLI(t *testing.T) {
	dir := initDir(t)
	d := []string{"--data", dir}
	for _, c := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"key", "kdk", "create", "--product", "demo-implant", "--purpose", "ca-signing"}, ExitBadRequest, "unknown key-derivation purpose"},
		{[]string{"key", "kdk", "create", "--env", "qa", "--product", "demo-implant", "--purpose", "device-link"}, ExitBadRequest, `unknown environment "qa"`},
		{[]string{"key", "kdk", "create", "--product", "demo-implant"}, ExitUsage, "purpose"},
		{[]string{"key", "kdk", "rotate", "--product", "demo-implant", "--purpose", "device-link"}, ExitNotFound, "kdk create"},
	} {
		_, errs, code := kw(t, append(c.args, d...)...)
		if code != c.code || !strings.Contains(errs, c.text) {
			t.Errorf("%v: exit %d, %q; want %d mentioning %q", c.args, code, errs, c.code, c.text)
		}
	}
	mustKW(t, append([]string{"key", "kdk", "create", "--product", "demo-implant", "--purpose", "device-link"}, d...)...)
	var v2 struct {
		Version int    `json:"version"`
		URI     string `json:"uri"`
	}
	if err := json.Unmarshal([]byte(mustKW(t, append([]string{"key", "kdk", "rotate", "--product", "demo-implant", "--purpose", "device-link", "--json"}, d...)...)), &v2); err != nil || v2.Version != 2 {
		t.Fatalf("rotate: %+v, %v", v2, err)
	}
	list := mustKW(t, append([]string{"key", "kdk", "list"}, d...)...)
	if !strings.Contains(list, "device-link") || strings.Count(list, "active") != 2 {
		t.Fatalf("kdk list:\n%s", list)
	}

	mustKW(t, "factory", "site-ca", "--data", dir, "--env", "dev", "--product", "demo-implant", "--site", "site-a", "--quota", "10", "--valid-for", "30d")
	batch := filepath.Join(t.TempDir(), "batch.kwb")
	mustKW(t, "factory", "batch", "--data", dir, "--env", "dev", "--product", "demo-implant", "--site", "site-a", "--count", "3",
		"--first-serial", "DEMO-00000001", "--keystore", "soft", "--out", batch, "--symmetric", "device-link")
	var in factory.Injected
	if err := json.Unmarshal([]byte(mustKW(t, "factory", "inject", "--batch", batch, "--device-serial", "HW-1", "--json")), &in); err != nil {
		t.Fatal(err)
	}
	if len(in.Symmetric) != 1 || in.Symmetric[0].KDKVersion != 2 {
		t.Fatalf("injected symmetric keys %+v", in.Symmetric)
	}
	transport, err := os.ReadFile(batch + ".transport")
	if err != nil {
		t.Fatal(err)
	}
	master, _ := hex.DecodeString(strings.TrimSpace(string(transport)))
	deviceKey, err := factory.UnwrapDeviceSecret(master, in.BatchID, in.Index, in.CertSerial, "device-link", in.Symmetric[0].WrappedKey)
	if err != nil {
		t.Fatal(err)
	}
	x := filepath.Join(t.TempDir(), "batch.kwx")
	mustKW(t, "factory", "export", "--data", dir, "--batch", batch, "--out", x)
	mustKW(t, "factory", "reconcile", "--data", dir, x)

	kek := bytes.Repeat([]byte{0x5a}, 32)
	kekFile := filepath.Join(t.TempDir(), "transport.hex")
	if err := os.WriteFile(kekFile, []byte(hex.EncodeToString(kek)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	derive := []string{"key", "derive", "--data", dir, "--product", "demo-implant", "--purpose", "device-link", "--wrap-with", "file:" + kekFile}
	var got struct {
		Wrapped    []byte `json:"wrapped_key"`
		KDKVersion int    `json:"kdk_version"`
		New        bool   `json:"new"`
	}
	if err := json.Unmarshal([]byte(mustKW(t, append(derive, "--device", in.CommonName, "--json")...)), &got); err != nil {
		t.Fatal(err)
	}
	key, err := pkcs11test.UnwrapRFC5649(kek, got.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, deviceKey) || got.KDKVersion != 2 || got.New {
		t.Fatalf("derived %x (version %d, new %v); the device got %x", key, got.KDKVersion, got.New, deviceKey)
	}
	if out, _, _ := kw(t, "audit", "list", "--data", dir); !strings.Contains(out, "key.derive") || !strings.Contains(out, "key.kdk.rotate") {
		t.Errorf("audit list lacks key.derive or key.kdk.rotate:\n%s", out)
	}

	for _, c := range []struct {
		args []string
		code int
		text string
	}{
		{append(derive, "--device", "DEMO-09999999"), ExitNotFound, "no device"},
		{append(derive[:len(derive)-2:len(derive)-2], "--device", in.CommonName), ExitUsage, "wrap-with"},
		{append(derive, "--device", in.CommonName, "--env", "staging"), ExitUsage, "only dev"},
		{[]string{"key", "derive", "--data", dir, "--product", "demo-implant", "--purpose", "device-link", "--wrap-with", "file:" + kekFile}, ExitUsage, "device"},
		{[]string{"key", "derive", "--data", dir, "--product", "demo-implant", "--purpose", "kek", "--device", in.CommonName, "--wrap-with", "file:" + kekFile}, ExitBadRequest, "unknown key-derivation purpose"},
	} {
		_, errs, code := kw(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.text) {
			t.Errorf("%v: exit %d, %q; want %d mentioning %q", c.args, code, errs, c.code, c.text)
		}
	}
	mustKW(t, "device", "decommission", in.CommonName, "--data", dir, "--attested-by", "QA")
	if _, errs, code := kw(t, append(derive, "--device", in.CommonName)...); code != ExitConflict || !strings.Contains(errs, "decommissioned") {
		t.Errorf("derive for a decommissioned device: exit %d, %q", code, errs)
	}
	mustKW(t, "audit", "verify", "--data", dir)
}
