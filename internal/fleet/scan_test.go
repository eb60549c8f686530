package fleet_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/fleet"
	"github.com/keyward/keyward/internal/hygiene"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storetest"
)

func TestMain(m *testing.M) { pkitest.Main(m) }

var admin = ra.Principal{ID: "test:fleet", Role: ra.RoleAdmin}

// openNode initialises a data directory on db ("" for SQLite).
func openNode(t testing.TB, db string) (*node.Node, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kw")
	n, _, err := node.Init(context.Background(), node.InitOptions{Options: node.Options{Dir: dir, DB: db, Warn: io.Discard,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, dir
}

func backends(t *testing.T, fn func(t *testing.T, db string)) {
	t.Run("SQLite", func(t *testing.T) { fn(t, "") })
	t.Run("PostgreSQL", func(t *testing.T) { fn(t, storetest.PostgresDSN(t)) })
}

// csrWith makes a CSR for cn signed by s with alg.
func csrWith(t testing.TB, s crypto.Signer, cn string, alg x509.SignatureAlgorithm) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, SignatureAlgorithm: alg}, s)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func issue(t *testing.T, n *node.Node, csr []byte) *store.Certificate {
	t.Helper()
	c, err := n.RA.Issue(context.Background(), admin, ra.IssueRequest{Profile: "implant-identity", CSR: csr})
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return c
}

// legacyCA is another system's device CA, whose certificates come in through 'fleet import-certs'.
type legacyCA struct{ *pkitest.CA }

func (l legacyCA) cert(t *testing.T, cn string, pub crypto.PublicKey) ra.ImportedCert {
	t.Helper()
	c := l.Leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}}, pub)
	return ra.ImportedCert{Source: "legacy.pem#" + cn, DER: c.Raw}
}

func importCerts(t *testing.T, n *node.Node, certs ...ra.ImportedCert) {
	t.Helper()
	res, err := n.RA.ImportCertificates(context.Background(), admin, ra.ImportCertsRequest{Environment: "dev", ProductLine: "demo-implant", Certs: certs})
	if err != nil || res.Imported != len(certs) {
		t.Fatalf("import: %+v, %v; want %d imported", res, err, len(certs))
	}
}

func scan(t *testing.T, n *node.Node) *fleet.Report {
	t.Helper()
	rep, err := fleet.Scan(context.Background(), n.RA.Reader(), fleet.Options{Env: "dev", Now: n.RA.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// honestFleet issues count devices with honest keys and signatures, re-issues some with new CSRs and sends one
// CSR twice (one message, one signature: no finding), and imports honest certificates of another system.
func honestFleet(t *testing.T, n *node.Node, first, count int) {
	t.Helper()
	for i := range count {
		k := pkitest.Key(t)
		cn := fmt.Sprintf("DEMO-%08d", first+i)
		csr := csrWith(t, k, cn, x509.ECDSAWithSHA256)
		issue(t, n, csr)
		switch i % 10 {
		case 1: // a renewal with a new CSR of the same key
			issue(t, n, csrWith(t, k, cn, x509.ECDSAWithSHA384))
		case 2: // the same CSR sent again
			issue(t, n, csr)
		}
	}
	legacy := legacyCA{pkitest.NewRoot(t, "Legacy device CA", pkitest.Key(t))}
	importCerts(t, n, legacy.cert(t, "OLD-HONEST-1", pkitest.KeyOf(t, "RSA-2048").Public()), legacy.cert(t, "OLD-HONEST-2", pkitest.KeyOf(t, "RSA-2048").Public()),
		legacy.cert(t, "OLD-HONEST-3", pkitest.KeyOf(t, "Ed25519").Public()), legacy.cert(t, "OLD-HONEST-4", pkitest.Key(t).Public()))
}

// TestScanHonestFleet: many honest signatures and keys give no finding, and nothing is recovered.
func TestScanHonestFleet(t *testing.T) {
	backends(t, func(t *testing.T, db string) {
		n, _ := openNode(t, db)
		honestFleet(t, n, 1, 120)
		rep := scan(t, n)
		if len(rep.Findings) != 0 {
			b, _ := json.MarshalIndent(rep.Findings, "", "  ")
			t.Fatalf("an honest fleet gave findings:\n%s", b)
		}
		if rep.Scanned.Certificates != 120+12+12 || rep.Scanned.Imported != 4 || rep.Scanned.RSAModuli != 2 || rep.Scanned.CAKeys < 2 {
			t.Fatalf("scanned %+v", rep.Scanned)
		}
		// The CSR sent twice shares r with itself, and only that: the scan looked at those and found nothing.
		if rep.Scanned.CSRSignatures != 2*12 {
			t.Fatalf("%d kept CSR signatures share a nonce, want the 12 pairs of CSRs sent twice", rep.Scanned.CSRSignatures)
		}
	})
}

type want struct {
	kind      string
	recovered bool
	holders   []string // kind:subject
}

func holders(f fleet.Finding) []string {
	var out []string
	for _, h := range f.Holders {
		out = append(out, h.Kind+":"+h.Subject)
	}
	sort.Strings(out)
	return out
}

// TestScanFindsPlanted plants, among an honest fleet, a key on two devices (one certificate issued here, one
// imported from the system that came before), two imported RSA-2048 keys that share a prime, and one device
// whose broken RNG signed two CSRs with one nonce, issued here (a renewal): the scan finds exactly those,
// recovers exactly those keys, and --revoke revokes exactly the certificates issued here.
func TestScanFindsPlanted(t *testing.T) {
	backends(t, func(t *testing.T, db string) {
		ctx := context.Background()
		n, dir := openNode(t, db)
		honestFleet(t, n, 1, 30)
		legacy := legacyCA{pkitest.NewRoot(t, "Legacy device CA", pkitest.Key(t))}

		shared := pkitest.Key(t)
		dup := issue(t, n, pkitest.CSR(t, shared, "DEMO-10000001"))
		importCerts(t, n, legacy.cert(t, "DEMO-10000002", shared.Public()))

		p1, p2 := pkitest.RSAKeysSharingPrime(t, 2048)
		importCerts(t, n, legacy.cert(t, "OLD-PRIME-1", p1.Public()), legacy.cert(t, "OLD-PRIME-2", p2.Public()))

		broken := pkitest.NewNonceReusingSigner(t, pkitest.Key(t))
		first := issue(t, n, csrWith(t, broken, "DEMO-10000003", x509.ECDSAWithSHA256))
		renewal := issue(t, n, csrWith(t, broken, "DEMO-10000003", x509.ECDSAWithSHA384))

		rep := scan(t, n)
		wants := []want{
			{fleet.KindDuplicateKey, false, []string{"certificate:CN=DEMO-10000001", "imported:CN=DEMO-10000002"}},
			{fleet.KindNonceReuse, true, []string{"certificate:CN=DEMO-10000003", "certificate:CN=DEMO-10000003"}},
			{fleet.KindSharedPrime, true, []string{"imported:CN=OLD-PRIME-1", "imported:CN=OLD-PRIME-2"}},
		}
		if len(rep.Findings) != len(wants) {
			b, _ := json.MarshalIndent(rep.Findings, "", "  ")
			t.Fatalf("%d findings, want %d:\n%s", len(rep.Findings), len(wants), b)
		}
		for i, w := range wants {
			f := rep.Findings[i]
			if f.Kind != w.kind || f.PrivateKeyRecovered != w.recovered || strings.Join(holders(f), " ") != strings.Join(w.holders, " ") || f.Recommendation == "" {
				t.Errorf("finding %d: %s recovered=%v %v, want %s recovered=%v %v", i, f.Kind, f.PrivateKeyRecovered, holders(f), w.kind, w.recovered, w.holders)
			}
		}
		nonce := rep.Findings[1]
		if !strings.Contains(nonce.Confirmation, "d·G equals") || nonce.Holders[0].Serial == nonce.Holders[1].Serial {
			t.Errorf("nonce finding: %+v", nonce)
		}
		for _, h := range nonce.Holders {
			if h.Serial != first.Serial && h.Serial != renewal.Serial {
				t.Errorf("nonce finding names %s, not one of the planted certificates", h.Serial)
			}
		}

		path, err := fleet.SaveReport(dir, rep)
		if err != nil {
			t.Fatal(err)
		}
		checkSaved(t, path, dir, rep)

		if err := fleet.Revoke(ctx, n.RA, admin, rep); err != nil {
			t.Fatal(err)
		}
		if r := rep.Revocation; r.Revoked != 3 || r.AlreadyRevoked != 0 || r.ImportedOnly != 3 || r.Failed != 0 {
			t.Fatalf("revocation %+v, want 3 revoked and 3 imported left alone", r)
		}
		for _, serial := range []string{dup.Serial, first.Serial, renewal.Serial} {
			c, err := n.RA.GetCertificate(ctx, serial)
			if err != nil || c.Status != store.CertStatusRevoked || c.RevocationReason != store.ReasonKeyCompromise {
				t.Errorf("certificate %s: %+v, %v; want revoked for keyCompromise", serial, c, err)
			}
		}
		// The revocations went through the RA: audited, one event each.
		var events int
		if err := n.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
			if e.Action == "cert.revoke" && e.Actor == admin.ID {
				events++
			}
			return nil
		}); err != nil || events != 3 {
			t.Fatalf("%d cert.revoke events by the scan's principal (%v), want 3", events, err)
		}
		// A second scan finds the same and revokes nothing more.
		again := scan(t, n)
		if len(again.Findings) != 3 {
			t.Fatalf("second scan: %d findings, want 3", len(again.Findings))
		}
		if err := fleet.Revoke(ctx, n.RA, admin, again); err != nil {
			t.Fatal(err)
		}
		if r := again.Revocation; r.Revoked != 0 || r.AlreadyRevoked != 3 {
			t.Fatalf("second revocation %+v, want the 3 already revoked", r)
		}
	})
}

func checkSaved(t *testing.T, path, dir string, rep *fleet.Report) {
	t.Helper()
	name := rep.GeneratedAt.UTC().Format("20060102T150405Z") + "-dev.json"
	if path != filepath.Join(dir, "reports", "fleet-scan", name) {
		t.Fatalf("report saved to %s, want reports/fleet-scan/%s", path, name)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("report file: %v %v, want mode 0600", fi, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		Kind, Env, Product string
		GeneratedAt        time.Time `json:"generated_at"`
		Findings           []fleet.Finding
	}
	if err := json.Unmarshal(data, &top); err != nil || top.Kind != "fleet-scan" || top.Env != "dev" || !top.GeneratedAt.Equal(rep.GeneratedAt) || len(top.Findings) != len(rep.Findings) {
		t.Fatalf("saved report %+v, %v", top, err)
	}
}

// TestScanWeakKeys: imported keys on weak curves or of small sizes are each a finding of their rule, and
// nothing is recovered from them.
func TestScanWeakKeys(t *testing.T) {
	n, _ := openNode(t, "")
	legacy := legacyCA{pkitest.NewRoot(t, "Legacy device CA", pkitest.Key(t))}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	importCerts(t, n, legacy.cert(t, "OLD-P224", p224.Public()), legacy.cert(t, "OLD-RSA1024", pkitest.KeyOf(t, "RSA-1024").Public()),
		legacy.cert(t, "OLD-GOOD", pkitest.Key(t).Public()))
	issue(t, n, pkitest.CSR(t, pkitest.Key(t), "DEMO-00000001"))
	rep := scan(t, n)
	got := map[string]string{}
	for _, f := range rep.Findings {
		if f.Kind != fleet.KindWeakKey || f.PrivateKeyRecovered || len(f.Holders) != 1 {
			t.Fatalf("finding %+v, want weak keys only", f)
		}
		got[f.Holders[0].Subject] = f.Rule
	}
	if len(got) != 2 || got["CN=OLD-P224"] != hygiene.WeakCurve || got["CN=OLD-RSA1024"] != hygiene.WeakSize {
		t.Fatalf("weak keys %v, want P-224 (curve) and RSA-1024 (size)", got)
	}
}

// TestScanUnknownScope: a scan of an environment this store has no CA of is refused, naming it.
func TestScanUnknownScope(t *testing.T) {
	n, _ := openNode(t, "")
	_, err := fleet.Scan(context.Background(), n.RA.Reader(), fleet.Options{Env: "staging", Product: "nope"})
	if ra.KindOf(err) != ra.KindNotFound || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("scan of an unknown scope: %v", err)
	}
}
