package ra_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/firmware/verify"
)

var (
	fwAdmin   = ra.Principal{ID: "cli:test", Role: ra.RoleAdmin}
	fwAuditor = ra.Principal{ID: "operator:aud", Role: ra.RoleAuditor}
)

func releaseSigner(name string) ra.Principal {
	return ra.Principal{ID: "operator:" + name, Role: ra.RoleReleaseSigner}
}

func newRelease(t *testing.T, n *node.Node, version string) (*store.FirmwareRelease, []byte) {
	t.Helper()
	image := make([]byte, 4096)
	rand.Read(image)
	rel, err := n.RA.CreateRelease(context.Background(), fwAdmin, ra.FirmwareReleaseRequest{Environment: "dev", ProductLine: "demo-implant", Version: version, Image: bytes.NewReader(image)})
	if err != nil {
		t.Fatal(err)
	}
	return rel, image
}

// wantRefusal fails the test unless err is sentinel (errors.Is) of kind.
func wantRefusal(t *testing.T, what string, err, sentinel error, kind ra.Kind) {
	t.Helper()
	if !errors.Is(err, sentinel) || ra.KindOf(err) != kind {
		t.Fatalf("%s: %v (kind %v), want %v of kind %v", what, err, ra.KindOf(err), sentinel, kind)
	}
}

func auditEvents(t *testing.T, n *node.Node, action string) []*audit.Event {
	t.Helper()
	var evs []*audit.Event
	err := n.Store.WalkAudit(context.Background(), 0, func(e *audit.Event) error {
		if e.Action == action {
			evs = append(evs, e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestFirmwareReleaseDecisions walks a release from draft to signed manifest through the RA: who may create,
// approve and sign, the refusals each face maps by kind, and the audit trail of both.
func TestFirmwareReleaseDecisions(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()

	_, err := n.RA.CreateRelease(ctx, fwAuditor, ra.FirmwareReleaseRequest{Environment: "dev", ProductLine: "demo-implant", Version: "1.0.0", Image: strings.NewReader("x")})
	if ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("auditor creating a release: %v", err)
	}
	_, err = n.RA.CreateRelease(ctx, fwAdmin, ra.FirmwareReleaseRequest{Environment: "dev", ProductLine: "demo-implant", Version: "1.0", Image: strings.NewReader("x")})
	if ra.KindOf(err) != ra.KindBadRequest || ra.FieldOf(err) != "version" || strings.Contains(err.Error(), "--") {
		t.Fatalf("version 1.0: %v (field %q)", err, ra.FieldOf(err))
	}
	_, err = n.RA.CreateRelease(ctx, fwAdmin, ra.FirmwareReleaseRequest{Environment: "dev", ProductLine: "demo-implant", Version: "1.0.0", Image: strings.NewReader("")})
	if ra.KindOf(err) != ra.KindBadRequest || ra.FieldOf(err) != "image" {
		t.Fatalf("empty image: %v", err)
	}
	_, err = n.RA.CreateRelease(ctx, fwAdmin, ra.FirmwareReleaseRequest{Environment: "dev", ProductLine: "no-such-line", Version: "1.0.0", Image: strings.NewReader("x")})
	wantRefusal(t, "unknown product line", err, ra.ErrNoFirmwarePolicy, ra.KindBadRequest)
	if ra.FieldOf(err) != "product_line" {
		t.Errorf("unknown product line: field %q", ra.FieldOf(err))
	}
	if rs, _ := n.Store.ListFirmwareReleases(ctx, "", ""); len(rs) != 0 {
		t.Fatalf("%d releases stored after refusals", len(rs))
	}

	rel, image := newRelease(t, n, "1.0.0")
	if rel.CreatedBy != fwAdmin.ID || rel.Sequence != 1 || rel.Threshold != 2 {
		t.Fatalf("release %+v", rel)
	}
	_, err = n.RA.SignRelease(ctx, releaseSigner("signer-a"), rel.ID)
	wantRefusal(t, "sign before approvals", err, ra.ErrThresholdNotMet, ra.KindConflict)
	if !strings.Contains(err.Error(), "0 of the 2 approvals") || strings.Contains(err.Error(), "--") {
		t.Errorf("sign before approvals says %q", err)
	}

	if _, as, err := n.RA.ApproveRelease(ctx, releaseSigner("signer-a"), rel.ID, ""); err != nil || len(as) != 1 || as[0].Signer != "signer-a" {
		t.Fatalf("approve as signer-a: %v %v", as, err)
	}
	_, _, err = n.RA.ApproveRelease(ctx, releaseSigner("signer-a"), rel.ID, "")
	wantRefusal(t, "second approval by signer-a", err, ra.ErrAlreadyApproved, ra.KindConflict)
	_, _, err = n.RA.ApproveRelease(ctx, releaseSigner("signer-a"), rel.ID, "signer-b")
	wantRefusal(t, "signer-a approving as signer-b", err, ra.ErrNotReleaseSigner, ra.KindForbidden)
	_, _, err = n.RA.ApproveRelease(ctx, releaseSigner("mallory"), rel.ID, "")
	wantRefusal(t, "approval by a non-signer", err, ra.ErrNotReleaseSigner, ra.KindForbidden)
	if _, _, err = n.RA.ApproveRelease(ctx, fwAuditor, rel.ID, "signer-b"); ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("auditor approving: %v", err)
	}
	// An administrator (the local CLI's own principal) approves in nobody's name: an approval is proven by the
	// signer's own token.
	_, _, err = n.RA.ApproveRelease(ctx, fwAdmin, rel.ID, "")
	wantRefusal(t, "administrator approving", err, ra.ErrNotReleaseSigner, ra.KindForbidden)
	_, _, err = n.RA.ApproveRelease(ctx, fwAdmin, rel.ID, "signer-b")
	wantRefusal(t, "administrator approving as signer-b", err, ra.ErrNotReleaseSigner, ra.KindForbidden)
	if ra.FieldOf(err) != "token_file" {
		t.Errorf("administrator approving as signer-b: field %q, want token_file", ra.FieldOf(err))
	}
	got, as, err := n.RA.ApproveRelease(ctx, releaseSigner("signer-b"), rel.ID, "signer-b")
	if err != nil || len(as) != 2 || got.Status != store.FirmwareApproved {
		t.Fatalf("approve as signer-b: %+v %v %v", got, as, err)
	}

	if _, err := n.RA.SignRelease(ctx, fwAuditor, rel.ID); ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("auditor signing: %v", err)
	}
	m, err := n.RA.SignRelease(ctx, releaseSigner("signer-a"), rel.ID)
	if err != nil {
		t.Fatal(err)
	}
	trust, updates, err := n.RA.FirmwareTrust(ctx, "dev")
	if err != nil || len(updates) != 0 {
		t.Fatalf("dev trust: %v, %d updates", err, len(updates))
	}
	if _, err := verify.Verify(m, bytes.NewReader(image), trust, verify.Options{DeviceClass: "demo-implant"}); err != nil {
		t.Fatalf("signed manifest does not verify against the dev trust: %v", err)
	}
	again, err := n.RA.SignRelease(ctx, fwAdmin, rel.ID)
	if err != nil || !bytes.Equal(again, m) {
		t.Fatalf("signing a signed release: %v, same manifest %v", err, bytes.Equal(again, m))
	}
	_, _, err = n.RA.ApproveRelease(ctx, releaseSigner("signer-c"), rel.ID, "")
	wantRefusal(t, "approval of a signed release", err, ra.ErrReleaseSigned, ra.KindConflict)

	approvals := map[string]string{} // actor/outcome -> signer
	for _, e := range auditEvents(t, n, audit.ActionFirmwareApprove) {
		approvals[e.Actor+"/"+e.Outcome] += e.Details["signer"] + " "
	}
	for key, want := range map[string]string{
		"operator:signer-a/success": "signer-a ",
		"operator:signer-b/success": "signer-b ",
		"cli:test/refused":          " signer-b ",
		"operator:mallory/refused":  "mallory ",
		"operator:signer-c/refused": "signer-c ",
	} {
		if approvals[key] != want {
			t.Errorf("approval events %s: signers %q, want %q (all: %v)", key, approvals[key], want, approvals)
		}
	}
	signs := auditEvents(t, n, audit.ActionFirmwareSign)
	outcomes := map[string]int{}
	for _, e := range signs {
		outcomes[e.Outcome]++
		if e.Outcome == audit.OutcomeSuccess && (e.Actor != "operator:signer-a" || e.Details["approved_by"] != "signer-a,signer-b" || e.Details["trust_version"] != "1") {
			t.Errorf("sign event %+v", e)
		}
	}
	if outcomes[audit.OutcomeSuccess] != 1 || outcomes[audit.OutcomeRefused] < 2 {
		t.Errorf("sign events %v, want 1 success and the refusals", outcomes)
	}
	if len(auditEvents(t, n, audit.ActionFirmwareTrustCreate)) != 1 {
		t.Error("dev firmware trust was not created exactly once on first signature")
	}
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}
}

// TestFirmwareRotateCompromised: a compromise rotation revokes the signing keys in the trust and the glossary,
// and the custodian no longer signs with them; the next release is signed by the new key.
func TestFirmwareRotateCompromised(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()
	if _, err := n.RA.RotateFirmware(ctx, fwAdmin, ra.FirmwareRotation{Environment: "dev"}); !errors.Is(err, ra.ErrNoFirmwareTrust) || ra.KindOf(err) != ra.KindNotFound {
		t.Fatalf("rotation without trust: %v", err)
	}
	if _, err := n.RA.InitFirmware(ctx, releaseSigner("signer-a"), "dev", nil); ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("release signer creating trust: %v", err)
	}
	v1, err := n.RA.InitFirmware(ctx, fwAdmin, "dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.InitFirmware(ctx, fwAdmin, "dev", nil); ra.KindOf(err) != ra.KindConflict || !errors.Is(err, store.ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	old, err := n.Store.FirmwareSigningKeys(ctx, "dev")
	if err != nil || len(old) != 2 {
		t.Fatalf("keys after init: %d %v", len(old), err)
	}
	if _, err := n.RA.RotateFirmware(ctx, releaseSigner("signer-a"), ra.FirmwareRotation{Environment: "dev", Compromised: true}); ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("release signer rotating: %v", err)
	}
	v2, err := n.RA.RotateFirmware(ctx, fwAdmin, ra.FirmwareRotation{Environment: "dev", Compromised: true})
	if err != nil {
		t.Fatal(err)
	}
	if v2.Version != 2 || v2.KeyURI != v1.KeyURI || len(v2.Revoked) != 2 {
		t.Fatalf("trust v2: version %d, same root %v, %d revoked", v2.Version, v2.KeyURI == v1.KeyURI, len(v2.Revoked))
	}
	for _, k := range old {
		g, err := n.Store.GetKey(ctx, k.KeyURI)
		if err != nil || g.State != store.KeyCompromised {
			t.Errorf("glossary state of revoked %s: %v %v", k.KeyURI, g, err)
		}
	}
	var ecdsaKey *store.FirmwareSigningKey
	for _, k := range old {
		if k.Algorithm == "ecdsa-p256" {
			ecdsaKey = k
		}
	}
	if _, err := n.CA.SignManifest(ctx, []byte("payload"), ca.FirmwareKey{KeyURI: ecdsaKey.KeyURI, Cert: ecdsaKey.Cert}, nil); !errors.Is(err, ca.ErrRetired) {
		t.Fatalf("custodian signing with a compromised key: %v", err)
	}

	rel, image := newRelease(t, n, "2.0.0")
	for _, s := range []string{"signer-a", "signer-b"} {
		if _, _, err := n.RA.ApproveRelease(ctx, releaseSigner(s), rel.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	m, err := n.RA.SignRelease(ctx, fwAdmin, rel.ID)
	if err != nil {
		t.Fatal(err)
	}
	signed, _ := n.Store.GetFirmwareRelease(ctx, rel.ID)
	if bytes.Equal(signed.SignerKID, ecdsaKey.KID) {
		t.Fatal("release signed with the revoked key")
	}
	trust, updates, err := n.RA.FirmwareTrust(ctx, "dev")
	if err != nil || len(updates) != 1 || trust.Version != 2 {
		t.Fatalf("trust after rotation: %v, %d updates", err, len(updates))
	}
	if _, err := verify.Verify(m, bytes.NewReader(image), trust, verify.Options{DeviceClass: "demo-implant"}); err != nil {
		t.Fatal(err)
	}
	if evs := auditEvents(t, n, audit.ActionFirmwareKey+store.FirmwareKeyRevoked); len(evs) != 2 || evs[0].Actor != fwAdmin.ID {
		t.Errorf("%d key revocation events", len(evs))
	}
}

// failingStore refuses to record a firmware root, as a store that fails at commit would.
type failingStore struct{ store.Store }

func (s failingStore) Tx(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Tx(ctx, func(tx store.Tx) error { return fn(failingTx{tx}) })
}

type failingTx struct{ store.Tx }

func (failingTx) InsertFirmwareRoot(context.Context, *store.FirmwareRoot) error {
	return errors.New("disk full")
}

// TestFirmwareInitAbandonsKeys: when trust version 1 cannot be recorded, every key generated for it is destroyed
// again and nothing is left in the glossary.
func TestFirmwareInitAbandonsKeys(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()
	r, err := ra.New(ra.Config{Store: failingStore{n.Store}, CA: n.CA, Hierarchy: n.Config, Profiles: n.Profiles})
	if err != nil {
		t.Fatal(err)
	}
	keyFiles := func() int {
		entries, err := os.ReadDir(n.Soft.Dir())
		if err != nil {
			t.Fatal(err)
		}
		c := 0
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".key") {
				c++
			}
		}
		return c
	}
	before := keyFiles()
	glossary, _ := n.Store.ListKeys(ctx)
	if _, err := r.InitFirmware(ctx, fwAdmin, "dev", nil); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("init on a failing store: %v", err)
	}
	if after := keyFiles(); after != before {
		t.Fatalf("%d key files before, %d after a failed init: generated keys were not destroyed", before, after)
	}
	if after, _ := n.Store.ListKeys(ctx); len(after) != len(glossary) {
		t.Fatalf("glossary grew from %d to %d keys", len(glossary), len(after))
	}
	if rs, _ := n.Store.FirmwareRoots(ctx, "dev"); len(rs) != 0 {
		t.Fatalf("%d trust versions recorded", len(rs))
	}
}
