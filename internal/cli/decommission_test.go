package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/ra"
)

// TestDecommissionAndRegistryRevocationCLI enrolls devices over EST from two sites, revokes by station and
// site (dry run first), decommissions a device and checks that it is final.
func TestDecommissionAndRegistryRevocationCLI(t *testing.T) {
	dir := initDir(t)
	common := []string{"--data", dir}
	stA := filepath.Join(t.TempDir(), "a")
	stB := filepath.Join(t.TempDir(), "b")
	mustKW(t, append([]string{"station", "add", "--site", "line-a", "--product", "demo-implant", "--out", stA}, common...)...)
	mustKW(t, append([]string{"station", "add", "--site", "line-b", "--product", "demo-implant", "--out", stB}, common...)...)
	url := serveInProcess(t, common...)
	enrollAt := func(st, serial string) []string {
		client := []string{"--server", url, "--product", "demo-implant", "--trust", filepath.Join(st, "trust.pem"),
			"--station", filepath.Join(st, "station.pem"), "--station-key", filepath.Join(st, "station.key")}
		tmp := t.TempDir()
		return append([]string{"device", "enroll", "--serial", serial, "--key-out", filepath.Join(tmp, "d.key"), "--out", filepath.Join(tmp, "d.pem")}, client...)
	}
	for i := 1; i <= 3; i++ {
		mustKW(t, enrollAt(stA, fmt.Sprintf("DEMO-0000010%d", i))...)
	}
	mustKW(t, enrollAt(stB, "DEMO-00000201")...)
	var stations []api.Station
	json.Unmarshal([]byte(mustKW(t, append([]string{"station", "list", "--json"}, common...)...)), &stations)
	var idA string
	for _, s := range stations {
		if s.Site == "line-a" {
			idA = s.ID
		}
	}

	// Bulk by registry: the dry run counts what the real run revokes.
	out := mustKW(t, append([]string{"cert", "revoke", "--station", idA, "--reason", "affiliationChanged", "--dry-run"}, common...)...)
	if !strings.Contains(out, "matched 3 certificates: would revoke 3, 0 already revoked") {
		t.Fatalf("dry run by station: %s", out)
	}
	out = mustKW(t, append([]string{"cert", "revoke", "--device", "DEMO-00000101", "--reason", "certificateHold"}, common...)...)
	if !strings.Contains(out, "revoked 1") {
		t.Fatalf("bulk by device: %s", out)
	}
	out = mustKW(t, append([]string{"cert", "revoke", "--site", "line-b", "--reason", "affiliationChanged"}, common...)...)
	if !strings.Contains(out, "matched 1 certificates: revoked 1") {
		t.Fatalf("bulk by site: %s", out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cert", "revoke", "--env", "dev", "--reason", "superseded"}, ExitBadRequest, "only narrow"},
		{[]string{"cert", "revoke", "--station", "nope-00000000", "--reason", "superseded"}, ExitNotFound, "no station"},
		{[]string{"cert", "revoke", "--batch", "B1", "--reason", "superseded"}, ExitNotFound, "no reconciled factory batch"},
		{[]string{"cert", "revoke", "ab", "--device", "DEMO-00000101", "--reason", "superseded"}, ExitUsage, "not both"},
		{[]string{"device", "decommission", "DEMO-00000102"}, ExitUsage, "--attested-by is required"},
		{[]string{"device", "decommission", "DEMO-99999999", "--attested-by", "x"}, ExitNotFound, "no device"},
	} {
		if _, errs, code := kw(t, append(tc.args, common...)...); code != tc.code || !strings.Contains(errs, tc.want) {
			t.Fatalf("%v: exit %d %s; want %d with %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	help := mustKW(t, "cert", "revoke", "--help")
	if !strings.Contains(help, "--batch ID selects") || !strings.Contains(help, "--station") {
		t.Fatalf("cert revoke --help does not explain the registry selectors and --batch: %s", help)
	}

	// Decommission: the held certificate becomes a permanent cessationOfOperation; the key is destroyed.
	var res ra.DecommissionResult
	out = mustKW(t, append([]string{"device", "decommission", "DEMO-00000101", "--attested-by", "A. Tech", "--json"}, common...)...)
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Revoked) != 1 || len(res.KeysDestroyed) != 1 || res.State != "decommissioned" {
		t.Fatalf("decommission: %s %v", out, err)
	}
	if ev := lastEvent(t, dir); ev.Action != "device.decommission" {
		t.Fatalf("last event: %+v", ev)
	}
	if _, errs, code := kw(t, append([]string{"device", "decommission", "DEMO-00000101", "--attested-by", "A. Tech"}, common...)...); code != ExitConflict || !strings.Contains(errs, "nothing changed") {
		t.Fatalf("decommission twice: exit %d %s", code, errs)
	}
	if _, errs, code := kw(t, enrollAt(stA, "DEMO-00000101")...); code != ExitConflict || !strings.Contains(errs, "decommissioned") {
		t.Fatalf("re-enroll a decommissioned serial: exit %d %s", code, errs)
	}
	if _, errs, code := kw(t, append([]string{"device", "allow-reprovision", "DEMO-00000101"}, common...)...); code != ExitConflict {
		t.Fatalf("allow-reprovision of a decommissioned device: exit %d %s", code, errs)
	}
	var keys []struct {
		URI   string `json:"uri"`
		State string `json:"state"`
	}
	json.Unmarshal([]byte(mustKW(t, append([]string{"key", "list", "--json"}, common...)...)), &keys)
	destroyed := false
	for _, k := range keys {
		if k.URI == res.KeysDestroyed[0] {
			destroyed = k.State == "destroyed"
		}
	}
	if !destroyed {
		t.Fatalf("key %s not destroyed in 'key list': %+v", res.KeysDestroyed[0], keys)
	}
	mustKW(t, append([]string{"audit", "verify"}, common...)...)
}
