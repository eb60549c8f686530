package ra_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/kbkdf"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// clearWrap stands in for a transport key in tests of the RA alone: it hands the key back as it is, so the
// test can compare derivations. Real wrapping (RFC 5649 under a transport key) is tested with the CLI and the
// keystores.
func clearWrap(key []byte) ([]byte, string, error) { return bytes.Clone(key), "test (unwrapped)", nil }

func wantKind(t *testing.T, what string, err error, kind ra.Kind, text string) {
	t.Helper()
	if err == nil || ra.KindOf(err) != kind || !strings.Contains(err.Error(), text) {
		t.Fatalf("%s: %v (kind %v); want kind %v mentioning %q", what, err, ra.KindOf(err), kind, text)
	}
}

// TestKDKLifecycle walks a KDK through create, derive, rotate, retire and destroy, and a device through
// derivation, re-derivation and decommissioning, checking each step's records and refusals.
func TestKDKLifecycle(t *testing.T) {
	ctx := context.Background()
	n := openNode(t)
	req := ra.KDKRequest{Environment: "dev", ProductLine: "demo-implant", Purpose: "device-link"}

	// Bad inputs change nothing.
	for name, c := range map[string]struct {
		req  ra.KDKRequest
		kind ra.Kind
		text string
	}{
		"unknown purpose": {ra.KDKRequest{Environment: "dev", ProductLine: "demo-implant", Purpose: "ca-signing"}, ra.KindBadRequest, `unknown key-derivation purpose "ca-signing"`},
		"unknown env":     {ra.KDKRequest{Environment: "qa", ProductLine: "demo-implant", Purpose: "device-link"}, ra.KindBadRequest, `unknown environment "qa"`},
		"unknown product": {ra.KDKRequest{Environment: "dev", ProductLine: "nope", Purpose: "device-link"}, ra.KindBadRequest, `unknown product line "nope"`},
	} {
		_, err := n.RA.CreateKDK(ctx, admin, c.req)
		wantKind(t, name, err, c.kind, c.text)
	}
	if _, err := n.RA.RotateKDK(ctx, admin, req); ra.KindOf(err) != ra.KindNotFound {
		t.Fatalf("rotate before create: %v", err)
	}
	if _, err := n.RA.CreateKDK(ctx, ra.Principal{ID: "aud", Role: ra.RoleAuditor}, req); ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("auditor creates a KDK: %v", err)
	}
	if got, _ := n.RA.ListKDKs(ctx, "", "", ""); len(got) != 0 {
		t.Fatalf("refused requests stored KDKs: %+v", got)
	}

	v1, err := n.RA.CreateKDK(ctx, admin, req)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != 1 || v1.State != store.KeyActive || v1.Algorithm != "hmac-sha256" || v1.Location != "software" {
		t.Fatalf("created %+v", v1)
	}
	if e := lastEvent(t, n.Store); e.Action != audit.ActionKDKCreate || e.Subject != v1.URI || e.Details["version"] != "1" {
		t.Fatalf("create event %+v", e)
	}
	_, err = n.RA.CreateKDK(ctx, admin, req)
	wantKind(t, "second create", err, ra.KindConflict, "kdk rotate")

	registerDevice(t, n, "DEMO-00000001", store.DeviceActive)
	registerDevice(t, n, "DEMO-00000002", store.DeviceActive)
	registerDevice(t, n, "DEMO-00000003", store.DeviceActive)
	derive := func(serial string) (*ra.Derived, error) {
		return n.RA.DeriveDeviceKey(ctx, admin, ra.DeriveRequest{Device: ra.DeviceRef{Environment: "dev", ProductLine: "demo-implant", Serial: serial},
			Purpose: "device-link", Wrap: clearWrap})
	}
	d1, err := derive("DEMO-00000001")
	if err != nil {
		t.Fatal(err)
	}
	if d1.KDKVersion != 1 || !d1.New || len(d1.Wrapped) != 32 || d1.URI != "derived:dev/demo-implant/DEMO-00000001/device-link/v1" {
		t.Fatalf("derived %+v", d1)
	}
	if e := lastEvent(t, n.Store); e.Action != audit.ActionKeyDerive || e.Subject != "DEMO-00000001" || e.Details["kdk_version"] != "1" {
		t.Fatalf("derive event %+v", e)
	}
	if k, err := n.Store.GetKey(ctx, d1.URI); err != nil || k.Location != "device" || k.State != store.KeyActive || k.Algorithm != "secret-256" {
		t.Fatalf("derived key row %+v, %v", k, err)
	}
	// The custodian's derivation for the same inputs (what a factory batch runs) gives the same key.
	same, err := n.CA.DeriveKey(ctx, v1.URI, kbkdf.Device{Purpose: "device-link", Environment: "dev", ProductLine: "demo-implant", Serial: "DEMO-00000001",
		KDKVersion: 1, Length: 32}, false)
	if err != nil || !bytes.Equal(same, d1.Wrapped) {
		t.Fatalf("custodian derivation %x, %v; RA's %x", same, err, d1.Wrapped)
	}

	// Refusals: unknown device, no wrapping, another purpose without a KDK, a device of no registry.
	_, err = derive("DEMO-99999999")
	wantKind(t, "unknown device", err, ra.KindNotFound, "no device")
	_, err = n.RA.DeriveDeviceKey(ctx, admin, ra.DeriveRequest{Device: ra.DeviceRef{Serial: "DEMO-00000001"}, Purpose: "device-storage", Wrap: clearWrap})
	wantKind(t, "no storage KDK", err, ra.KindNotFound, "no device-storage key-derivation key")
	_, err = n.RA.DeriveDeviceKey(ctx, admin, ra.DeriveRequest{Device: ra.DeviceRef{Serial: "DEMO-00000001"}, Purpose: "firmware-signing", Wrap: clearWrap})
	wantKind(t, "bad purpose", err, ra.KindBadRequest, "unknown key-derivation purpose")
	_, err = n.RA.DeriveDeviceKey(ctx, admin, ra.DeriveRequest{Device: ra.DeviceRef{Environment: "staging", ProductLine: "demo-implant", Serial: "DEMO-00000001"},
		Purpose: "device-link", Wrap: clearWrap})
	if err == nil {
		t.Fatal("derived for the device under the wrong environment")
	}
	_, err = n.RA.DeriveDeviceKey(ctx, admin, ra.DeriveRequest{Device: ra.DeviceRef{Serial: "DEMO-00000001"}, Purpose: "device-link"})
	wantKind(t, "no wrap", err, ra.KindBadRequest, "only wrapped")
	if e := lastEvent(t, n.Store); e.Outcome != audit.OutcomeRefused && e.Outcome != "refused" {
		t.Fatalf("refusal not audited: %+v", e)
	}

	// Rotation: the next version derives for new devices; device 1 keeps its version-1 key.
	v2, err := n.RA.RotateKDK(ctx, admin, req)
	if err != nil || v2.Version != 2 || v2.URI == v1.URI {
		t.Fatalf("rotate: %+v, %v", v2, err)
	}
	again, err := derive("DEMO-00000001")
	if err != nil || again.KDKVersion != 1 || again.New || !bytes.Equal(again.Wrapped, d1.Wrapped) {
		t.Fatalf("re-derive after rotation: %+v, %v", again, err)
	}
	d2, err := derive("DEMO-00000002")
	if err != nil || d2.KDKVersion != 2 || bytes.Equal(d2.Wrapped, d1.Wrapped) {
		t.Fatalf("derive under version 2: %+v, %v", d2, err)
	}

	// Retiring the newest version stops new derivations; its devices still re-derive.
	_, err = n.RA.RetireKDK(ctx, admin, "dev", "demo-implant", "device-link", 7)
	wantKind(t, "retire missing version", err, ra.KindNotFound, "no version 7")
	if _, err := n.RA.RetireKDK(ctx, admin, "dev", "demo-implant", "device-link", 2); err != nil {
		t.Fatal(err)
	}
	if e := lastEvent(t, n.Store); e.Action != audit.ActionKDKRetire || e.Subject != v2.URI {
		t.Fatalf("retire event %+v", e)
	}
	_, err = n.RA.RetireKDK(ctx, admin, "dev", "demo-implant", "device-link", 2)
	wantKind(t, "retire twice", err, ra.KindConflict, "deactivated already")
	_, err = derive("DEMO-00000003")
	wantKind(t, "new device under a retired newest version", err, ra.KindConflict, "derives no new device keys")
	if d, err := derive("DEMO-00000002"); err != nil || !bytes.Equal(d.Wrapped, d2.Wrapped) {
		t.Fatalf("re-derive under a retired version: %v", err)
	}
	if _, err := n.CA.DeriveKey(ctx, v2.URI, kbkdf.Device{Purpose: "device-link", Environment: "dev", ProductLine: "demo-implant", Serial: "X",
		KDKVersion: 2, Length: 32}, false); err == nil {
		t.Fatal("custodian derived a new key under a retired KDK")
	}

	// Destroying version 1 erases it: its device's key can no longer be derived.
	if err := n.RA.DestroyKey(ctx, admin, v1.URI, "end of life"); err != nil {
		t.Fatal(err)
	}
	_, err = derive("DEMO-00000001")
	wantKind(t, "re-derive under a destroyed KDK", err, ra.KindConflict, "destroyed")
	if _, err := n.Keys.PRF(ctx, v1.URI, keystore.PurposeDeviceLink, []byte("x")); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("the keystore still derives with a destroyed KDK: %v", err)
	}

	// Decommissioning records the device's symmetric key destroyed, and no key is derived for it again.
	res, err := n.RA.Decommission(ctx, admin, ra.DecommissionRequest{Device: ra.DeviceRef{Serial: "DEMO-00000002"}, AttestedBy: "QA"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range res.KeysDestroyed {
		found = found || u == d2.URI
	}
	if k, err := n.Store.GetKey(ctx, d2.URI); !found || err != nil || k.State != store.KeyDestroyed {
		t.Fatalf("decommission: destroyed %v; key row %+v, %v", res.KeysDestroyed, k, err)
	}
	_, err = derive("DEMO-00000002")
	wantKind(t, "decommissioned device", err, ra.KindConflict, "decommissioned")

	if _, err := n.RA.VerifyAudit(ctx, admin, ra.AuditVerifyOptions{}); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
}
