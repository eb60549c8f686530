package ra_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storetest"
)

// TestGroupCommitQuota: 80 concurrent enrollments by one station with a quota of 20, with group commit on (the
// longest window, so that groups hold many requests): exactly 20 are enrolled and 60 refused for the quota,
// the station's counter says 20, every refusal is audited, nothing of a refused request is stored, and the
// requests did commit in groups. On SQLite and on PostgreSQL.
func TestGroupCommitQuota(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			db := ""
			if backend == "postgres" {
				db = storetest.PostgresDSN(t)
			}
			ctx := context.Background()
			n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "d"), DB: db, Warn: io.Discard}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { n.Close() })
			if err := n.RA.SetCommitWindow(ra.MaxCommitWindow); err != nil {
				t.Fatal(err)
			}
			admin := ra.Principal{ID: "test", Role: ra.RoleAdmin}
			cred, err := n.RA.AddStation(ctx, admin, ra.StationRequest{Environment: "dev", Site: "site-a", ProductLines: []string{"demo-implant"}, Quota: 20})
			if err != nil {
				t.Fatal(err)
			}
			groups0, ops0 := n.RA.GroupStats()

			const total = 80
			csrs := make([][]byte, total)
			for i := range csrs {
				csrs[i] = csr(t, key(t), fmt.Sprintf("DEMO-%08d", 500+i))
			}
			caller := ra.Caller{Principal: ra.StationPrincipal(cred.Station.ID), Station: cred.Station, Environment: "dev"}
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				ok      []*ra.EnrollResult
				refused []error
			)
			start := make(chan struct{})
			for i := range total {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					res, err := n.RA.Enroll(ctx, caller, ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: csrs[i]})
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						refused = append(refused, err)
						return
					}
					ok = append(ok, res)
				}()
			}
			close(start)
			wg.Wait()

			if len(ok) != 20 || len(refused) != 60 {
				t.Fatalf("%d enrolled and %d refused, want 20 and 60", len(ok), len(refused))
			}
			for _, err := range refused {
				if ra.KindOf(err) != ra.KindForbidden {
					t.Fatalf("refusal %v: kind %v, want forbidden (the quota)", err, ra.KindOf(err))
				}
			}
			st, err := n.Store.GetStation(ctx, cred.Station.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st.Used != 20 {
				t.Fatalf("station used %d, want 20", st.Used)
			}
			// Every enrolled device is stored with its certificate; no refused one is.
			enrolled := map[string]bool{}
			for _, r := range ok {
				if _, err := n.Store.GetCertificate(ctx, r.Cert.Serial); err != nil {
					t.Fatalf("certificate %s of an enrollment that succeeded: %v", r.Cert.Serial, err)
				}
				enrolled[r.Device.Serial] = true
			}
			for i := range total {
				serial := fmt.Sprintf("DEMO-%08d", 500+i)
				_, err := n.Store.GetDevice(ctx, "dev", "demo-implant", serial)
				if enrolled[serial] != (err == nil) || (err != nil && !errors.Is(err, store.ErrNotFound)) {
					t.Fatalf("device %s: enrolled %v, registry lookup %v", serial, enrolled[serial], err)
				}
			}
			var enrolls, refusals int
			if err := n.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
				switch {
				case e.Action == ra.ActionEnroll && e.Outcome == audit.OutcomeSuccess:
					enrolls++
				case e.Action == ra.ActionEnroll:
					refusals++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if enrolls != 20 || refusals != 60 {
				t.Fatalf("audit: %d enrollments and %d refusals, want 20 and 60", enrolls, refusals)
			}
			if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
				t.Fatal(err)
			}
			groups, ops := n.RA.GroupStats()
			groups, ops = groups-groups0, ops-ops0
			if ops < total || groups >= ops {
				t.Fatalf("%d requests committed in %d groups: want at least %d requests, in fewer groups", ops, groups, total)
			}
			t.Logf("%d requests (enrollments and refusals) in %d groups", ops, groups)
		})
	}
}

// TestGroupCommitLoneRequest: requests one after the other commit each in a group of its own, whatever the
// window (the leader waits only for requests on their way); a window above the maximum is refused.
func TestGroupCommitLoneRequest(t *testing.T) {
	n := openNode(t)
	if err := n.RA.SetCommitWindow(ra.MaxCommitWindow); err != nil {
		t.Fatal(err)
	}
	if err := n.RA.SetCommitWindow(3 * time.Millisecond); ra.KindOf(err) != ra.KindBadRequest {
		t.Fatalf("a window above %s: %v, want a bad request", ra.MaxCommitWindow, err)
	}
	ctx := context.Background()
	admin := ra.Principal{ID: "test", Role: ra.RoleAdmin}
	g0, o0 := n.RA.GroupStats()
	for i := range 5 {
		if _, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: csr(t, key(t), fmt.Sprintf("DEMO-%08d", 900+i))}); err != nil {
			t.Fatal(err)
		}
	}
	g, o := n.RA.GroupStats()
	if g-g0 != 5 || o-o0 != 5 {
		t.Fatalf("5 sequential issuances made %d groups of %d requests, want 5 of 1", g-g0, o-o0)
	}
}
