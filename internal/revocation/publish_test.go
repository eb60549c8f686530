package revocation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
)

var admin = ra.Principal{ID: "test:admin", Role: ra.RoleAdmin}

// TestPublisherSkipsCAWithDestroyedKey: a revoked CA whose key was destroyed signs no CRL any more (its last one
// is served until it expires); the publisher carries on for the other CAs without failing its round, which
// would leave the revocation head unrecorded and fail again every round after.
func TestPublisherSkipsCAWithDestroyedKey(t *testing.T) {
	ctx := context.Background()
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "data"), Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	publisher := revocation.NewPublisher(revocation.New(n.RA, n.CA, n.Store), revocation.CRLConfig{})
	if _, err := publisher.PublishOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.Rollover(ctx, admin, ra.RolloverRequest{Environment: "dev", ProductLine: "demo-implant"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.RevokeCA(ctx, admin, "dev/demo-implant", "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	old, err := n.Store.GetCA(ctx, "dev/demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.RA.DestroyKey(ctx, admin, old.KeyURI, "compromised"); err != nil {
		t.Fatal(err)
	}
	// A revocation under the next generation, which its CRLs must list.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.Revoke(ctx, admin, ra.RevokeRequest{Serial: c.Serial, Reason: store.ReasonSuperseded}); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		if _, err := publisher.PublishOnce(ctx); err != nil {
			t.Fatalf("round %d after the revoked CA's key was destroyed: %v", round, err)
		}
	}
	listed := false
	for _, delta := range []bool{false, true} {
		row, err := n.Store.LatestCRL(ctx, "dev/demo-implant@2", delta)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(row.DER)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range crl.RevokedCertificateEntries {
			listed = listed || e.SerialNumber.Text(16) == c.Serial
		}
	}
	if !listed {
		t.Fatalf("no CRL of dev/demo-implant@2 lists %s", c.Serial)
	}
}
