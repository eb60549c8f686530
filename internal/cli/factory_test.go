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
}
