package revocation

import (
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

func caRow(t *testing.T, id, env, product, kind, status string, created time.Time) *store.CA {
	t.Helper()
	return &store.CA{ID: id, Environment: env, ProductLine: product, Kind: kind, Status: status, CreatedAt: created,
		CertDER: pkitest.NewRoot(t, id, nil).Cert.Raw}
}

func TestFilterScopeFromCARows(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cas := []*store.CA{
		caRow(t, "dev/root", "dev", "", store.CAKindRoot, store.CAStatusRevoked, t0), // never listed, even if marked
		caRow(t, "dev/demo-implant", "dev", "demo-implant", store.CAKindIssuing, store.CAStatusActive, t0),
		caRow(t, "dev/demo-implant@2", "dev", "demo-implant", store.CAKindIssuing, store.CAStatusSuperseded, t0.Add(-time.Hour)),
		caRow(t, "dev/demo-implant/site-a", "dev", "demo-implant", store.CAKindSite, store.CAStatusRevoked, t0),
		caRow(t, "dev/pacemaker-x1", "dev", "pacemaker-x1", store.CAKindIssuing, store.CAStatusRevoked, t0),
		caRow(t, "dev/stations", "dev", "", store.CAKindStation, store.CAStatusRevoked, t0),
		caRow(t, "staging/demo-implant", "staging", "demo-implant", store.CAKindIssuing, store.CAStatusRevoked, t0),
		caRow(t, "service/tls", "service", "", store.CAKindService, store.CAStatusRevoked, t0),
		{ID: "dev/pending", Environment: "dev", ProductLine: "demo-implant", Kind: store.CAKindIssuing, Status: store.CAStatusRevoked}, // no certificate
	}
	// Every generation and state of the scope's issuing and site CAs is covered.
	if got, want := scopeIssuers(cas, "dev", "demo-implant"), []string{"dev/demo-implant", "dev/demo-implant@2", "dev/demo-implant/site-a", "dev/pending"}; !slices.Equal(got, want) {
		t.Fatalf("product scope covers %v, want %v", got, want)
	}
	if got := scopeIssuers(cas, "dev", ""); len(got) != 5 || slices.Contains(got, "dev/stations") || slices.Contains(got, "dev/root") {
		t.Fatalf("environment scope covers %v", got)
	}
	// Every revoked CA of the environment below the root, whatever its product line or kind.
	ids, keys, err := revokedIssuers(cas, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"dev/demo-implant/site-a", "dev/pacemaker-x1", "dev/stations"}; !slices.Equal(ids, want) || len(keys) != 3 {
		t.Fatalf("revoked %v (%d keys), want %v", ids, len(keys), want)
	}
	for i, c := range []*store.CA{cas[3], cas[4], cas[5]} {
		if keys[i] != spkiOf(t, c) {
			t.Fatalf("key %d is not the SPKI hash of %s", i, c.ID)
		}
	}
	// The same key under two CA rows (a re-certified CA) is listed once.
	twin := *cas[4]
	twin.ID = "dev/pacemaker-x1/recertified"
	if ids, keys, _ := revokedIssuers(append(cas, &twin), "dev"); len(ids) != 4 || len(keys) != 3 {
		t.Fatalf("twin: %v, %d keys", ids, len(keys))
	}
	// A revoked CA whose certificate cannot be read stops the build rather than being left out.
	broken := *cas[4]
	broken.CertDER = []byte{0x30, 0x00}
	if _, _, err := revokedIssuers([]*store.CA{&broken}, "dev"); err == nil || !strings.Contains(err.Error(), "dev/pacemaker-x1") {
		t.Fatalf("unreadable revoked CA: %v", err)
	}
}

func spkiOf(t *testing.T, c *store.CA) [32]byte {
	t.Helper()
	cert, err := x509.ParseCertificate(c.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

func TestFilterSignerCA(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	gen := func(c *store.CA, g int) *store.CA { c.Generation = g; return c }
	root := gen(caRow(t, "dev/root", "dev", "", store.CAKindRoot, store.CAStatusActive, t0), 1)
	oldRoot := gen(caRow(t, "dev/root", "dev", "", store.CAKindRoot, store.CAStatusSuperseded, t0), 1)
	root2 := gen(caRow(t, "dev/root@2", "dev", "", store.CAKindRoot, store.CAStatusActive, t0.Add(time.Hour)), 2)
	active := gen(caRow(t, "dev/demo-implant", "dev", "demo-implant", store.CAKindIssuing, store.CAStatusActive, t0), 1)
	revoked := gen(caRow(t, "dev/demo-implant", "dev", "demo-implant", store.CAKindIssuing, store.CAStatusRevoked, t0), 1)
	superseded := gen(caRow(t, "dev/demo-implant", "dev", "demo-implant", store.CAKindIssuing, store.CAStatusSuperseded, t0), 1)
	gen2 := gen(caRow(t, "dev/demo-implant@2", "dev", "demo-implant", store.CAKindIssuing, store.CAStatusActive, t0.Add(time.Hour)), 2)
	revoked2 := gen(caRow(t, "dev/demo-implant@2", "dev", "demo-implant", store.CAKindIssuing, store.CAStatusRevoked, t0.Add(time.Hour)), 2)
	site := gen(caRow(t, "dev/demo-implant/site-a", "dev", "demo-implant", store.CAKindSite, store.CAStatusActive, t0), 1)
	other := gen(caRow(t, "dev/pacemaker-x1", "dev", "pacemaker-x1", store.CAKindIssuing, store.CAStatusActive, t0), 1)
	staging := gen(caRow(t, "staging/demo-implant", "staging", "demo-implant", store.CAKindIssuing, store.CAStatusActive, t0), 1)
	for _, tc := range []struct {
		name    string
		cas     []*store.CA
		product string
		offline bool
		want    string
	}{
		{"environment filter: the root", []*store.CA{root, active}, "", false, "dev/root"},
		{"environment filter after a root rollover: the active root", []*store.CA{oldRoot, root2, active}, "", false, "dev/root@2"},
		{"product filter: its issuing CA", []*store.CA{root, active, other}, "demo-implant", false, "dev/demo-implant"},
		{"product filter after a rollover: the new generation", []*store.CA{root, superseded, gen2}, "demo-implant", true, "dev/demo-implant@2"},
		{"issuing CA revoked, new generation active", []*store.CA{root, revoked, gen2, site, other}, "demo-implant", true, "dev/demo-implant@2"},
		{"issuing CA revoked, no active generation: the online root", []*store.CA{oldRoot, root2, revoked, site, other}, "demo-implant", false, "dev/root@2"},
		{"issuing CA revoked, root offline: another product line's CA", []*store.CA{root, superseded, revoked2, site, other, staging}, "demo-implant", true, "dev/pacemaker-x1"},
		{"nothing active, root offline: refused", []*store.CA{root, revoked, site, staging}, "demo-implant", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := filterSignerCA(tc.cas, "dev", tc.product, tc.offline)
			if tc.want == "" {
				if ra.KindOf(err) != ra.KindConflict || !strings.Contains(err.Error(), "root is offline") {
					t.Fatalf("got %q, %v; want a conflict", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRootPoolHoldsEveryGeneration(t *testing.T) {
	r1, r2 := pkitest.NewRoot(t, "dev root", nil), pkitest.NewRoot(t, "dev root G2", nil)
	other := pkitest.NewRoot(t, "staging root", nil)
	pool := rootPool([]*store.CA{
		{ID: "dev/root", Environment: "dev", Kind: store.CAKindRoot, Status: store.CAStatusSuperseded, CertDER: r1.Cert.Raw},
		{ID: "dev/root@2", Environment: "dev", Kind: store.CAKindRoot, Status: store.CAStatusActive, CertDER: r2.Cert.Raw},
		{ID: "staging/root", Environment: "staging", Kind: store.CAKindRoot, Status: store.CAStatusActive, CertDER: other.Cert.Raw},
	}, "dev")
	for _, tc := range []struct {
		ca   *pkitest.CA
		want bool
	}{{r1, true}, {r2, true}, {other, false}} {
		leaf := tc.ca.Leaf(t, &x509.Certificate{}, pkitest.Key(t).Public())
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); (err == nil) != tc.want {
			t.Errorf("%s: verify %v, want trusted=%v", tc.ca.Cert.Subject.CommonName, err, tc.want)
		}
	}
}
