package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/store/storetest"
)

// fleetSize is the number of devices the fleet test provisions: KEYWARD_FLEET_SIZE, default 200 (a fleet
// of 10,000 takes minutes on two cores; run it with KEYWARD_FLEET_SIZE=10000).
func fleetSize(t *testing.T) int {
	if v := os.Getenv("KEYWARD_FLEET_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("KEYWARD_FLEET_SIZE=%q: want a positive integer", v)
		}
		return n
	}
	return 200
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// serveInProcess runs 'keyward serve' until the test ends and waits for it to answer.
func serveInProcess(t *testing.T, args ...string) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb strings.Builder
	go func() {
		done <- Run(ctx, append([]string{"serve", "--listen", addr}, args...), Env{Stdout: &strings.Builder{}, Stderr: &errb, Stdin: strings.NewReader("")})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, errb.String())
		}
	})
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "https://" + addr
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, errb.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not listen on %s", addr)
	return ""
}

// shortProfile makes implant-identity renewable at once: two days of validity backdated by one, and a renewal
// window of the last 80 %, so the window opened hours before issuance.
func shortProfile(t *testing.T, dir string) {
	p := filepath.Join(dir, "profiles", "implant-identity.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("validity: 15y", "validity: 2d", "backdate: 1h", "backdate: 24h", "renewal_window: 0.2", "renewal_window: 0.8").Replace(string(b))
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFleetSQLite(t *testing.T) { testFleet(t, "") }

func TestFleetPostgres(t *testing.T) { testFleet(t, storetest.PostgresDSN(t)) }

// testFleet runs a fleet through its life at manufacturing: every device enrolls, then renews, against
// 'keyward serve'.
func testFleet(t *testing.T, db string) {
	count := fleetSize(t)
	dbArgs := []string{}
	if db != "" {
		dbArgs = []string{"--db", db}
	}
	dir := initDir(t, dbArgs...)
	shortProfile(t, dir)
	common := append([]string{"--data", dir}, dbArgs...)
	st := filepath.Join(t.TempDir(), "station")
	mustKW(t, append([]string{"station", "add", "--site", "line-1", "--product", "demo-implant", "--quota", strconv.Itoa(count + 1), "--out", st}, common...)...)
	if fi, err := os.Stat(filepath.Join(st, "station.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("station.key: %v %v, want mode 0600", fi, err)
	}
	url := serveInProcess(t, common...)
	client := []string{"--server", url, "--product", "demo-implant", "--trust", filepath.Join(st, "trust.pem"),
		"--station", filepath.Join(st, "station.pem"), "--station-key", filepath.Join(st, "station.key")}

	start := time.Now()
	out := mustKW(t, append([]string{"device", "simulate", "--count", strconv.Itoa(count), "--concurrency", "8", "--first", "0", "--renew", "--rekey", "--json"}, client...)...)
	var res SimulateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("simulate output %q: %v", out, err)
	}
	if res.Enrolled != int64(count) || res.Renewed != int64(count) || res.Failed != 0 {
		t.Fatalf("simulate: %+v, want %d enrolled and renewed", res, count)
	}
	t.Logf("%d devices enrolled and renewed (with new keys) in %s (%s store)", count, time.Since(start).Round(time.Millisecond), map[bool]string{true: "postgres", false: "sqlite"}[db != ""])

	var devices []api.Device
	if err := json.Unmarshal([]byte(mustKW(t, append([]string{"device", "list", "--json"}, common...)...)), &devices); err != nil {
		t.Fatal(err)
	}
	if len(devices) != count || devices[0].Site != "line-1" || devices[0].State != "active" {
		t.Fatalf("device list: %d devices, first %+v", len(devices), devices[0])
	}
	// Only the renewed certificates are valid; the first ones are superseded.
	var expiring []certJSON
	if err := json.Unmarshal([]byte(mustKW(t, append([]string{"cert", "expiring", "--within", "3d", "--json"}, common...)...)), &expiring); err != nil {
		t.Fatal(err)
	}
	if len(expiring) != count {
		t.Fatalf("cert expiring --within 3d: %d certificates, want the %d renewed ones", len(expiring), count)
	}
	var superseded []certJSON
	json.Unmarshal([]byte(mustKW(t, append([]string{"cert", "list", "--status", "superseded", "--limit", "0", "--json"}, common...)...)), &superseded)
	if len(superseded) != count {
		t.Fatalf("%d superseded certificates, want %d", len(superseded), count)
	}

	// The quota has one enrollment left; then the station is refused. A suspended station is refused at once.
	key := filepath.Join(t.TempDir(), "d.key")
	pem := filepath.Join(t.TempDir(), "d.pem")
	mustKW(t, append([]string{"device", "enroll", "--serial", fmt.Sprintf("DEMO-%08d", count), "--key-out", key, "--out", pem}, client...)...)
	if _, errs, code := kw(t, append([]string{"device", "enroll", "--serial", "DEMO-99999999", "--key-out", key, "--out", pem}, client...)...); code != ExitDenied || !strings.Contains(errs, "quota") {
		t.Fatalf("enroll over quota: exit %d %s, want %d and the quota named", code, errs, ExitDenied)
	}
	var stations []api.Station
	json.Unmarshal([]byte(mustKW(t, append([]string{"station", "list", "--json"}, common...)...)), &stations)
	if len(stations) != 1 || stations[0].Used != int64(count+1) {
		t.Fatalf("station list: %+v", stations)
	}
	mustKW(t, append([]string{"station", "suspend", stations[0].ID}, common...)...)
	if _, errs, code := kw(t, append([]string{"device", "renew", "--cert", pem, "--key", key, "--out", pem + ".2"}, client[:6]...)...); code != 0 {
		t.Fatalf("a device renews even when its station is suspended: exit %d %s", code, errs)
	}
	if _, errs, code := kw(t, append([]string{"device", "enroll", "--serial", "DEMO-99999998", "--key-out", key, "--out", pem}, client...)...); code != ExitDenied || !strings.Contains(errs, "suspended") {
		t.Fatalf("enroll by a suspended station: exit %d %s", code, errs)
	}
	mustKW(t, append([]string{"audit", "verify"}, common...)...)
}
