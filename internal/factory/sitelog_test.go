package factory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// siteFixture is headquarters with a dev site CA and a packaged site data directory opened as a node.
type siteFixture struct {
	hq, site   *node.Node
	hqF, siteF *Factory
	station    *store.Station
	enroller   *ra.RA
}

func newSiteFixture(t *testing.T, siteName string, quota int64) *siteFixture {
	t.Helper()
	ctx := context.Background()
	hq, hqF := newNode(t)
	return packageSite(t, ctx, hq, hqF, siteName, quota)
}

func packageSite(t *testing.T, ctx context.Context, hq *node.Node, hqF *Factory, siteName string, quota int64) *siteFixture {
	t.Helper()
	siteCA(t, hqF, hq.Soft, siteName, quota)
	if _, err := hq.RA.AddStation(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.StationRequest{Environment: "dev", Site: siteName, Name: siteName + "-01", ProductLines: []string{"demo-implant"}}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), siteName)
	if _, err := hq.PackageSite(ctx, node.SitePackageRequest{SiteCA: ra.SiteCAID("dev", "demo-implant", siteName), Out: dir, Principal: admin}); err != nil {
		t.Fatal(err)
	}
	site, err := node.Open(ctx, node.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { site.Close() })
	st, err := site.Store.GetStation(ctx, siteName+"-01")
	if err != nil {
		t.Fatal(err)
	}
	return &siteFixture{hq: hq, site: site, hqF: hqF, station: st, enroller: site.RA,
		siteF: &Factory{RA: site.RA, CA: site.CA, Principal: ra.Principal{ID: "site-operator", Role: ra.RoleAdmin}}}
}

// enroll enrolls device cn at the site through the station, as 'keyward factory serve' does.
func (s *siteFixture) enroll(t *testing.T, cn string) error {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.site.Store.GetStation(context.Background(), s.station.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.enroller.Enroll(context.Background(), ra.Caller{Principal: ra.StationPrincipal(st.ID), Station: st, Environment: "dev"},
		ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: csr})
	return err
}

func (s *siteFixture) export(t *testing.T, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	if _, err := s.siteF.ExportSiteLog(context.Background(), "dev", "demo-implant", s.site.Site.Site, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func auditCount(t *testing.T, s store.Store) int {
	t.Helper()
	n := 0
	if err := s.WalkAudit(context.Background(), 0, func(*audit.Event) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSiteLogExportReconcile(t *testing.T) {
	ctx := context.Background()
	s := newSiteFixture(t, "site-a", 6)
	for i := 1; i <= 3; i++ {
		if err := s.enroll(t, fmt.Sprintf("DEMO-3000000%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// What the site CA may not issue: a serial outside the rule, past the quota (below).
	if err := s.enroll(t, "DEMO-1"); ra.KindOf(err) != ra.KindBadRequest && ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("serial outside the rule: %v", err)
	}
	log1 := s.export(t, "log1.kwx")
	for i := 4; i <= 6; i++ {
		if err := s.enroll(t, fmt.Sprintf("DEMO-3000000%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.enroll(t, "DEMO-30000007"); ra.KindOf(err) != ra.KindForbidden || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("past the quota: %v", err)
	}
	log2 := s.export(t, "log2.kwx")

	// A second site, to have a foreign export.
	other := packageSite(t, ctx, s.hq, s.hqF, "site-b", 5)
	if err := other.enroll(t, "DEMO-40000001"); err != nil {
		t.Fatal(err)
	}
	foreign := other.export(t, "foreign.kwx")

	data2, err := os.ReadFile(log2)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	altered := append([]byte(nil), data2...)
	i := strings.Index(string(altered), "DEMO-30000005")
	altered[i+len("DEMO-3000000")] = '9'
	refusals := []struct {
		name string
		file string
		site string
		want error
	}{
		{"altered record", write("altered.kwx", altered), "site-a", ErrTampered},
		{"truncated", write("cut.kwx", data2[:len(data2)-40]), "site-a", ErrTampered},
		{"another site's log under --site site-a", foreign, "site-a", ErrForeign},
	}
	for _, tc := range refusals {
		before := auditCount(t, s.hq.Store)
		_, err := s.hqF.Reconcile(ctx, ReconcileRequest{Files: []string{tc.file}, Env: "dev", Site: tc.site})
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if after := auditCount(t, s.hq.Store); after != before {
			t.Fatalf("%s: refused import wrote %d audit events", tc.name, after-before)
		}
	}

	res, err := s.hqF.Reconcile(ctx, ReconcileRequest{Files: []string{log1}, Env: "dev", Site: "site-a"})
	if err != nil || len(res) != 1 || res[0].Devices != 3 || res[0].Certificates != 3 {
		t.Fatalf("reconcile log1: %+v, %v", res, err)
	}
	if _, err := s.hqF.Reconcile(ctx, ReconcileRequest{Files: []string{log1}}); !errors.Is(err, ErrReplay) {
		t.Fatalf("log1 again: %v, want ErrReplay", err)
	}
	if _, err := s.hqF.Reconcile(ctx, ReconcileRequest{Files: []string{log2}, Final: true, AttestedBy: "x"}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("--final on a site log: %v, want ErrBadRequest", err)
	}
	res, err = s.hqF.Reconcile(ctx, ReconcileRequest{Files: []string{log2}})
	if err != nil || res[0].Devices != 3 || res[0].Seq != 2 {
		t.Fatalf("reconcile log2: %+v, %v", res, err)
	}
	if _, err := s.hqF.Reconcile(ctx, ReconcileRequest{Files: []string{log1}}); !errors.Is(err, ErrReplay) {
		t.Fatalf("log1 after log2: %v, want ErrReplay", err)
	}
	// Headquarters' registry holds exactly the six devices, with their station and site, certified by the
	// site CA.
	devs, err := s.hq.Store.ListDevices(ctx, store.DeviceFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 6 {
		t.Fatalf("%d devices at headquarters, want 6", len(devs))
	}
	for _, d := range devs {
		c, err := s.hq.Store.GetCertificate(ctx, d.CertSerial)
		if err != nil || c.IssuerID != "dev/demo-implant/site-a" || d.StationID != "site-a-01" || d.Site != "site-a" {
			t.Fatalf("device %+v: certificate %+v, %v", d, c, err)
		}
	}
	if _, err := store.VerifyAudit(ctx, s.hq.Store); err != nil {
		t.Fatal(err)
	}
	// The site's own audit chain starts with the package event and holds every enrollment.
	var first *audit.Event
	if err := s.site.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
		if first == nil {
			first = e
		}
		return nil
	}); err != nil || first == nil || first.Action != "factory.site.init" {
		t.Fatalf("site audit chain starts with %+v, %v", first, err)
	}
}

// TestSiteServeWindowClosed: after the site CA's issuing window, the site refuses to enroll, and stores nothing
// but the refusal's audit event.
func TestSiteServeWindowClosed(t *testing.T) {
	ctx := context.Background()
	s := newSiteFixture(t, "site-a", 10)
	later, err := node.Open(ctx, node.Options{Dir: s.site.Dir, Now: func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	s.site.Close()
	t.Cleanup(func() { later.Close() })
	s.site, s.enroller = later, later.RA
	before := auditCount(t, later.Store)
	if err := s.enroll(t, "DEMO-50000001"); ra.KindOf(err) != ra.KindForbidden || !strings.Contains(err.Error(), "issuing window ended") {
		t.Fatalf("enrollment after the window: %v", err)
	}
	if n, err := later.Store.FactorySiteLogLength(ctx, "dev/demo-implant/site-a"); err != nil || n != 0 {
		t.Fatalf("site log after a refusal: %d, %v", n, err)
	}
	if after := auditCount(t, later.Store); after != before+1 {
		t.Fatalf("a refusal wrote %d audit events, want 1", after-before)
	}
}

// TestReconcileHardwareSerialAcrossBatches: hardware that received a credential from one batch is refused when
// another batch's export says it received one too; the registry records the hardware serial with the device.
func TestReconcileHardwareSerialAcrossBatches(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", 1000)
	var exports []string
	for i, first := range []string{"DEMO-00000001", "DEMO-00000101"} {
		out := filepath.Join(t.TempDir(), fmt.Sprintf("b%d.kwb", i))
		req := softBatch(out, 8)
		req.FirstSerial = first
		if _, err := f.Batch(ctx, req); err != nil {
			t.Fatal(err)
		}
		for _, hw := range []string{fmt.Sprintf("HW-%d", i), "HW-SHARED"} {
			if _, err := Inject(out, hw, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		x := filepath.Join(t.TempDir(), fmt.Sprintf("b%d.kwx", i))
		if _, err := f.Export(ctx, ExportRequest{Batch: out, Out: x}); err != nil {
			t.Fatal(err)
		}
		exports = append(exports, x)
	}
	if _, err := f.Reconcile(ctx, ReconcileRequest{Files: exports[:1]}); err != nil {
		t.Fatal(err)
	}
	devs, err := n.Store.ListDevices(ctx, store.DeviceFilter{HardwareSerial: "HW-SHARED"})
	if err != nil || len(devs) != 1 || devs[0].Serial != "DEMO-00000002" {
		t.Fatalf("device on HW-SHARED: %+v, %v", devs, err)
	}
	before := auditCount(t, n.Store)
	_, err = f.Reconcile(ctx, ReconcileRequest{Files: exports[1:]})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `hardware "HW-SHARED" received a credential already`) || !strings.Contains(err.Error(), "DEMO-00000002") {
		t.Fatalf("second batch on the same hardware: %v", err)
	}
	if after := auditCount(t, n.Store); after != before {
		t.Fatalf("the refused import wrote %d audit events", after-before)
	}
	if all, _ := n.Store.ListDevices(ctx, store.DeviceFilter{}); len(all) != 2 {
		t.Fatalf("%d devices after the refusal, want the first batch's 2", len(all))
	}
}
