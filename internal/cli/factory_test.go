package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFactoryCLI(t *testing.T) {
	dir := initDir(t)
	mustKW(t, "factory", "site-ca", "--data", dir, "--env", "dev", "--product", "demo-implant", "--site", "site-a", "--quota", "100", "--valid-for", "30d")
	out := filepath.Join(t.TempDir(), "batch.kwb")
	batch := []string{"factory", "batch", "--data", dir, "--env", "dev", "--product", "demo-implant", "--site", "site-a", "--count", "40",
		"--first-serial", "DEMO-00000001", "--keystore", "soft", "--out", out}
	mustKW(t, batch...)
	if _, errs, code := kw(t, append(batch[:len(batch)-8:len(batch)-8], "--count", "41", "--first-serial", "DEMO-00000001", "--keystore", "soft", "--out", out)...); code != ExitConflict {
		t.Errorf("resume with another count: exit %d, %s", code, errs)
	}
	var info struct {
		Count         int64 `json:"count"`
		UniqueSerials int64 `json:"unique_serials"`
		Injected      int64 `json:"injected"`
	}
	show := mustKW(t, "factory", "batch", "show", out, "--json")
	if err := json.Unmarshal([]byte(show), &info); err != nil || info.Count != 40 || info.UniqueSerials != 40 || info.Injected != 0 {
		t.Fatalf("show: %s (%v)", show, err)
	}
	mustKW(t, "factory", "inject", "--batch", out, "--device-serial", "HW-1")
	if _, errs, code := kw(t, "factory", "inject", "--batch", out, "--device-serial", "HW-1"); code != ExitConflict {
		t.Errorf("same device twice: exit %d, %s", code, errs)
	}
	show = mustKW(t, "factory", "batch", "show", out, "--json")
	if err := json.Unmarshal([]byte(show), &info); err != nil || info.Injected != 1 {
		t.Fatalf("show: %s (%v)", show, err)
	}
	if _, errs, code := kw(t, "factory", "batch", "--data", dir, "--env", "dev", "--product", "demo-implant", "--site", "site-a", "--count", "61",
		"--first-serial", "DEMO-00001000", "--keystore", "soft", "--out", filepath.Join(t.TempDir(), "b.kwb")); code != ExitBadRequest {
		t.Errorf("batch over the quota: exit %d, %s", code, errs)
	}

	x := filepath.Join(t.TempDir(), "site-export.kwx")
	mustKW(t, "factory", "export", "--data", dir, "--batch", out, "--out", x, "--final")
	if _, errs, code := kw(t, "factory", "reconcile", "--data", dir, x); code != ExitBadRequest {
		t.Errorf("final export without --final: exit %d, %s", code, errs)
	}
	rec := mustKW(t, "factory", "reconcile", "--data", dir, "--final", "--attested-by", "QA", "--json", x)
	var res []struct {
		Devices int64 `json:"devices_recorded"`
		Revoked int64 `json:"revoked"`
	}
	if err := json.Unmarshal([]byte(rec), &res); err != nil || len(res) != 1 || res[0].Devices != 1 || res[0].Revoked != 39 {
		t.Fatalf("reconcile: %s (%v)", rec, err)
	}
	if _, errs, code := kw(t, "factory", "reconcile", "--data", dir, "--final", "--attested-by", "QA", x); code != ExitConflict {
		t.Errorf("replay: exit %d, %s", code, errs)
	}
}

// TestFactorySiteCLIRefusals: every refusal of the site commands names the problem, exits with its code and
// writes nothing.
func TestFactorySiteCLIRefusals(t *testing.T) {
	dir := initDir(t)
	site := filepath.Join(t.TempDir(), "site")
	pkg := []string{"factory", "site-package", "--data", dir, "--product", "demo-implant", "--site", "site-a", "--out", site}
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no such site CA", pkg, ExitNotFound, "no site CA dev/demo-implant/site-a"},
		{"serve outside a site directory", []string{"factory", "serve", "--data", dir, "--listen", "127.0.0.1:0"}, ExitUsage, "is not a site data directory"},
		{"site log export without a site", []string{"factory", "export", "--data", dir, "--out", filepath.Join(t.TempDir(), "x.kwx")}, ExitUsage, "--product and --site"},
		{"transport key without an HSM", []string{"factory", "transport-key", "--keystore", "soft"}, ExitUsage, "pkcs11"},
		{"wrap without an HSM", []string{"factory", "inject", "--batch", "b.kwb", "--device-serial", "HW-1", "--wrap-with", "pkcs11:token=x"}, ExitUsage, "--keystore pkcs11"},
	}
	for _, tc := range cases {
		_, errs, code := kw(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%s: exit %d, %q; want exit %d with %q", tc.name, code, errs, tc.code, tc.msg)
		}
	}
	mustKW(t, "factory", "site-ca", "--data", dir, "--product", "demo-implant", "--site", "site-a", "--quota", "10")
	if _, errs, code := kw(t, pkg...); code != ExitBadRequest || !strings.Contains(errs, "no factory station is registered for site site-a") {
		t.Errorf("package without stations: exit %d, %q", code, errs)
	}
	if _, err := os.Stat(site); !os.IsNotExist(err) {
		t.Errorf("a refused package left %s behind (%v)", site, err)
	}
	mustKW(t, "station", "add", "--data", dir, "--site", "site-a", "--product", "demo-implant", "--out", filepath.Join(t.TempDir(), "st"))
	if err := os.MkdirAll(site, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := kw(t, pkg...); code != ExitConflict || !strings.Contains(errs, "not empty") {
		t.Errorf("package into a non-empty directory: exit %d, %q", code, errs)
	}
	mustKW(t, append(pkg[:len(pkg)-1:len(pkg)-1], filepath.Join(t.TempDir(), "site2"))...)
}
