package cli

import (
	"encoding/json"
	"path/filepath"
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
