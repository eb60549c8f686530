package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/est"
)

// stationClient returns an EST client of a new factory station of dev/demo-implant at site.
func stationClient(t *testing.T, ts *testServer, site string) (*store.Station, *est.Client) {
	t.Helper()
	cred, err := ts.n.RA.AddStation(context.Background(), ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.StationRequest{Environment: "dev", Site: site, ProductLines: []string{"demo-implant"}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cred.CertPEM, cred.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	trust, _ := os.ReadFile(ts.caFile)
	cfg, _ := est.TLSConfig(trust, &pair)
	cl, err := est.NewClient(ts.url, "demo-implant", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cred.Station, cl
}

func operatorToken(t *testing.T, ts *testServer, role string) string {
	t.Helper()
	tok, err := ts.n.RA.CreateToken(context.Background(), ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.TokenRequest{Name: "t-" + role, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestDecommissionOverAPI enrolls a device over EST, renews it with a new key (so it has a superseded but
// unexpired certificate and two keys), decommissions it over the API and checks every record, the CRL, OCSP,
// and that the serial can never be provisioned again.
func TestDecommissionOverAPI(t *testing.T) {
	ts := startWith(t, nil)
	ctx := context.Background()
	_, cl := stationClient(t, ts, "site-a")
	key1 := p256Key(t)
	csr1, _ := est.NewCSR(key1, "DEMO-00000042")
	cert1, err := cl.SimpleEnroll(ctx, csr1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.n.RA.ApplyDeviceAction(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.DeviceRef{Serial: "DEMO-00000042"}, ra.ForceRenew); err != nil {
		t.Fatal(err)
	}
	trust, _ := os.ReadFile(ts.caFile)
	dcfg, _ := est.TLSConfig(trust, &tls.Certificate{Certificate: [][]byte{cert1.Raw}, PrivateKey: key1})
	dc, _ := est.NewClient(ts.url, "demo-implant", dcfg)
	defer dc.Close()
	key2 := p256Key(t)
	csr2, _ := est.NewCSR(key2, "DEMO-00000042")
	cert2, err := dc.SimpleReenroll(ctx, csr2, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := cl.SimpleEnroll(ctx, mustCSR(t, "DEMO-00000043"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The state-only path is closed: it would leave certificates valid and keys live.
	if _, err := ts.n.RA.ApplyDeviceAction(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.DeviceRef{Serial: "DEMO-00000042"}, ra.Decommission); !errors.Is(err, ra.ErrDecommissionNeedsRevocation) {
		t.Fatalf("ApplyDeviceAction(Decommission): %v", err)
	}

	auditor, officer := operatorToken(t, ts, ra.RoleAuditor), operatorToken(t, ts, ra.RoleCAOfficer)
	path := "/api/v1/devices/dev/demo-implant/DEMO-00000042/decommission"
	const attester = "J. Doe, field service, destruction record FS-2026-0042"
	for _, tc := range []struct {
		path, tok, body string
		code            int
		want            string
	}{
		{path, auditor, `{"attested_by":"x"}`, 403, "may not"},
		{path, officer, `{}`, 400, "attests"},
		{path, officer, `{"attested_by":"  "}`, 400, "attests"},
		{path, officer, `{"attested_by":"a\nb"}`, 400, "control characters"},
		{path, officer, `{"attested_by":"x","extra":1}`, 400, "not valid JSON"},
		{"/api/v1/devices/dev/demo-implant/DEMO-99999999/decommission", officer, `{"attested_by":"x"}`, 404, "no device"},
		{"/api/v1/devices/dev/demo-pump/DEMO-00000042/decommission", officer, `{"attested_by":"x"}`, 404, "no device"},
	} {
		if code, resp := ts.do(t, "POST", tc.path, tc.tok, []byte(tc.body)); code != tc.code || !strings.Contains(string(resp), tc.want) {
			t.Fatalf("POST %s %s: %d %s; want %d with %q", tc.path, tc.body, code, resp, tc.code, tc.want)
		}
	}
	before := len(ts.events(t))
	code, body := ts.do(t, "POST", path, officer, []byte(`{"attested_by":"`+attester+`"}`))
	if code != http.StatusOK {
		t.Fatalf("decommission: %d %s", code, body)
	}
	var res ra.DecommissionResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	s1, s2 := ra.SerialString(cert1), ra.SerialString(cert2)
	if res.State != store.DeviceDecommissioned || len(res.Revoked) != 2 || len(res.KeysDestroyed) != 2 || res.AttestedBy != attester {
		t.Fatalf("result: %+v", res)
	}

	// Both certificates revoked with cessationOfOperation; the other device's untouched.
	for _, s := range []string{s1, s2} {
		c, _ := ts.n.Store.GetCertificate(ctx, s)
		if c.Status != store.CertStatusRevoked || c.RevocationReason != store.ReasonCessationOfOperation {
			t.Fatalf("certificate %s after decommission: %s reason %d", s, c.Status, c.RevocationReason)
		}
	}
	if c, _ := ts.n.Store.GetCertificate(ctx, ra.SerialString(other)); c.Status != store.CertStatusValid {
		t.Fatalf("another device's certificate became %s", c.Status)
	}
	if d, _ := ts.n.Store.GetDevice(ctx, "dev", "demo-implant", "DEMO-00000042"); d.State != store.DeviceDecommissioned || d.ReprovisionAllowed || d.ForceRenew {
		t.Fatalf("device after decommission: %+v", d)
	}
	// Both device keys destroyed in the glossary, each with its attester in the audit trail.
	for _, c := range []*x509.Certificate{cert1, cert2} {
		row, _ := ts.n.Store.GetCertificate(ctx, ra.SerialString(c))
		k, err := ts.n.Store.GetKey(ctx, ra.DeviceKeyURI(row.SPKISHA256))
		if err != nil || k.State != store.KeyDestroyed || k.DestroyedAt == nil || k.DestroyedAt.Sub(res.At).Abs() > time.Second {
			t.Fatalf("key of %s: %+v %v", row.Serial, k, err)
		}
	}
	evs := ts.events(t)[before:]
	var got []string
	for _, e := range evs {
		got = append(got, e.Action)
		switch e.Action {
		case "cert.revoke":
			if e.Details["reason"] != "cessationOfOperation" || e.Details["device"] != "DEMO-00000042" {
				t.Errorf("revocation event: %+v", e.Details)
			}
		case "key.destroy", "device.decommission":
			if e.Details["attested_by"] != attester || e.Outcome != audit.OutcomeSuccess {
				t.Errorf("%s event: %+v", e.Action, e.Details)
			}
		}
	}
	if want := "cert.revoke cert.revoke key.destroy key.destroy device.decommission"; strings.Join(got, " ") != want {
		t.Fatalf("audited %q, want %q", strings.Join(got, " "), want)
	}

	// OCSP answers revoked with the reason; the next complete CRL lists both certificates.
	svc := revocation.New(ts.n.RA, ts.n.CA, ts.n.Store)
	resp := revocation.NewResponder(svc, revocation.OCSPConfig{})
	if err := resp.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	issCA, _ := ts.n.Store.GetCA(ctx, "dev/demo-implant")
	issuer, _ := x509.ParseCertificate(issCA.CertDER)
	reqDER, err := ocsp.CreateRequest(cert2, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	or, err := ocsp.ParseResponse(resp.Respond(ctx, reqDER), nil)
	if err != nil || or.Status != ocsp.Revoked || or.RevocationReason != ocsp.CessationOfOperation {
		t.Fatalf("OCSP for the decommissioned device: %+v %v", or, err)
	}
	if _, err := revocation.NewPublisher(svc, revocation.CRLConfig{}).PublishOnce(ctx); err != nil {
		t.Fatal(err)
	}
	crlRow, err := ts.n.Store.LatestCRL(ctx, "dev/demo-implant", false)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(crlRow.DER)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]int{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[e.SerialNumber.Text(16)] = e.ReasonCode
	}
	if listed[s1] != store.ReasonCessationOfOperation || listed[s2] != store.ReasonCessationOfOperation {
		t.Fatalf("CRL entries %v, want %s and %s with reason 5", listed, s1, s2)
	}

	// Final: a second decommission, re-provisioning, a new enrollment and a renewal are all refused.
	if code, resp := ts.do(t, "POST", path, officer, []byte(`{"attested_by":"x"}`)); code != http.StatusConflict || !strings.Contains(string(resp), "nothing changed") {
		t.Fatalf("second decommission: %d %s", code, resp)
	}
	var re *ra.Error
	if _, err := ts.n.RA.ApplyDeviceAction(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.DeviceRef{Serial: "DEMO-00000042"}, ra.AllowReprovision); !errors.As(err, &re) || re.Kind != ra.KindConflict {
		t.Fatalf("allow-reprovision of a decommissioned device: %v", err)
	}
	var ee *est.Error
	if _, err := cl.SimpleEnroll(ctx, mustCSR(t, "DEMO-00000042"), nil); !errors.As(err, &ee) || ee.StatusCode != http.StatusConflict || !strings.Contains(ee.Reason, "decommissioned") {
		t.Fatalf("re-enrollment of a decommissioned serial: %v", err)
	}
	d2cfg, _ := est.TLSConfig(trust, &tls.Certificate{Certificate: [][]byte{cert2.Raw}, PrivateKey: key2})
	d2, _ := est.NewClient(ts.url, "demo-implant", d2cfg)
	defer d2.Close()
	if _, err := d2.SimpleReenroll(ctx, csr2, nil); !errors.As(err, &ee) || ee.StatusCode != http.StatusForbidden {
		t.Fatalf("renewal by a decommissioned device: %v", err)
	}
	if n, err := store.VerifyAudit(ctx, ts.n.Store); err != nil {
		t.Fatalf("audit chain after %d events: %v", n, err)
	}
}

func mustCSR(t *testing.T, cn string) []byte {
	t.Helper()
	der, err := est.NewCSR(p256Key(t), cn)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestBulkRevocationByRegistry revokes by device, station and site through the bulk route: each dry run
// counts exactly what the real run then revokes.
func TestBulkRevocationByRegistry(t *testing.T) {
	ts := startWith(t, nil)
	ctx := context.Background()
	stA, clA := stationClient(t, ts, "site-a")
	_, clA2 := stationClient(t, ts, "site-a")
	_, clB := stationClient(t, ts, "site-b")
	enrollN := func(cl *est.Client, first, n int) {
		for i := first; i < first+n; i++ {
			if _, err := cl.SimpleEnroll(ctx, mustCSR(t, fmt.Sprintf("DEMO-%08d", i)), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	enrollN(clA, 100, 3)  // station A, site-a
	enrollN(clA2, 200, 1) // another station at site-a
	enrollN(clB, 300, 2)  // site-b
	officer := operatorToken(t, ts, ra.RoleCAOfficer)
	auditor := operatorToken(t, ts, ra.RoleAuditor)
	bulk := func(body string) (int, string) {
		code, resp := ts.do(t, "POST", "/api/v1/revocations", officer, []byte(body))
		return code, string(resp)
	}
	if code, _ := ts.do(t, "POST", "/api/v1/revocations", auditor, []byte(`{"station":"`+stA.ID+`","reason":"keyCompromise"}`)); code != http.StatusForbidden {
		t.Fatalf("auditor bulk: %d", code)
	}
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"station":"site-z-00000000","reason":"keyCompromise"}`, 404, "no station"},
		{`{"site":"site-z","reason":"keyCompromise"}`, 404, "no factory station at site"},
		{`{"device":"DEMO-99999999","reason":"keyCompromise"}`, 404, "no device"},
		{`{"environment":"dev","reason":"keyCompromise"}`, 400, "only narrow"},
		{`{"station":"` + stA.ID + `","site":"site-b","reason":"keyCompromise"}`, 404, "not site-b"},
		{`{"device":"DEMO-00000100","product_line":"demo-pump","reason":"keyCompromise"}`, 404, "no device"},
		{`{"batch":"B1","reason":"keyCompromise"}`, 404, "no reconciled factory batch"},
	} {
		if code, resp := bulk(tc.body); code != tc.code || !strings.Contains(resp, tc.want) {
			t.Fatalf("%s: %d %s; want %d with %q", tc.body, code, resp, tc.code, tc.want)
		}
	}
	// Each selector: the dry run's count is what the real run revokes.
	for _, tc := range []struct {
		sel  string
		want int64
	}{
		{`"device":"DEMO-00000101"`, 1},
		{`"station":"` + stA.ID + `"`, 2}, // three enrolled, one revoked above
		{`"site":"site-a"`, 1},            // station A's are revoked; the other site-a station's one remains
		{`"site":"site-b","environment":"dev","product_line":"demo-implant"`, 2},
	} {
		var dry, real ra.BulkResult
		code, resp := bulk(`{` + tc.sel + `,"reason":"keyCompromise","dry_run":true}`)
		if code != 200 || json.Unmarshal([]byte(resp), &dry) != nil {
			t.Fatalf("dry run %s: %d %s", tc.sel, code, resp)
		}
		code, resp = bulk(`{` + tc.sel + `,"reason":"keyCompromise"}`)
		if code != 200 || json.Unmarshal([]byte(resp), &real) != nil {
			t.Fatalf("bulk %s: %d %s", tc.sel, code, resp)
		}
		if dry.Revoked != tc.want || real.Revoked != dry.Revoked || real.Matched != dry.Matched {
			t.Fatalf("%s: dry run %+v, real %+v; want %d revoked by both", tc.sel, dry, real, tc.want)
		}
	}
	certs, _ := ts.n.Store.ListCertificates(ctx, store.CertFilter{Profile: "implant-identity"})
	for _, c := range certs {
		if c.Status != store.CertStatusRevoked || c.RevocationReason != store.ReasonKeyCompromise {
			t.Fatalf("certificate %s (%s) is %s", c.Serial, c.Subject, c.Status)
		}
	}
	// Revoking a device twice by selector changes nothing.
	if code, resp := bulk(`{"device":"DEMO-00000101","reason":"keyCompromise"}`); code != 200 || !strings.Contains(resp, `"revoked": 0`) || !strings.Contains(resp, `"already_revoked": 1`) {
		t.Fatalf("second bulk by device: %d %s", code, resp)
	}
	var station int
	for _, e := range ts.events(t) {
		if e.Action == "cert.revoke" && e.Details["bulk_query"] == "station="+stA.ID {
			station++
		}
	}
	if station != 2 {
		t.Fatalf("%d revocation events carry the station query, want 2", station)
	}
	if n, err := store.VerifyAudit(ctx, ts.n.Store); err != nil {
		t.Fatalf("audit chain after %d events: %v", n, err)
	}
}
