package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// TestAPIIssuanceConsultsRegistry: a serial the registry retired with decommissioning, or holds suspended, is
// refused by POST /api/v1/certificates with its reason, the refusal is audited, and nothing is stored.
func TestAPIIssuanceConsultsRegistry(t *testing.T) {
	ts := start(t)
	ctx := context.Background()
	admin := ra.Principal{ID: "test", Role: ra.RoleAdmin}
	cred, err := ts.n.RA.AddStation(ctx, admin, ra.StationRequest{Environment: "dev", Site: "line-r", ProductLines: []string{"demo-implant"}})
	if err != nil {
		t.Fatal(err)
	}
	caller := ra.Caller{Principal: ra.StationPrincipal(cred.Station.ID), Station: cred.Station, Environment: "dev"}
	for _, sn := range []string{"DEMO-00000501", "DEMO-00000502"} {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: sn}}, k)
		if _, err := ts.n.RA.Enroll(ctx, caller, ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: der}); err != nil {
			t.Fatal(err)
		}
	}
	status, body := ts.do(t, "POST", "/api/v1/devices/dev/demo-implant/DEMO-00000501/decommission", ts.admin, []byte(`{"attested_by":"QA destruction record 7"}`))
	if status != 200 {
		t.Fatalf("decommission: %d %s", status, body)
	}
	if _, err := ts.n.RA.ApplyDeviceAction(ctx, admin, ra.DeviceRef{Serial: "DEMO-00000502"}, ra.Suspend); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		serial string
		status int
		reason string
	}{
		{"DEMO-00000501", 409, "decommissioned"},
		{"DEMO-00000502", 403, "suspended"},
	} {
		before, _ := ts.n.Store.ListCertificates(ctx, store.CertFilter{})
		head, _, _ := ts.n.Store.AuditHead(ctx)
		req, _ := json.Marshal(IssueRequest{Profile: "implant-identity", CSR: csrPEM(t, tc.serial)})
		status, body := ts.do(t, "POST", "/api/v1/certificates", ts.admin, req)
		if status != tc.status || !strings.Contains(string(body), tc.reason) {
			t.Fatalf("issue for %s: %d %s, want %d naming %q", tc.serial, status, body, tc.status, tc.reason)
		}
		after, _ := ts.n.Store.ListCertificates(ctx, store.CertFilter{})
		if len(after) != len(before) {
			t.Fatalf("issue for %s stored a certificate: %d before, %d after", tc.serial, len(before), len(after))
		}
		var events []*audit.Event
		_ = ts.n.Store.WalkAudit(ctx, head, func(e *audit.Event) error { events = append(events, e); return nil })
		if len(events) != 1 || events[0].Outcome != audit.OutcomeRefused || events[0].Action != audit.ActionCertIssue || !strings.Contains(events[0].Details["reason"], tc.reason) {
			t.Fatalf("issue for %s: audit after the refusal %+v, want one refused cert.issue naming %q", tc.serial, events, tc.reason)
		}
	}
	// A serial the registry does not hold is issued as before.
	req, _ := json.Marshal(IssueRequest{Profile: "implant-identity", CSR: csrPEM(t, "DEMO-00000503")})
	if status, body := ts.do(t, "POST", "/api/v1/certificates", ts.admin, req); status != 201 {
		t.Fatalf("issue for an unregistered serial: %d %s", status, body)
	}
}
