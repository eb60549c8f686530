package revocation_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/revocation/filter"
)

func caCert(t *testing.T, n *node.Node, id string) *x509.Certificate {
	t.Helper()
	row, err := n.Store.GetCA(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(row.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFilterRefusesRevokedCASubtree: once the product line's issuing CA is marked revoked, the next filter
// (full or delta) lists its key, is signed outside its subtree, and CheckChain refuses a certificate it issued
// whose own serial is not revoked. The filter also covers every issuing CA row of the product line, here a
// second generation with its own id.
func TestFilterRefusesRevokedCASubtree(t *testing.T) {
	ctx := context.Background()
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "d"), Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	admin := ra.Principal{ID: "test", Role: ra.RoleAdmin}
	issued, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: pkitest.CSR(t, pkitest.Key(t), "DEMO-00000001")})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(issued.DER)
	if err != nil {
		t.Fatal(err)
	}
	root, issuing := caCert(t, n, "dev/root"), caCert(t, n, "dev/demo-implant")
	chain := []*x509.Certificate{leaf, issuing, root}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	vo := filter.VerifyOptions{Roots: roots, Environment: "dev", Scope: "demo-implant"}

	// Another generation of the product line's issuing CA (its certificate made here; retired, so it fills no
	// role and signs nothing), with one revoked certificate of its own.
	gen2 := pkitest.NewRoot(t, "demo-implant dev CA G2", nil)
	oldSerial := pkitest.Serial(t)
	oldLeaf := gen2.Leaf(t, &x509.Certificate{SerialNumber: oldSerial}, pkitest.Key(t).Public())
	oldSPKI := sha256.Sum256(oldLeaf.RawSubjectPublicKeyInfo)
	at := time.Now().UTC().Truncate(time.Second)
	err = n.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertCA(ctx, &store.CA{ID: "dev/demo-implant@2", Environment: "dev", ProductLine: "demo-implant", Kind: store.CAKindIssuing,
			ParentID: "dev/root", KeyURI: "test:g2", CertDER: gen2.Cert.Raw, Subject: "CN=demo-implant dev CA G2", NotBefore: gen2.Cert.NotBefore,
			NotAfter: gen2.Cert.NotAfter, Status: store.CAStatusRetired, CreatedAt: at, Generation: 2}); err != nil {
			return err
		}
		return tx.InsertCertificate(ctx, &store.Certificate{Serial: oldSerial.Text(16), IssuerID: "dev/demo-implant@2", Profile: "implant-identity",
			ProfileVersion: 1, Subject: "CN=DEMO-00000000", NotBefore: oldLeaf.NotBefore, NotAfter: oldLeaf.NotAfter, SPKISHA256: oldSPKI[:],
			DER: oldLeaf.Raw, Status: store.CertStatusRevoked, RevokedAt: &at, RevocationReason: store.ReasonKeyCompromise, CreatedAt: at})
	})
	if err != nil {
		t.Fatal(err)
	}

	svc := revocation.New(n.RA, n.CA, n.Store)
	req := revocation.FilterRequest{Environment: "dev", Product: "demo-implant"}
	before, err := svc.BuildFilter(ctx, admin, req)
	if err != nil {
		t.Fatal(err)
	}
	base, err := filter.Verify(before.Data, vo)
	if err != nil {
		t.Fatal(err)
	}
	if base.Certificates() != 2 || !base.Revoked(oldSerial) || len(base.RevokedIssuers()) != 0 || len(before.RevokedCAs) != 0 {
		t.Fatalf("before: %d certificates, old generation's revoked serial %v, %d revoked issuers", base.Certificates(), base.Revoked(oldSerial), len(base.RevokedIssuers()))
	}
	if err := base.CheckChain(chain); err != nil {
		t.Fatalf("before the CA is revoked: %v", err)
	}

	// Mark the issuing CA revoked, as 'ca revoke' will.
	if err := n.Store.Tx(ctx, func(tx store.Tx) error { return tx.SetCAStatus(ctx, "dev/demo-implant", store.CAStatusRevoked) }); err != nil {
		t.Fatal(err)
	}
	issuingKey := sha256.Sum256(issuing.RawSubjectPublicKeyInfo)

	after, err := svc.BuildFilter(ctx, admin, req)
	if err != nil {
		t.Fatal(err)
	}
	f, err := filter.Verify(after.Data, vo)
	if err != nil {
		t.Fatalf("filter after the revocation does not verify (signed under the revoked CA?): %v", err)
	}
	if got := f.RevokedIssuers(); !slices.Equal(got, [][32]byte{issuingKey}) || !slices.Equal(after.RevokedCAs, []string{"dev/demo-implant"}) {
		t.Fatalf("lists %x (%v), want the issuing CA's key", got, after.RevokedCAs)
	}
	if f.Revoked(leaf.SerialNumber) {
		t.Fatal("the leaf's own serial is revoked: the test would prove nothing")
	}
	var re *filter.RevokedError
	if err := f.CheckChain(chain); !errors.Is(err, filter.ErrIssuerRevoked) || !errors.As(err, &re) || re.Index != 1 {
		t.Fatalf("a certificate of the revoked CA: %v", err)
	}
	t.Logf("refused: %v", f.CheckChain(chain))

	// A whole-environment filter lists it too.
	env, err := svc.BuildFilter(ctx, admin, revocation.FilterRequest{Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	ef, err := filter.Verify(env.Data, filter.VerifyOptions{Roots: roots, Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	if !ef.IssuerRevoked(issuingKey) || !errors.Is(ef.CheckChain(chain), filter.ErrIssuerRevoked) {
		t.Fatal("the environment filter does not list the revoked CA")
	}

	// A delta from the filter built before the revocation carries it: a device that only takes deltas learns it.
	req.DeltaFrom = before.Version
	delta, err := svc.BuildFilter(ctx, admin, req)
	if err != nil {
		t.Fatal(err)
	}
	withDelta, err := base.ApplyDelta(delta.Data, vo)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(withDelta.CheckChain(chain), filter.ErrIssuerRevoked) || !slices.Equal(delta.RevokedCAs, []string{"dev/demo-implant"}) {
		t.Fatalf("delta: %v", withDelta.CheckChain(chain))
	}
	if !withDelta.Revoked(oldSerial) {
		t.Fatal("delta lost the old generation's revoked serial")
	}
}
