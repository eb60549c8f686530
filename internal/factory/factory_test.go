package factory

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/pkcs11"
	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

func TestMain(m *testing.M) { pkcs11test.Main(m) }

var transport = []byte("0123456789abcdef0123456789abcdef")

var admin = ra.Principal{ID: "test", Role: ra.RoleAdmin}

func newNode(t testing.TB) (*node.Node, *Factory) {
	t.Helper()
	n, _, err := node.Init(context.Background(), node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "data"), Warn: io.Discard}, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, &Factory{RA: n.RA, CA: n.CA, Principal: admin}
}

// withRA returns a copy of f whose RA is a new one over n's store and custodian, changed by edit first (a store
// hook, a clock, other profiles).
func withRA(t testing.TB, n *node.Node, f *Factory, edit func(*ra.Config)) *Factory {
	t.Helper()
	cfg := ra.Config{Store: n.Store, CA: n.CA, Hierarchy: n.Config, Profiles: n.Profiles, Now: n.Now}
	edit(&cfg)
	r, err := ra.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := *f
	g.RA = r
	return &g
}

func siteCA(t testing.TB, f *Factory, ks keystore.Keystore, site string, quota int64) *ra.SiteCA {
	t.Helper()
	s, err := f.RA.CreateSiteCA(context.Background(), f.Principal, ra.SiteCARequest{Environment: "dev", ProductLine: "demo-implant", Site: site, Quota: quota, ValidFor: 30 * 24 * time.Hour, Keys: ks})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func softBatch(out string, count int64) BatchRequest {
	return BatchRequest{Env: "dev", Product: "demo-implant", Site: "site-a", Count: count, FirstSerial: "DEMO-00000001", TransportKey: transport, Out: out, Checkpoint: 64}
}

func rootPool(t testing.TB, n *node.Node) *x509.CertPool {
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

// verifyBatch checks every credential: chain to the root through the site CA, index order, unique serials and
// names, and a wrapped key that opens to the certified key.
func verifyBatch(t *testing.T, n *node.Node, s *ra.SiteCA, path string, count int64) *BatchInfo {
	t.Helper()
	info, err := Show(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Count != count || info.Credentials != count || !info.Complete || info.UniqueIndexes != count || info.UniqueSerials != count || info.UniqueCommonNames != count || info.TornTail {
		t.Fatalf("batch info %+v; want %d unique credentials", info, count)
	}
	roots, inter := rootPool(t, n), x509.NewCertPool()
	inter.AddCert(s.Cert)
	var i int64
	err = ReadCredentials(path, func(c *Credential) error {
		if c.Index != i {
			t.Fatalf("credential %d at position %d", c.Index, i)
		}
		i++
		cert, err := x509.ParseCertificate(c.CertDER)
		if err != nil {
			return err
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("credential %d: %v", c.Index, err)
		}
		if cert.Subject.CommonName != c.DeviceCN || len(c.CertDER) > 400 {
			t.Fatalf("credential %d: CN %q (record %q), %d bytes", c.Index, cert.Subject.CommonName, c.DeviceCN, len(c.CertDER))
		}
		if info.Header.Custody == CustodyWrapped {
			pkcs8, err := UnwrapDeviceKey(transport, info.Header.BatchID, c.Index, c.CertSerial, c.WrappedKey)
			if err != nil {
				return err
			}
			k, err := x509.ParsePKCS8PrivateKey(pkcs8)
			if err != nil {
				return err
			}
			if !k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
				t.Fatalf("credential %d: wrapped key does not match the certificate", c.Index)
			}
			if _, err := UnwrapDeviceKey(transport, info.Header.BatchID, c.Index+1, c.CertSerial, c.WrappedKey); err == nil {
				t.Fatalf("credential %d: wrapped key opens under another index", c.Index)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestBatchResume(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	s := siteCA(t, f, n.Soft, "site-a", 1000)
	out := filepath.Join(t.TempDir(), "batch.kwb")
	const count = 300

	req := softBatch(out, count)
	req.StopAfter = 100
	sum, err := f.Batch(ctx, req)
	if !errors.Is(err, ErrStopped) || sum.Written != 100 {
		t.Fatalf("first run: %+v, %v; want 100 written and ErrStopped", sum, err)
	}
	// A crash mid-write leaves a torn frame: a frame header promising more bytes than follow.
	fh, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write([]byte{frameCredential, 0, 0, 3, 0, '{', '"'})
	fh.Close()
	if info, err := Show(out); err != nil || info.Credentials != 100 || !info.TornTail {
		t.Fatalf("after the crash: %+v, %v", info, err)
	}

	// Resuming with another job's parameters is refused, naming what differs.
	for name, mod := range map[string]func(*BatchRequest){
		"count":   func(r *BatchRequest) { r.Count = 301 },
		"product": func(r *BatchRequest) { r.Product = "pacemaker-x1" },
		"serials": func(r *BatchRequest) { r.FirstSerial = "DEMO-00100001" },
		"transport": func(r *BatchRequest) {
			r.TransportKey = []byte("ffffffffffffffffffffffffffffffff")
		},
	} {
		r := softBatch(out, count)
		mod(&r)
		_, err := f.Batch(ctx, r)
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "in the file") {
			t.Errorf("resume with another %s: %v", name, err)
		}
	}

	req.StopAfter = 0
	sum, err = f.Batch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Resumed != 100 || sum.Written != 200 {
		t.Errorf("resume: %+v", sum)
	}
	verifyBatch(t, n, s, out, count)
	// A complete batch run again writes nothing.
	if sum, err := f.Batch(ctx, softBatch(out, count)); err != nil || sum.Written != 0 {
		t.Errorf("rerun of a complete batch: %+v, %v", sum, err)
	}
	if st, err := n.Store.GetFactorySite(ctx, s.CA.ID); err != nil || st.Reserved != count {
		t.Errorf("quota reserved %+v, %v; want %d once", st, err, count)
	}
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}
}

func TestInject(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", 1000)
	out := filepath.Join(t.TempDir(), "batch.kwb")
	req := softBatch(out, 4)
	req.StopAfter = 2
	req.Checkpoint = 1
	if _, err := f.Batch(ctx, req); !errors.Is(err, ErrStopped) {
		t.Fatal(err)
	}
	if _, err := Inject(out, "HW-1", time.Now()); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "holds 2 of its 4") {
		t.Errorf("inject from an incomplete batch: %v", err)
	}
	req.StopAfter = 0
	if _, err := f.Batch(ctx, req); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, sn := range []string{"HW-1", "HW-2", "HW-3", "HW-4"} {
		got, err := Inject(out, sn, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got.Index != int64(i) || got.DeviceSerial != sn || seen[got.CertSerial] || len(got.WrappedKey) == 0 {
			t.Errorf("inject %s: %+v", sn, got)
		}
		seen[got.CertSerial] = true
		if i == 1 {
			if _, err := Inject(out, "HW-1", time.Now()); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "got credential 0") {
				t.Errorf("same device twice: %v", err)
			}
		}
	}
	if _, err := Inject(out, "HW-5", time.Now()); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "all 4 credentials") {
		t.Errorf("inject past the end: %v", err)
	}
	if _, err := Inject(out, "bad serial", time.Now()); !errors.Is(err, ErrBadRequest) {
		t.Errorf("device serial with a space: %v", err)
	}
	info, err := Show(out)
	if err != nil || info.Injected != 4 {
		t.Errorf("show after injecting: %+v, %v", info, err)
	}
	// Resuming a complete, injected batch changes nothing.
	if sum, err := f.Batch(ctx, softBatch(out, 4)); err != nil || sum.Written != 0 {
		t.Errorf("rerun: %+v, %v", sum, err)
	}
}

func TestSiteCARefuses(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", 10)
	dir := t.TempDir()
	cases := []struct {
		name string
		mod  func(*BatchRequest, *Factory)
		want error
	}{
		{"over quota", func(r *BatchRequest, _ *Factory) { r.Count = 11 }, ErrRefused},
		{"outside subject rule", func(r *BatchRequest, _ *Factory) { r.FirstSerial = "PX1-00000001" }, ErrRefused},
		{"past the serial width", func(r *BatchRequest, _ *Factory) { r.FirstSerial = "DEMO-99999999"; r.Count = 2 }, ErrBadRequest},
		{"after the window", func(_ *BatchRequest, g *Factory) {
			*g = *withRA(t, n, g, func(c *ra.Config) { c.Now = func() time.Time { return time.Now().Add(31 * 24 * time.Hour) } })
		}, ErrRefused},
		{"no site CA", func(r *BatchRequest, _ *Factory) { r.Site = "site-b" }, ErrNotFound},
		{"undeclared environment", func(r *BatchRequest, _ *Factory) { r.Env = "staging" }, ErrNotFound},
	}
	for i, tc := range cases {
		g := *f
		r := softBatch(filepath.Join(dir, tc.name+".kwb"), 6)
		tc.mod(&r, &g)
		_, err := g.Batch(ctx, r)
		if !errors.Is(err, tc.want) {
			t.Errorf("%d %s: got %v, want %v", i, tc.name, err, tc.want)
		}
	}
	if _, err := f.Batch(ctx, softBatch(filepath.Join(dir, "a.kwb"), 6)); err != nil {
		t.Fatal(err)
	}
	r := softBatch(filepath.Join(dir, "b.kwb"), 5)
	r.FirstSerial = "DEMO-00000100"
	if _, err := f.Batch(ctx, r); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "4 of its quota of 10") {
		t.Errorf("second batch over the quota: %v", err)
	}
}

func TestBatchPKCS11(t *testing.T) {
	ctx := context.Background()
	token := pkcs11test.NewToken(t)
	n, f := newNode(t)
	hsm, err := pkcs11.Open(token)
	if err != nil {
		t.Fatal(err)
	}
	n.Keys.Add(hsm)
	s := siteCA(t, f, hsm, "site-a", 100)
	if !strings.HasPrefix(s.CA.KeyURI, "pkcs11:") {
		t.Fatalf("site CA key %s is not on the token", s.CA.KeyURI)
	}
	out := filepath.Join(t.TempDir(), "batch.kwb")
	req := BatchRequest{Env: "dev", Product: "demo-implant", Site: "site-a", Count: 24, FirstSerial: "DEMO-00000001", Custody: hsm, Out: out, Checkpoint: 8, StopAfter: 8}
	if _, err := f.Batch(ctx, req); !errors.Is(err, ErrStopped) {
		t.Fatal(err)
	}
	req.StopAfter = 0
	sum, err := f.Batch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PKCS#11 batch: %d credentials in %s (%.0f/s)", sum.Written, sum.Elapsed, sum.PerSecond)
	verifyBatch(t, n, s, out, 24)
	uris := map[string]bool{}
	err = ReadCredentials(out, func(c *Credential) error {
		if c.KeyURI == "" || len(c.WrappedKey) != 0 || uris[c.KeyURI] {
			t.Fatalf("credential %d: key URI %q, wrapped %d bytes", c.Index, c.KeyURI, len(c.WrappedKey))
		}
		uris[c.KeyURI] = true
		signer, err := hsm.Signer(ctx, c.KeyURI, keystore.PurposeDeviceIdentity)
		if err != nil {
			return err
		}
		cert, _ := x509.ParseCertificate(c.CertDER)
		if !signer.Public().(*ecdsa.PublicKey).Equal(cert.PublicKey) {
			t.Fatalf("credential %d: HSM key does not match the certificate", c.Index)
		}
		if _, err := hsm.Signer(ctx, c.KeyURI, keystore.PurposeCASigning); !errors.Is(err, keystore.ErrWrongPurpose) {
			t.Fatalf("device key usable as a CA key: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Inject(out, "HW-1", time.Now())
	if err != nil || got.KeyURI == "" || got.Custody != CustodyPKCS11 {
		t.Errorf("inject: %+v, %v", got, err)
	}

	// Injection with the key exported for the device: wrapped by the HSM under a transport key the device's
	// secure element holds (here: one the test knows), never in the clear.
	kek := []byte("fedcba9876543210fedcba9876543210")
	tk, err := hsm.ImportTransportKey(ctx, "transport", kek)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := HSMInjection(ctx, hsm, tk)
	if err != nil {
		t.Fatal(err)
	}
	// A wrap that fails records nothing: the next injection still gets credential 1.
	badOpts, _ := HSMInjection(ctx, hsm, s.CA.KeyURI)
	if _, err := InjectWith(out, "HW-2", time.Now(), badOpts); err == nil || !strings.Contains(err.Error(), "nothing was recorded") {
		t.Fatalf("inject with a CA key as transport key: %v", err)
	}
	if info, err := Show(out); err != nil || info.Injected != 1 {
		t.Fatalf("after a failed wrap: %+v, %v", info, err)
	}
	in, err := InjectWith(out, "HW-2", time.Now(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if in.Index != 1 || len(in.WrappedKey) == 0 || !strings.Contains(in.KeyWrap, tk) || !in.KeyReleased {
		t.Fatalf("wrapped injection: index %d, %d bytes, %q, released %v (%s)", in.Index, len(in.WrappedKey), in.KeyWrap, in.KeyReleased, in.ReleaseError)
	}
	// The device is now the key's only holder.
	if _, err := hsm.Signer(ctx, in.KeyURI, keystore.PurposeDeviceIdentity); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("the injected key is still in the HSM: %v", err)
	}
	pkcs8, err := pkcs11test.UnwrapRFC5649(kek, in.WrappedKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(in.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	if !key.(*ecdsa.PrivateKey).PublicKey.Equal(cert.PublicKey) {
		t.Fatal("the unwrapped key is not the certificate's")
	}
	// Software-wrapped batches are not HSM-wrapped.
	soft := filepath.Join(t.TempDir(), "soft.kwb")
	if _, err := f.Batch(ctx, BatchRequest{Env: "dev", Product: "demo-implant", Site: "site-a", Count: 2, FirstSerial: "DEMO-00000101", TransportKey: transport, Out: soft}); err != nil {
		t.Fatal(err)
	}
	if _, err := InjectWith(soft, "HW-3", time.Now(), opts); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("HSM wrap of a software-wrapped batch: %v", err)
	}
}

// registerDevice enrolls device cn at the headquarters n through a factory station of site "hq", so the
// registry holds it, and then applies state: store.DeviceSuspended or store.DeviceDecommissioned (or none).
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.Enroll(ctx, ra.Caller{Principal: ra.StationPrincipal(st.ID), Station: st, Environment: "dev"},
		ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: csr}); err != nil {
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

// TestBatchRefusesRegistry: a batch that would pre-issue a serial the registry holds as decommissioned or
// suspended is refused with the device's state and its kind, writes no file, reserves nothing, and leaves one
// audit event: the refusal.
func TestBatchRefusesRegistry(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	s := siteCA(t, f, n.Soft, "site-a", 100)
	registerDevice(t, n, "DEMO-00000004", store.DeviceDecommissioned)
	registerDevice(t, n, "DEMO-00000012", store.DeviceSuspended)
	dir := t.TempDir()
	for _, tc := range []struct {
		first string
		kind  ra.Kind
		msg   string
	}{
		{"DEMO-00000001", ra.KindConflict, "device DEMO-00000004 of dev/demo-implant was decommissioned"},
		{"DEMO-00000010", ra.KindForbidden, "device DEMO-00000012 of dev/demo-implant is suspended"},
	} {
		out := filepath.Join(dir, tc.first+".kwb")
		req := softBatch(out, 6)
		req.FirstSerial = tc.first
		before := auditEvents(t, n.Store)
		_, err := f.Batch(ctx, req)
		if ra.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("batch from %s: %v; want %v with %q", tc.first, err, tc.kind, tc.msg)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("batch from %s: the refused batch wrote %s (%v)", tc.first, out, err)
		}
		after := auditEvents(t, n.Store)
		if len(after) != len(before)+1 || after[len(after)-1].Action != audit.ActionBatchStart || after[len(after)-1].Outcome != audit.OutcomeRefused {
			t.Fatalf("batch from %s: %d audit events, then %d ending %+v; want the refusal only", tc.first, len(before), len(after), after[len(after)-1])
		}
		if fs, err := n.Store.GetFactorySite(ctx, s.CA.ID); err != nil || fs.Reserved != 0 {
			t.Fatalf("batch from %s: reserved %+v, %v; want nothing", tc.first, fs, err)
		}
	}
	// Past them, the batch runs.
	out := filepath.Join(dir, "ok.kwb")
	req := softBatch(out, 6)
	req.FirstSerial = "DEMO-00000013"
	if _, err := f.Batch(ctx, req); err != nil {
		t.Fatal(err)
	}
	verifyBatch(t, n, s, out, 6)
}

func auditEvents(t *testing.T, s store.Store) []*audit.Event {
	t.Helper()
	var out []*audit.Event
	if err := s.WalkAudit(context.Background(), 0, func(e *audit.Event) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}
