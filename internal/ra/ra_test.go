package ra_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

func openNode(t *testing.T) *node.Node {
	t.Helper()
	n, _, err := node.Init(context.Background(), node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "d"), Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func csr(t *testing.T, k *ecdsa.PrivateKey, cn string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func key(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestIssueStreamRefusesOnlyTheConflict streams requests in which two devices present the same key: every
// other request is issued, exactly one of the pair is refused as a conflict, and the audit chain holds every
// issuance and the refusal.
func TestIssueStreamRefusesOnlyTheConflict(t *testing.T) {
	n := openNode(t)
	shared := key(t)
	var reqs []ra.IssueRequest
	for i := 0; i < 40; i++ {
		k := key(t)
		if i == 7 || i == 31 {
			k = shared
		}
		reqs = append(reqs, ra.IssueRequest{Profile: "implant-identity", CSR: csr(t, k, fmt.Sprintf("DEMO-%08d", i))})
	}
	i := 0
	next := func() (ra.IssueRequest, bool) {
		if i == len(reqs) {
			return ra.IssueRequest{}, false
		}
		i++
		return reqs[i-1], true
	}
	var mu sync.Mutex
	var issued, conflicts int
	err := n.RA.IssueStream(context.Background(), ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.StreamOptions{BatchSize: 8}, next, func(r ra.StreamResult) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Err == nil:
			issued++
		case ra.KindOf(r.Err) == ra.KindConflict:
			conflicts++
		default:
			t.Errorf("request %d: %v", r.Index, r.Err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if issued != 39 || conflicts != 1 {
		t.Fatalf("issued %d, conflicts %d; want 39 and 1", issued, conflicts)
	}
	certs, err := n.Store.ListCertificates(context.Background(), store.CertFilter{})
	if err != nil || len(certs) != 39 {
		t.Fatalf("stored %d certificates (%v), want 39", len(certs), err)
	}
	if _, err := store.VerifyAudit(context.Background(), n.Store); err != nil {
		t.Fatal(err)
	}
}

// TestIssueForbiddenRole: a role the profile does not allow is refused with KindForbidden and nothing stored.
func TestIssueForbiddenRole(t *testing.T) {
	n := openNode(t)
	_, err := n.RA.Issue(context.Background(), ra.Principal{ID: "operator:aud", Role: ra.RoleAuditor}, ra.IssueRequest{Profile: "implant-identity", CSR: csr(t, key(t), "DEMO-00000001")})
	if ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("auditor issuing: %v (kind %d), want forbidden", err, ra.KindOf(err))
	}
	var re *ra.Error
	if !errors.As(err, &re) {
		t.Fatalf("%T is not *ra.Error", err)
	}
	if certs, _ := n.Store.ListCertificates(context.Background(), store.CertFilter{}); len(certs) != 0 {
		t.Fatalf("%d certificates stored after a refusal", len(certs))
	}
}
