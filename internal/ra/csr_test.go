package ra_test

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
)

// tampered returns der with its signature's last octet changed: it parses, but proof of possession fails.
func tampered(der []byte) []byte {
	out := append([]byte(nil), der...)
	out[len(out)-1] ^= 0x01
	return out
}

// TestEnrollRefusalsReadTheCSROnce: the CSR is parsed and verified once per request; a CSR that fails the strict
// parse is still read, without checks, for the device its refusal names, and a renewal CSR naming another
// subject is refused as such before its signature is looked at.
func TestEnrollRefusalsReadTheCSROnce(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()
	cred, err := n.RA.AddStation(ctx, admin, ra.StationRequest{Environment: "dev", Site: "hq", Name: "hq-01", ProductLines: []string{"demo-implant"}})
	if err != nil {
		t.Fatal(err)
	}
	station := ra.Caller{Principal: ra.StationPrincipal(cred.Station.ID), Station: cred.Station, Environment: "dev"}
	_, err = n.RA.Enroll(ctx, station, ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: tampered(csr(t, key(t), "DEMO-00000031"))})
	if ra.KindOf(err) != ra.KindBadRequest || !strings.Contains(err.Error(), "proof of possession failed") {
		t.Fatalf("enrollment with a bad CSR signature: %v", err)
	}
	if ev := lastEvent(t, n.Store); ev.Outcome != audit.OutcomeRefused || ev.Subject != "DEMO-00000031" || !strings.Contains(ev.Details["reason"], "proof of possession failed") {
		t.Fatalf("refusal recorded as %+v", ev)
	}

	res, err := n.RA.Enroll(ctx, station, ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: csr(t, key(t), "DEMO-00000032")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.ApplyDeviceAction(ctx, admin, ra.DeviceRef{Environment: "dev", ProductLine: "demo-implant", Serial: "DEMO-00000032"}, ra.ForceRenew); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(res.Cert.DER)
	if err != nil {
		t.Fatal(err)
	}
	device := ra.Caller{Principal: ra.DevicePrincipal("dev", "demo-implant", "DEMO-00000032"), Cert: cert, Environment: "dev", ProductLine: "demo-implant"}
	_, err = n.RA.Reenroll(ctx, device, ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: tampered(csr(t, key(t), "DEMO-00000033"))})
	if ra.KindOf(err) != ra.KindForbidden || !strings.Contains(err.Error(), "the subject must stay the same") {
		t.Fatalf("renewal for another subject with a bad signature: %v", err)
	}
	_, err = n.RA.Reenroll(ctx, device, ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: tampered(csr(t, key(t), "DEMO-00000032"))})
	if ra.KindOf(err) != ra.KindBadRequest || !strings.Contains(err.Error(), "proof of possession failed") {
		t.Fatalf("renewal with a bad signature: %v", err)
	}
	if ev := lastEvent(t, n.Store); ev.Outcome != audit.OutcomeRefused || ev.Subject != "DEMO-00000032" || ev.Action != ra.ActionReenroll {
		t.Fatalf("refusal recorded as %+v", ev)
	}
}
