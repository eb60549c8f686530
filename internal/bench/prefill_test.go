package bench

import (
	"context"
	"crypto/x509"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storetest"
)

// TestIssuePrefill runs bench issue on a store prefilled with 2,000 enrolled devices, on SQLite and on
// PostgreSQL: issuance after the prefill succeeds, the store holds every prefilled certificate, key, device and
// audit event, the certificates are real (they parse and verify under the issuing CA), and 'audit verify'
// passes: the chain, and every row against the state the log recorded.
func TestIssuePrefill(t *testing.T) {
	for _, tc := range []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"sqlite", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return storetest.PostgresDSN(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testIssuePrefill(t, tc.db(t))
		})
	}
}

func testIssuePrefill(t *testing.T, db string) {
	const n, prefill = 64, 2000
	ctx := context.Background()
	dir := t.TempDir()
	res, err := Issue(ctx, IssueOptions{N: n, Prefill: prefill, BatchSize: 16, LimitTime: 100 * time.Millisecond, Dir: dir, DB: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Issued != n || res.Failed != 0 || !res.AuditVerified {
		t.Fatalf("issued %d failed %d verified %v, want %d, 0, true", res.Issued, res.Failed, res.AuditVerified, n)
	}
	if res.Prefill != prefill || res.PrefillSeconds <= 0 || res.PrefillPerSecond <= 0 || res.Settled == "" {
		t.Fatalf("prefill figures %+v", res)
	}
	// A certificate row with its DER, a key row, a device row, an audit event of about a kilobyte and their
	// indexes: a few kilobytes each, whatever the backend.
	if res.StoreBytes <= 0 || res.BytesPerCertificate < 1000 || res.BytesPerCertificate > 20000 ||
		res.BytesPerCertificate != float64(res.StoreBytes)/prefill {
		t.Fatalf("store %d bytes, %.0f per certificate", res.StoreBytes, res.BytesPerCertificate)
	}

	nd, err := node.Open(ctx, node.Options{Dir: filepath.Join(dir, "data"), DB: db, Warn: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	caID := hierarchy.IssuingID(benchEnv, benchProduct)
	certs, err := nd.Store.ListCertificates(ctx, store.CertFilter{IssuerID: caID})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != prefill+n {
		t.Fatalf("%d certificates of %s, want %d", len(certs), caID, prefill+n)
	}
	caRow, err := nd.Store.GetCA(ctx, caID)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caRow.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	serials, spkis, subjects := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, c := range certs {
		serials[c.Serial], spkis[string(c.SPKISHA256)], subjects[c.Subject] = true, true, true
		x, err := x509.ParseCertificate(c.DER)
		if err != nil {
			t.Fatalf("certificate %s: %v", c.Serial, err)
		}
		if err := x.CheckSignatureFrom(caCert); err != nil {
			t.Fatalf("certificate %s: %v", c.Serial, err)
		}
		if x.SerialNumber.Text(16) != c.Serial || x.Subject.String() != c.Subject || len(c.DER) > 400 {
			t.Fatalf("certificate %s (%s, %d bytes) against its row %s %s", x.SerialNumber.Text(16), x.Subject, len(c.DER), c.Serial, c.Subject)
		}
	}
	if len(serials) != prefill+n || len(spkis) != prefill+n || len(subjects) != prefill+n {
		t.Fatalf("%d serials, %d keys, %d subjects among %d certificates: want all distinct", len(serials), len(spkis), len(subjects), len(certs))
	}
	devices, err := nd.Store.ListDevices(ctx, store.DeviceFilter{Environment: benchEnv, ProductLine: benchProduct})
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != prefill {
		t.Fatalf("%d devices, want %d", len(devices), prefill)
	}
	for _, d := range devices {
		if d.State != store.DeviceActive || d.StationID != "prefill-station" || !serials[d.CertSerial] || !strings.HasPrefix(d.Serial, "DEMO-") || d.Serial < deviceSerial(n) {
			t.Fatalf("device %+v", d)
		}
	}
	keys, err := nd.Store.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deviceKeys := 0
	for _, k := range keys {
		if k.Purpose == string(keystore.PurposeDeviceIdentity) {
			deviceKeys++
		}
	}
	if deviceKeys != prefill+n {
		t.Fatalf("%d device keys, want %d", deviceKeys, prefill+n)
	}
	// The whole verification, not only the chain the benchmark checks: tree, and every row of the state tables
	// against the log.
	rep, err := nd.RA.VerifyAudit(ctx, ra.System("test"), ra.AuditVerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != res.AuditEvents || rep.Events < prefill+n {
		t.Fatalf("audit verify: %d events, the benchmark verified %d", rep.Events, res.AuditEvents)
	}
	enrolled := 0
	if err := nd.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
		if e.Action == ra.ActionEnroll {
			enrolled++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if enrolled != prefill {
		t.Fatalf("%d enrollment events, want %d", enrolled, prefill)
	}
}
