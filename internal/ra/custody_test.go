package ra_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// TestDestroyedKeyStopsSigningAtOnce: once 'key destroy' has destroyed an issuing CA's key, the process that
// destroyed it issues nothing more with it, even through an issuer handle opened before: no restart, no feed.
func TestDestroyedKeyStopsSigningAtOnce(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()
	admin := ra.Principal{ID: "test", Role: ra.RoleAdmin}
	if _, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: csr(t, key(t), "DEMO-00000001")}); err != nil {
		t.Fatal(err)
	}
	held, err := n.CA.Issuer(ctx, "dev/demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	// A certificate prepared (linted) before the destruction and signed after it.
	k := key(t)
	serial, _ := issuer.NewSerial(time.Now())
	prepared, err := held.Prepare(&x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "DEMO-00000003"},
		NotBefore: n.Now(), NotAfter: n.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}, &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	row, err := n.Store.GetCA(ctx, "dev/demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.RA.DestroyKey(ctx, admin, row.KeyURI, "compromise drill"); err != nil {
		t.Fatal(err)
	}
	before, _ := n.Store.ListCertificates(ctx, store.CertFilter{})
	_, err = n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: csr(t, key(t), "DEMO-00000002")})
	if ra.KindOf(err) != ra.KindConflict || !strings.Contains(err.Error(), "cannot issue") {
		t.Fatalf("issuance after the key was destroyed: %v (kind %v), want a conflict", err, ra.KindOf(err))
	}
	if after, _ := n.Store.ListCertificates(ctx, store.CertFilter{}); len(after) != len(before) {
		t.Fatal("a certificate was stored after the key was destroyed")
	}
	if err := held.Usable(); !errors.Is(err, ca.ErrRetired) {
		t.Fatalf("a handle opened before the destruction: %v, want ErrRetired", err)
	}
	if der, err := held.Issue(ctx, prepared); !errors.Is(err, ca.ErrRetired) {
		t.Fatalf("a certificate prepared before the destruction was signed after it: %x, %v", der, err)
	}
	var last *audit.Event
	_ = n.Store.WalkAudit(ctx, 0, func(e *audit.Event) error { last = e; return nil })
	if last.Outcome != audit.OutcomeRefused || last.Action != audit.ActionCertIssue {
		t.Fatalf("last audit event %+v, want the refused issuance", last)
	}
	if c, _ := n.Store.GetCA(ctx, "dev/demo-implant"); c.Status != store.CAStatusRetired {
		t.Fatalf("CA status %s after its key was destroyed, want retired", c.Status)
	}
}

// TestChangedRetiresCAInOtherProcess stands in for another process's key destruction: the store says the CA
// is retired and its key destroyed, as the change feed would report, and the custodian stops signing on the
// report alone.
func TestChangedRetiresCAInOtherProcess(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()
	admin := ra.Principal{ID: "test", Role: ra.RoleAdmin}
	if _, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: csr(t, key(t), "DEMO-00000001")}); err != nil {
		t.Fatal(err)
	}
	row, _ := n.Store.GetCA(ctx, "dev/demo-implant")
	// The other process's transaction, without its keystore erase (that process's keystore is its own).
	if err := n.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.SetKeyState(ctx, row.KeyURI, store.KeyDestroyed, n.Now()); err != nil {
			return err
		}
		if err := tx.SetCAStatus(ctx, row.ID, store.CAStatusRetired); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: n.Now(), Actor: "other", Action: audit.ActionKeyDestroy, Subject: row.KeyURI, Outcome: audit.OutcomeSuccess})
	}); err != nil {
		t.Fatal(err)
	}
	// Without the report the cached handle would still sign: the key material is still in this keystore.
	n.CA.Changed(ctx, []store.Change{{Seq: 99, Action: audit.ActionKeyDestroy, Subject: row.KeyURI}})
	_, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: csr(t, key(t), "DEMO-00000002")})
	if ra.KindOf(err) != ra.KindConflict {
		t.Fatalf("issuance after another process destroyed the key: %v, want a conflict", err)
	}
}
