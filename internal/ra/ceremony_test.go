package ra_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/trust"
)

const prodConfig = `organization: Keyward Test
environments:
  dev:
    root: {algorithm: ecdsa-p256, validity: 25y}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity, gateway-identity]}
  production:
    root: {algorithm: ecdsa-p384, validity: 25y, offline: true}
    product_lines:
      demo-implant: {algorithm: ecdsa-p256, validity: 20y, profiles: [implant-identity]}
`

var witnesses = []string{"alice", "bob"}

// production is a server data directory whose production root is offline, and a ceremony workspace holding
// that root.
type production struct {
	srv, cer *node.Node
	rootDER  []byte
}

func newProduction(t *testing.T) *production {
	t.Helper()
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "srv")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keyward.yaml"), []byte(prodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: dir, Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	pass := filepath.Join(base, "ceremony-pass")
	if err := os.WriteFile(pass, []byte("correct horse battery staple ceremony\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cer, err := node.OpenCeremony(ctx, node.Options{Dir: filepath.Join(base, "cer"), PassphraseFile: pass, Warn: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cer.Close() })
	root, _, err := cer.RA.CeremonyRoot(ctx, admin, "production", nil, keystore.ECDSAP384, 25*365*24*time.Hour, &ra.Transcript{Command: "test", Witnesses: witnesses})
	if err != nil {
		t.Fatal(err)
	}
	return &production{srv: srv, cer: cer, rootDER: root.CertDER}
}

func (p *production) request(t *testing.T, spec ra.CARequestSpec) *ra.CARequestFile {
	t.Helper()
	spec.Environment = "production"
	f, err := p.srv.RA.RequestCA(context.Background(), admin, spec)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (p *production) sign(t *testing.T, f *ra.CARequestFile) []byte {
	t.Helper()
	ctx := context.Background()
	plan, err := p.cer.RA.PlanCeremony(ctx, admin, "production", f.PEM, 0)
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := p.cer.RA.SignCeremony(ctx, admin, plan, &ra.Transcript{Command: "test", Witnesses: witnesses})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (p *production) importCA(t *testing.T, der []byte) *store.CA {
	t.Helper()
	row, err := p.srv.RA.ImportCA(context.Background(), admin, ra.ImportRequest{Environment: "production", CertDER: der, RootDER: p.rootDER})
	if err != nil {
		t.Fatal(err)
	}
	return row
}

// refusals counts the refused events of action in s.
func refusals(t *testing.T, s store.Store, action string) int {
	t.Helper()
	n := 0
	if err := s.WalkAudit(context.Background(), 0, func(e *audit.Event) error {
		if e.Action == action && e.Outcome == audit.OutcomeRefused {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// snapshot is what a refusal must leave unchanged.
type snapshot struct{ cas, keys, reqs int }

func snap(t *testing.T, s store.Store) snapshot {
	t.Helper()
	ctx := context.Background()
	cas, err := s.ListCAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := s.ListCARequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{len(cas), len(keys), len(reqs)}
}

// refused runs fn and checks the refusal: its kind, a message naming the rule, one refusal event of action, and
// nothing else changed.
func refused(t *testing.T, s store.Store, action string, kind ra.Kind, rule string, fn func() error) {
	t.Helper()
	before, events := snap(t, s), refusals(t, s, action)
	err := fn()
	if err == nil {
		t.Fatalf("accepted; want a %v refusal naming %q", kind, rule)
	}
	if ra.KindOf(err) != kind || !strings.Contains(err.Error(), rule) {
		t.Fatalf("refusal %v %q; want %v naming %q", ra.KindOf(err), err, kind, rule)
	}
	if after := snap(t, s); after != before {
		t.Fatalf("a refusal changed the store: %+v -> %+v", before, after)
	}
	if got := refusals(t, s, action); got != events+1 {
		t.Fatalf("%d refusal events of %s, want %d", got, action, events+1)
	}
}

func TestCARequestRefusals(t *testing.T) {
	p := newProduction(t)
	ctx := context.Background()
	req := func(spec ra.CARequestSpec) func() error {
		return func() error {
			spec.Environment = "production"
			_, err := p.srv.RA.RequestCA(ctx, admin, spec)
			return err
		}
	}
	refused(t, p.srv.Store, audit.ActionCARequest, ra.KindBadRequest, "not a kind of CA the hierarchy declares", req(ra.CARequestSpec{Kind: "intermediate"}))
	refused(t, p.srv.Store, audit.ActionCARequest, ra.KindBadRequest, "positive quota", req(ra.CARequestSpec{Kind: "site", ProductLine: "demo-implant", Site: "site-a", ValidFor: 24 * time.Hour}))
	refused(t, p.srv.Store, audit.ActionCARequest, ra.KindBadRequest, "issuing window", req(ra.CARequestSpec{Kind: "site", ProductLine: "demo-implant", Site: "site-a", Quota: 10}))
	refused(t, p.srv.Store, audit.ActionCARequest, ra.KindBadRequest, "not declared", req(ra.CARequestSpec{Kind: "issuing", ProductLine: "pacemaker"}))
	refused(t, p.srv.Store, audit.ActionCARequest, ra.KindBadRequest, "serves a whole environment", req(ra.CARequestSpec{Kind: "station", ProductLine: "demo-implant"}))
	// A second request for one role while one is pending: a second rollover.
	p.request(t, ra.CARequestSpec{Kind: "issuing", ProductLine: "demo-implant"})
	refused(t, p.srv.Store, audit.ActionCARequest, ra.KindConflict, "is pending since", req(ra.CARequestSpec{Kind: "issuing", ProductLine: "demo-implant"}))
}

func TestCeremonyRefusals(t *testing.T) {
	p := newProduction(t)
	ctx := context.Background()
	f := p.request(t, ra.CARequestSpec{Kind: "station"})
	plan, err := p.cer.RA.PlanCeremony(ctx, admin, "production", f.PEM, 0)
	if err != nil {
		t.Fatal(err)
	}
	refused(t, p.cer.Store, audit.ActionCeremonySign, ra.KindBadRequest, "at least two distinct witnesses", func() error {
		_, _, err := p.cer.RA.SignCeremony(ctx, admin, plan, &ra.Transcript{Command: "test", Witnesses: []string{"alice", " Alice "}})
		return err
	})
	refused(t, p.cer.Store, audit.ActionCeremonySign, ra.KindBadRequest, "for environment \"production\", this ceremony is for \"staging\"", func() error {
		_, err := p.cer.RA.PlanCeremony(ctx, admin, "staging", f.PEM, 0)
		return err
	})
	// A description that does not belong to its CSR: assembled from two requests.
	other := p.request(t, ra.CARequestSpec{Kind: "ocsp-signer"})
	spliced := append(pkitest.PEM("CERTIFICATE REQUEST", other.CSR), f.PEM[strings.Index(string(f.PEM), "-----BEGIN KEYWARD"):]...)
	refused(t, p.cer.Store, audit.ActionCeremonySign, ra.KindBadRequest, "describes another certificate request", func() error {
		_, err := p.cer.RA.PlanCeremony(ctx, admin, "production", spliced, 0)
		return err
	})
	// A kind the hierarchy does not declare, in a well-formed file.
	info := *f.Info
	info.Kind = "intermediate"
	bad, err := ra.EncodeCARequest(&info, f.CSR)
	if err != nil {
		t.Fatal(err)
	}
	refused(t, p.cer.Store, audit.ActionCeremonySign, ra.KindBadRequest, "does not declare below a root", func() error {
		_, err := p.cer.RA.PlanCeremony(ctx, admin, "production", bad, 0)
		return err
	})
	// The plan shows what the witnesses sign: a station CA for TLS clients only.
	desc := map[string]string{}
	for _, kv := range plan.Describe() {
		desc[kv[0]] = kv[1]
	}
	if desc["kind"] != "station" || desc["extended key usage"] != "clientAuth" || desc["path length"] != "0" {
		t.Fatalf("plan of a station CA: %v", desc)
	}
	if _, err := store.VerifyAudit(ctx, p.cer.Store); err != nil {
		t.Fatalf("ceremony transcript: %v", err)
	}
}

func TestImportRefusals(t *testing.T) {
	p := newProduction(t)
	ctx := context.Background()
	imp := func(req ra.ImportRequest) func() error {
		return func() error {
			req.Environment = "production"
			_, err := p.srv.RA.ImportCA(ctx, admin, req)
			return err
		}
	}
	station := p.request(t, ra.CARequestSpec{Kind: "station"})
	csr, err := x509.ParseCertificateRequest(station.CSR)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate for the pending key from another root, when the environment has no root yet: it breaks
	// the station CA's rules (no clientAuth restriction), so neither it nor its root is recorded.
	foreign := pkitest.NewRoot(t, "foreign root", nil)
	loose := foreign.Leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "production factory stations CA"}, IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, csr.PublicKey)
	refused(t, p.srv.Store, audit.ActionCAImport, ra.KindBadRequest, "extended key usage must be clientAuth alone",
		imp(ra.ImportRequest{CertDER: loose.Raw, RootDER: foreign.Cert.Raw}))
	// The real ceremony's certificate presented with another root.
	der := p.sign(t, station)
	refused(t, p.srv.Store, audit.ActionCAImport, ra.KindBadRequest, "not signed by the given root", imp(ra.ImportRequest{CertDER: der, RootDER: foreign.Cert.Raw}))
	// Kind and product cross-checked against the request.
	refused(t, p.srv.Store, audit.ActionCAImport, ra.KindBadRequest, "is for a station CA, not a issuing CA", imp(ra.ImportRequest{Kind: "issuing", CertDER: der, RootDER: p.rootDER}))
	p.importCA(t, der)
	// The same certificate again: its request is no longer pending.
	refused(t, p.srv.Store, audit.ActionCAImport, ra.KindBadRequest, "certifies no pending CA key", imp(ra.ImportRequest{CertDER: der, RootDER: p.rootDER}))
	// Now that production has a root, another root is refused outright.
	other := p.request(t, ra.CARequestSpec{Kind: "ocsp-signer"})
	ocsp, err := x509.ParseCertificateRequest(other.CSR)
	if err != nil {
		t.Fatal(err)
	}
	otherCert := foreign.Leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "production root OCSP responder"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}}, ocsp.PublicKey)
	refused(t, p.srv.Store, audit.ActionCAImport, ra.KindConflict, "has another root recorded", imp(ra.ImportRequest{CertDER: otherCert.Raw, RootDER: foreign.Cert.Raw}))
}

func TestRevokeAndRootCRL(t *testing.T) {
	p := newProduction(t)
	ctx := context.Background()
	issuing := p.importCA(t, p.sign(t, p.request(t, ra.CARequestSpec{Kind: "issuing", ProductLine: "demo-implant"})))
	station := p.importCA(t, p.sign(t, p.request(t, ra.CARequestSpec{Kind: "station"})))
	issue := func() error {
		_, err := p.srv.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", Environment: "production", CSR: pkitest.CSR(t, pkitest.Key(t), "DEMO-10000001")})
		return err
	}
	if err := issue(); err != nil {
		t.Fatal(err)
	}
	// Roots are replaced, not revoked; reasons must apply to a CA.
	root := issuing.ParentID
	refused(t, p.srv.Store, audit.ActionCARevoke, ra.KindBadRequest, "not revoked but replaced", func() error {
		_, err := p.srv.RA.RevokeCA(ctx, admin, root, "keyCompromise")
		return err
	})
	refused(t, p.srv.Store, audit.ActionCARevoke, ra.KindBadRequest, "does not apply to a CA", func() error {
		_, err := p.srv.RA.RevokeCA(ctx, admin, issuing.ID, "certificateHold")
		return err
	})
	if _, err := p.srv.RA.RevokeCA(ctx, admin, issuing.ID, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	if err := issue(); ra.KindOf(err) != ra.KindConflict || !strings.Contains(err.Error(), "revoked (keyCompromise)") {
		t.Fatalf("issuance after the CA was revoked: %v", err)
	}
	// The root's CRL from a ceremony.
	q, err := p.srv.RA.RootCRLRequest(ctx, "production", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Revoked) != 1 || q.Revoked[0].CA != issuing.ID || q.MinNumber != 1 {
		t.Fatalf("CRL request: %+v", q)
	}
	data, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	if q, err = ra.ParseCRLRequest(data); err != nil {
		t.Fatal(err)
	}
	signCRL := func(q *ra.CRLRequest) []byte {
		der, _, err := p.cer.RA.CeremonyCRL(ctx, admin, "production", q, 180*24*time.Hour, &ra.Transcript{Command: "test", Witnesses: witnesses})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	first := signCRL(q)
	crl, err := x509.ParseRevocationList(first)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].ReasonCode != store.ReasonKeyCompromise {
		t.Fatalf("root CRL entries: %+v", crl.RevokedCertificateEntries)
	}
	second := signCRL(q) // a later CRL of the same content: number 2
	imp := func(der []byte) func() error {
		return func() error { _, err := p.srv.RA.ImportRootCRL(ctx, admin, "production", der); return err }
	}
	if err := imp(second)(); err != nil {
		t.Fatal(err)
	}
	refused(t, p.srv.Store, audit.ActionCAImportCRL, ra.KindBadRequest, "is not above the installed CRL's 2", imp(first))
	// A CRL signed by another key.
	foreign := pkitest.NewRoot(t, "Keyward production Root CA", nil)
	forged, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(9), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}, foreign.Cert, foreign.Key)
	if err != nil {
		t.Fatal(err)
	}
	refused(t, p.srv.Store, audit.ActionCAImportCRL, ra.KindBadRequest, "not signed by a root", imp(forged))
	// A CA revoked after the request: the CRL signed from it omits that CA.
	if _, err := p.srv.RA.RevokeCA(ctx, admin, station.ID, "cessationOfOperation"); err != nil {
		t.Fatal(err)
	}
	refused(t, p.srv.Store, audit.ActionCAImportCRL, ra.KindBadRequest, "omits the certificate", imp(signCRL(q)))
}

func TestRolloverOnline(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()
	first, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: pkitest.CSR(t, pkitest.Key(t), "DEMO-00000001")})
	if err != nil {
		t.Fatal(err)
	}
	next, err := n.RA.Rollover(ctx, admin, ra.RolloverRequest{Environment: "dev", ProductLine: "demo-implant"})
	if err != nil {
		t.Fatal(err)
	}
	if next.ID != "dev/demo-implant@2" || next.Generation != 2 {
		t.Fatalf("next generation: %+v", next)
	}
	second, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: pkitest.CSR(t, pkitest.Key(t), "DEMO-00000002")})
	if err != nil {
		t.Fatal(err)
	}
	if first.IssuerID != "dev/demo-implant" || second.IssuerID != "dev/demo-implant@2" {
		t.Fatalf("issuers %s then %s", first.IssuerID, second.IssuerID)
	}
	old, err := n.Store.GetCA(ctx, "dev/demo-implant")
	if err != nil || old.Status != store.CAStatusSuperseded {
		t.Fatalf("previous generation: %+v %v", old, err)
	}
	// It keeps answering: its key may not be destroyed, nor the CA retired, while its certificate is valid.
	refused(t, n.Store, audit.ActionKeyDestroy, ra.KindConflict, "still answers for 1 valid certificates", func() error {
		return n.RA.DestroyKey(ctx, admin, old.KeyURI, "test")
	})
	refused(t, n.Store, audit.ActionCARetire, ra.KindConflict, "still answers for 1 valid certificates", func() error {
		_, err := n.RA.RetireCA(ctx, admin, old.ID)
		return err
	})
	// The chain served carries both generations.
	chain, err := n.RA.Chain(ctx, "dev", "demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 {
		t.Fatalf("chain of %d certificates during the overlap, want the new issuing CA, the root and the old issuing CA", len(chain))
	}
	// A pending ceremony request blocks an online rollover too.
	if _, err := n.RA.RequestCA(ctx, admin, ra.CARequestSpec{Environment: "dev", Kind: "issuing", ProductLine: "demo-implant"}); err != nil {
		t.Fatal(err)
	}
	refused(t, n.Store, audit.ActionCACreate, ra.KindConflict, "is pending already", func() error {
		_, err := n.RA.Rollover(ctx, admin, ra.RolloverRequest{Environment: "dev", ProductLine: "demo-implant"})
		return err
	})
}

func TestRootRollover(t *testing.T) {
	p := newProduction(t)
	ctx := context.Background()
	p.importCA(t, p.sign(t, p.request(t, ra.CARequestSpec{Kind: "issuing", ProductLine: "demo-implant"})))
	oldRoot, err := x509.ParseCertificate(p.rootDER)
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := p.cer.RA.CeremonyRootRollover(ctx, admin, ra.RootRolloverSpec{Environment: "production", Validity: 25 * 365 * 24 * time.Hour},
		&ra.Transcript{Command: "test", Witnesses: witnesses})
	if err != nil {
		t.Fatal(err)
	}
	newRoot, err := x509.ParseCertificate(res.New.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	nwo, err := x509.ParseCertificate(res.NewWithOld)
	if err != nil {
		t.Fatal(err)
	}
	if nwo.CheckSignatureFrom(oldRoot) != nil || string(nwo.RawSubjectPublicKeyInfo) != string(newRoot.RawSubjectPublicKeyInfo) {
		t.Fatal("NewWithOld is not the new key certified by the old root")
	}
	// The next issuing generation under the new root.
	g2 := p.sign(t, p.request(t, ra.CARequestSpec{Kind: "issuing", ProductLine: "demo-implant"}))
	imp := func(req ra.ImportRequest) func() error {
		return func() error {
			req.Environment, req.CertDER, req.RootDER = "production", g2, res.New.CertDER
			_, err := p.srv.RA.ImportCA(ctx, admin, req)
			return err
		}
	}
	refused(t, p.srv.Store, audit.ActionCAImport, ra.KindConflict, "only with the NewWithOld link certificate", imp(ra.ImportRequest{}))
	refused(t, p.srv.Store, audit.ActionCAImport, ra.KindBadRequest, "no link certificate by which the recorded root", imp(ra.ImportRequest{Links: [][]byte{res.OldWithNew}}))
	foreign := pkitest.NewRoot(t, "impostor", nil)
	fake := foreign.Link(t, &pkitest.CA{Cert: newRoot})
	refused(t, p.srv.Store, audit.ActionCAImport, ra.KindBadRequest, "not signed by the recorded root", imp(ra.ImportRequest{Links: [][]byte{fake.Raw}}))
	if err := imp(ra.ImportRequest{Links: [][]byte{res.NewWithOld, res.OldWithNew}})(); err != nil {
		t.Fatal(err)
	}
	leaf, err := p.srv.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", Environment: "production", CSR: pkitest.CSR(t, pkitest.Key(t), "DEMO-20000001")})
	if err != nil {
		t.Fatal(err)
	}
	if leaf.IssuerID != "production/demo-implant@2" {
		t.Fatalf("issued by %s after the rollover", leaf.IssuerID)
	}
	// A device holding only the old root applies the update and verifies the new chain.
	held, err := trust.NewAnchors("production", 0, oldRoot)
	if err != nil {
		t.Fatal(err)
	}
	updated, err := held.Apply(res.Update, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	chain, err := p.srv.RA.Chain(ctx, "production", "demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	var inter []*x509.Certificate
	for _, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter = append(inter, c)
	}
	lc, err := x509.ParseCertificate(leaf.DER)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := updated.Verify(lc, inter, time.Now(), x509.ExtKeyUsageAny); err != nil {
		t.Fatalf("device after the update: %v", err)
	}
	if _, err := updated.Apply(res.Update, time.Now()); !errors.Is(err, trust.ErrNotNewer) {
		t.Fatalf("replayed update: %v", err)
	}
	// The workspace signs new CAs with the new root; the old one is superseded.
	old, err := p.cer.Store.GetCA(ctx, res.Old.ID)
	if err != nil || old.Status != store.CAStatusSuperseded {
		t.Fatalf("old root in the workspace: %+v %v", old, err)
	}
}

// TestCeremonyWitnessCredentials: once a workspace has enrolled witnesses, a production ceremony needs each
// witness's own credential; a credential in another's name, a revoked one and an operator's token are refused;
// the transcript records who proved themselves, never a token. Plain names still do in dev.
func TestCeremonyWitnessCredentials(t *testing.T) {
	p := newProduction(t) // its root ceremony had plain names: no witness was enrolled yet
	ctx := context.Background()
	alice, err := p.cer.RA.EnrollWitness(ctx, admin, ra.TokenRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := p.cer.RA.EnrollWitness(ctx, admin, ra.TokenRequest{Name: "bob", NeverExpires: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.cer.RA.EnrollWitness(ctx, ra.Principal{ID: "operator:x", Role: ra.RoleAuditor}, ra.TokenRequest{Name: "carol"}); ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("an auditor enrolling a witness: %v", err)
	}
	f := p.request(t, ra.CARequestSpec{Kind: "issuing", ProductLine: "demo-implant"})
	plan, err := p.cer.RA.PlanCeremony(ctx, admin, "production", f.PEM, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		tokens map[string]string
		kind   ra.Kind
	}{
		{"plain names", nil, ra.KindUnauthorized},
		{"one credential", map[string]string{"alice": alice}, ra.KindUnauthorized},
		{"alice's credential for both", map[string]string{"alice": alice, "bob": alice}, ra.KindForbidden},
		{"a bad credential", map[string]string{"alice": alice, "bob": "kwt_forged"}, ra.KindUnauthorized},
	} {
		_, _, err := p.cer.RA.SignCeremony(ctx, admin, plan, &ra.Transcript{Command: "test", Witnesses: witnesses, WitnessTokens: tc.tokens})
		if ra.KindOf(err) != tc.kind || ra.FieldOf(err) != "witness" {
			t.Errorf("%s: %v (kind %s), want %s about the witness", tc.name, err, ra.KindOf(err), tc.kind)
		}
	}
	if _, _, err := p.cer.RA.SignCeremony(ctx, admin, plan, &ra.Transcript{Command: "test", Witnesses: witnesses,
		WitnessTokens: map[string]string{"alice": alice, "Bob": bob}}); err != nil {
		t.Fatalf("both witnesses with their credentials: %v", err)
	}
	e := lastAudit(t, p.cer.Store)
	if e.Action != audit.ActionCeremonySign || e.Details["witnesses_authenticated"] != "alice, bob" {
		t.Fatalf("transcript entry: %+v", e)
	}
	for _, v := range e.Details {
		if strings.Contains(v, alice) || strings.Contains(v, bob) {
			t.Fatal("the transcript holds a witness credential")
		}
	}
	if _, err := p.cer.RA.RevokeToken(ctx, admin, "bob", "lost his USB key"); err != nil {
		t.Fatal(err)
	}
	_, _, err = p.cer.RA.SignCeremony(ctx, admin, plan, &ra.Transcript{Command: "test", Witnesses: witnesses,
		WitnessTokens: map[string]string{"alice": alice, "bob": bob}})
	if !errors.Is(err, ra.ErrRevokedToken) {
		t.Fatalf("a revoked witness credential: %v", err)
	}
}
