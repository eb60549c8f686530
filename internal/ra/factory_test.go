package ra_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storeopen"
)

var admin = ra.Principal{ID: "test", Role: ra.RoleAdmin}

func siteCA(t *testing.T, n *node.Node, site string, quota int64) *ra.SiteCA {
	t.Helper()
	s, err := n.RA.CreateSiteCA(context.Background(), admin, ra.SiteCARequest{Environment: "dev", ProductLine: "demo-implant", Site: site, Quota: quota,
		ValidFor: 30 * 24 * time.Hour, Keys: n.Soft})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rootPool(t *testing.T, n *node.Node) *x509.CertPool {
	t.Helper()
	root, err := n.Store.GetCA(context.Background(), hierarchy.RootID("dev"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// TestSiteCA: a site CA is a path-length-0 CA under the root with critical name constraints that Go's verifier
// enforces, its subject rule, quota and window recorded, its key and export signer in the glossary, and its
// creation's audit events; bad requests are refused with their kinds.
func TestSiteCA(t *testing.T) {
	ctx := context.Background()
	n := openNode(t)
	s := siteCA(t, n, "site-a", 1000)
	c := s.Cert
	if !c.IsCA || !c.MaxPathLenZero || c.MaxPathLen != 0 {
		t.Errorf("site CA: IsCA %v, path length %d (zero %v); want a CA with path length 0", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if !c.PermittedDNSDomainsCritical || len(c.ExcludedDNSDomains) != 1 || len(c.ExcludedIPRanges) != 2 {
		t.Errorf("site CA name constraints: critical %v, excluded DNS %q, IP %v", c.PermittedDNSDomainsCritical, c.ExcludedDNSDomains, c.ExcludedIPRanges)
	}
	if s.CA.Kind != store.CAKindSite || s.Site.Quota != 1000 || s.Site.CNPattern != `^DEMO-[0-9]{8}$` {
		t.Errorf("recorded %+v %+v", s.CA, s.Site)
	}
	if got := time.Until(s.Site.IssueUntil); got < 29*24*time.Hour || got > 31*24*time.Hour {
		t.Errorf("issuing window ends in %s, want 30d", got)
	}
	k, err := n.Store.GetKey(ctx, s.CA.KeyURI)
	if err != nil || k.Purpose != string(keystore.PurposeCASigning) || k.Owner != s.CA.ID {
		t.Errorf("site CA key record %+v, %v", k, err)
	}
	// The export signer: its own key (audit-signing), certified by the site CA for document signing only.
	ak, err := n.Store.GetKey(ctx, s.Site.AuditKeyURI)
	if err != nil || ak.Purpose != string(keystore.PurposeAuditSigning) || ak.Owner != s.CA.ID+" export signer" || ak.State != store.KeyActive {
		t.Errorf("export signer key record %+v, %v", ak, err)
	}
	signerCert, err := x509.ParseCertificate(s.Site.AuditCertDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := signerCert.CheckSignatureFrom(c); err != nil || signerCert.IsCA || signerCert.KeyUsage != x509.KeyUsageDigitalSignature ||
		len(signerCert.UnknownExtKeyUsage) != 1 || signerCert.NotAfter.After(c.NotAfter) {
		t.Errorf("export signer certificate: %v, CA %v, key usage %v, EKU %v, until %s", err, signerCert.IsCA, signerCert.KeyUsage, signerCert.UnknownExtKeyUsage, signerCert.NotAfter)
	}
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}
	var actions []string
	_ = n.Store.WalkAudit(ctx, 0, func(e *audit.Event) error { actions = append(actions, e.Action); return nil })
	if got := strings.Join(actions[len(actions)-3:], ","); got != "key.generate,ca.create,factory.site.create" {
		t.Errorf("last audit events %s", got)
	}

	// Go's verifier enforces the name constraints: a certificate with any SAN type under the site CA fails.
	signer, err := n.Keys.Signer(ctx, s.CA.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		t.Fatal(err)
	}
	roots := rootPool(t, n)
	inter := x509.NewCertPool()
	inter.AddCert(c)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, mod := range map[string]func(*x509.Certificate){
		"dns":   func(l *x509.Certificate) { l.DNSNames = []string{"evil.example.com"} },
		"ip":    func(l *x509.Certificate) { l.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")} },
		"email": func(l *x509.Certificate) { l.EmailAddresses = []string{"a@example.com"} },
		"uri":   func(l *x509.Certificate) { l.URIs = []*url.URL{{Scheme: "https", Host: "example.com"}} },
		"none":  func(*x509.Certificate) {},
	} {
		l := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "DEMO-00000001"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
		mod(l)
		der, err := x509.CreateCertificate(rand.Reader, l, c, &leafKey.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if (name == "none") != (err == nil) {
			t.Errorf("%s SAN under the site CA: verify error %v", name, err)
		}
	}

	// Bad requests.
	for name, req := range map[string]ra.SiteCARequest{
		"duplicate":       {Environment: "dev", ProductLine: "demo-implant", Site: "site-a", Quota: 1, ValidFor: time.Hour, Keys: n.Soft},
		"unknown env":     {Environment: "staging", ProductLine: "demo-implant", Site: "b", Quota: 1, ValidFor: time.Hour, Keys: n.Soft},
		"unknown product": {Environment: "dev", ProductLine: "pacemaker", Site: "b", Quota: 1, ValidFor: time.Hour, Keys: n.Soft},
		"long site":       {Environment: "dev", ProductLine: "demo-implant", Site: "a-very-long-site-name", Quota: 1, ValidFor: time.Hour, Keys: n.Soft},
		"no quota":        {Environment: "dev", ProductLine: "demo-implant", Site: "b", Quota: 0, ValidFor: time.Hour, Keys: n.Soft},
		"long window":     {Environment: "dev", ProductLine: "demo-implant", Site: "b", Quota: 1, ValidFor: 400 * 24 * time.Hour, Keys: n.Soft},
		"wrong profile":   {Environment: "dev", ProductLine: "demo-implant", Site: "b", Profile: "no-such-profile", Quota: 1, ValidFor: time.Hour, Keys: n.Soft},
	} {
		_, err := n.RA.CreateSiteCA(ctx, admin, req)
		want := ra.ErrFactoryBadRequest
		if name == "duplicate" {
			want = ra.ErrFactoryConflict
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
	}
}

// registerDevice enrolls device cn at headquarters through a factory station of site "hq", so the registry
// holds it, and then applies state: store.DeviceSuspended or store.DeviceDecommissioned (or leaves it active).
func registerDevice(t *testing.T, n *node.Node, cn, state string) {
	t.Helper()
	ctx := context.Background()
	st, err := n.Store.GetStation(ctx, "hq-01")
	if errors.Is(err, store.ErrNotFound) {
		if _, err := n.RA.AddStation(ctx, admin, ra.StationRequest{Environment: "dev", Site: "hq", Name: "hq-01", ProductLines: []string{"demo-implant"}}); err != nil {
			t.Fatal(err)
		}
		st, err = n.Store.GetStation(ctx, "hq-01")
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.Enroll(ctx, ra.Caller{Principal: ra.StationPrincipal(st.ID), Station: st, Environment: "dev"},
		ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: csr(t, key(t), cn)}); err != nil {
		t.Fatal(err)
	}
	ref := ra.DeviceRef{Environment: "dev", ProductLine: "demo-implant", Serial: cn}
	switch state {
	case store.DeviceSuspended:
		_, err = n.RA.ApplyDeviceAction(ctx, admin, ref, ra.Suspend)
	case store.DeviceDecommissioned:
		_, err = n.RA.Decommission(ctx, admin, ra.DecommissionRequest{Device: ref, AttestedBy: "QA"})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// lastEvent returns the newest audit event.
func lastEvent(t *testing.T, s store.Store) *audit.Event {
	t.Helper()
	var last *audit.Event
	if err := s.WalkAudit(context.Background(), 0, func(e *audit.Event) error { last = e; return nil }); err != nil {
		t.Fatal(err)
	}
	return last
}

// TestBatchRegistry: a batch that would pre-issue a serial the registry holds as decommissioned or suspended is
// refused with the device's state, audited, and reserves nothing; a resume is refused likewise for the serials
// it has still to issue, and not for those it issued already.
func TestBatchRegistry(t *testing.T) {
	ctx := context.Background()
	n := openNode(t)
	s := siteCA(t, n, "site-a", 100)
	registerDevice(t, n, "DEMO-00000003", store.DeviceDecommissioned)
	registerDevice(t, n, "DEMO-00000017", store.DeviceSuspended)
	registerDevice(t, n, "DEMO-00000030", "") // active: a batch may name it (reconciliation refuses the duplicate)

	batch := func(first string, count int64) ra.Batch {
		return ra.Batch{SiteCA: s.CA.ID, BatchID: "b-" + first, Count: count, FirstSerial: first, Custody: ra.CustodyWrapped}
	}
	for _, tc := range []struct {
		name  string
		b     ra.Batch
		kind  ra.Kind
		state string
	}{
		{"decommissioned", batch("DEMO-00000001", 5), ra.KindConflict, "DEMO-00000003 of dev/demo-implant was decommissioned"},
		{"suspended", batch("DEMO-00000010", 10), ra.KindForbidden, "DEMO-00000017 of dev/demo-implant is suspended"},
	} {
		_, err := n.RA.StartBatch(ctx, admin, tc.b)
		if ra.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.state) {
			t.Fatalf("%s: %v; want %v naming %q", tc.name, err, tc.kind, tc.state)
		}
		if e := lastEvent(t, n.Store); e.Action != audit.ActionBatchStart || e.Outcome != audit.OutcomeRefused || e.Details["batch"] != tc.b.BatchID ||
			!strings.Contains(e.Details["reason"], tc.state) {
			t.Fatalf("%s: last audit event %+v; want the refusal", tc.name, e)
		}
		if fs, err := n.Store.GetFactorySite(ctx, s.CA.ID); err != nil || fs.Reserved != 0 {
			t.Fatalf("%s: reserved %+v, %v; want nothing", tc.name, fs, err)
		}
	}

	// Around them, batches start; one that names an active device too.
	for _, b := range []ra.Batch{batch("DEMO-00000004", 13), batch("DEMO-00000018", 20)} {
		if iss, err := n.RA.StartBatch(ctx, admin, b); err != nil || iss.CA().ID != s.CA.ID {
			t.Fatalf("batch from %s: %v", b.FirstSerial, err)
		}
	}
	if fs, err := n.Store.GetFactorySite(ctx, s.CA.ID); err != nil || fs.Reserved != 33 {
		t.Fatalf("reserved %+v, %v; want 33", fs, err)
	}

	// A device decommissioned while a batch runs stops its resume only where it is still to be issued.
	b := batch("DEMO-00000040", 10)
	if _, err := n.RA.StartBatch(ctx, admin, b); err != nil {
		t.Fatal(err)
	}
	registerDevice(t, n, "DEMO-00000045", store.DeviceDecommissioned)
	if _, err := n.RA.ResumeBatch(ctx, admin, b, 3); ra.KindOf(err) != ra.KindConflict || !strings.Contains(err.Error(), "credential 5 of the batch would be DEMO-00000045") {
		t.Fatalf("resume before the decommissioned serial: %v", err)
	}
	if e := lastEvent(t, n.Store); e.Action != audit.ActionBatchResume || e.Outcome != audit.OutcomeRefused {
		t.Fatalf("last audit event %+v; want the refused resume", e)
	}
	if _, err := n.RA.ResumeBatch(ctx, admin, b, 6); err != nil {
		t.Fatalf("resume after the decommissioned serial: %v", err)
	}
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}
}

// TestPackageSite: headquarters decides what a site package holds (the site CA and its export signer with their
// keys, the root and station CAs without theirs, the site's stations) and records it only once the package is
// written; a site's RA starts the new store with those records and factory.site.init, once.
func TestPackageSite(t *testing.T) {
	ctx := context.Background()
	n := openNode(t)
	s := siteCA(t, n, "site-a", 10)
	noop := func(*ra.SitePackage) error { return nil }
	if _, err := n.RA.PackageSite(ctx, admin, s.CA.ID, "dir", noop); ra.KindOf(err) != ra.KindBadRequest || !strings.Contains(err.Error(), "no factory station is registered for site site-a") {
		t.Fatalf("package without stations: %v", err)
	}
	if _, err := n.RA.PackageSite(ctx, admin, "dev/demo-implant/site-z", "dir", noop); !errors.Is(err, ra.ErrFactoryNotFound) {
		t.Fatalf("package of no site CA: %v", err)
	}
	for _, st := range []ra.StationRequest{
		{Environment: "dev", Site: "site-a", Name: "site-a-01", ProductLines: []string{"demo-implant"}},
		{Environment: "dev", Site: "site-b", Name: "site-b-01", ProductLines: []string{"demo-implant"}},
	} {
		if _, err := n.RA.AddStation(ctx, admin, st); err != nil {
			t.Fatal(err)
		}
	}
	before := lastEvent(t, n.Store).Seq
	failed := errors.New("disk full")
	if _, err := n.RA.PackageSite(ctx, admin, s.CA.ID, "dir", func(*ra.SitePackage) error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("failed write: %v", err)
	}
	if e := lastEvent(t, n.Store); e.Seq != before {
		t.Fatalf("a package that was not written was recorded: %+v", e)
	}
	var written *ra.SitePackage
	pkg, err := n.RA.PackageSite(ctx, admin, s.CA.ID, "site-dir", func(p *ra.SitePackage) error { written = p; return nil })
	if err != nil || written != pkg {
		t.Fatal(err)
	}
	if ids := pkg.StationIDs(); len(ids) != 1 || ids[0] != "site-a-01" || pkg.Custody != ra.SiteCustodySoftware || len(pkg.Keys) != 2 || len(pkg.SoftKeys) != 2 {
		t.Fatalf("package: stations %v, custody %s, %d keys (%d soft)", ids, pkg.Custody, len(pkg.Keys), len(pkg.SoftKeys))
	}
	for _, c := range pkg.CAs {
		if (c.KeyURI != "") != (c.ID == s.CA.ID) {
			t.Errorf("package CA %s (%s) names key %q", c.ID, c.Kind, c.KeyURI)
		}
	}
	if e := lastEvent(t, n.Store); e.Action != audit.ActionSitePackage || e.Subject != s.CA.ID || e.Details["dir"] != "site-dir" || e.Details["stations"] != "site-a-01" {
		t.Fatalf("last audit event %+v; want the package", e)
	}

	// The site's store, through an RA of the site.
	site, err := sqliteStore(t)
	if err != nil {
		t.Fatal(err)
	}
	siteRA, err := ra.New(ra.Config{Store: site, CA: n.CA, Hierarchy: n.Config, Profiles: n.Profiles,
		Site: &ra.SiteScope{CAID: s.CA.ID, Environment: "dev", ProductLine: "demo-implant", Site: "site-a"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.RA.InitSite(ctx, admin, pkg); ra.KindOf(err) != ra.KindBadRequest {
		t.Fatalf("headquarters' RA initialising a site: %v", err)
	}
	if err := siteRA.InitSite(ctx, admin, pkg); err != nil {
		t.Fatal(err)
	}
	if err := siteRA.InitSite(ctx, admin, pkg); ra.KindOf(err) != ra.KindConflict {
		t.Fatalf("second initialisation: %v", err)
	}
	var events []*audit.Event
	if err := site.WalkAudit(ctx, 0, func(e *audit.Event) error { events = append(events, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Action != audit.ActionSiteInit || events[0].Details["headquarters_audit_head"] != pkg.AuditHead {
		t.Fatalf("site audit chain %+v; want factory.site.init only", events)
	}
	if got, err := site.GetFactorySite(ctx, s.CA.ID); err != nil || got.Quota != 10 || got.AuditKeyURI != s.Site.AuditKeyURI {
		t.Fatalf("site record %+v, %v", got, err)
	}
	if root, err := site.GetCA(ctx, hierarchy.RootID("dev")); err != nil || root.KeyURI != "" {
		t.Fatalf("site's copy of the root %+v, %v; want it without its key", root, err)
	}
}

// sqliteStore opens a new, empty store.
func sqliteStore(t *testing.T) (store.Store, error) {
	t.Helper()
	s, err := storeopen.Open(context.Background(), "", t.TempDir())
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}
