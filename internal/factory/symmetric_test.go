package factory

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/kbkdf"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/pkcs11"
	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// serverKey is what the server derives for device cn: the custodian's derivation, which 'keyward key derive'
// runs too.
func serverKey(t *testing.T, n *node.Node, kdk *ra.KDKView, cn string) []byte {
	t.Helper()
	k, err := n.CA.DeriveKey(context.Background(), kdk.URI, kbkdf.Device{Purpose: kdk.Purpose, Environment: "dev", ProductLine: "demo-implant",
		Serial: cn, KDKVersion: kdk.Version, Length: 32}, true)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newKDK(t *testing.T, f *Factory, ks keystore.Keystore, purpose string, rotate bool) *ra.KDKView {
	t.Helper()
	req := ra.KDKRequest{Environment: "dev", ProductLine: "demo-implant", Purpose: purpose, Keys: ks}
	op := f.RA.CreateKDK
	if rotate {
		op = f.RA.RotateKDK
	}
	v, err := op(context.Background(), admin, req)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBatchSymmetricSoft runs a software-custody batch with two symmetric purposes end to end: each device's
// keys, unsealed under its transport key at injection, equal the server's derivation; the export records the
// KDK versions and reconciliation records them in the key glossary; the online derivation for the reconciled
// device then gives the same key again.
func TestBatchSymmetricSoft(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", 100)
	dir := t.TempDir()

	req := softBatch(filepath.Join(dir, "refused.kwb"), 4)
	for _, c := range []struct {
		sym  []string
		kind error
		text string
	}{
		{[]string{"firmware-signing"}, ErrBadRequest, "unknown key-derivation purpose"},
		{[]string{"device-link", "device-link"}, ErrBadRequest, "twice"},
		{[]string{"device-link"}, nil, "no device-link key-derivation key"},
	} {
		req.Symmetric = c.sym
		_, err := f.Batch(ctx, req)
		if err == nil || (c.kind != nil && !errors.Is(err, c.kind)) || !strings.Contains(err.Error(), c.text) {
			t.Fatalf("--symmetric %v: %v", c.sym, err)
		}
	}

	link1 := newKDK(t, f, nil, "device-link", false)
	link2 := newKDK(t, f, nil, "device-link", true) // the batch takes the newest version
	storage := newKDK(t, f, nil, "device-storage", false)
	out := filepath.Join(dir, "batch.kwb")
	req = softBatch(out, 6)
	req.Symmetric, req.Checkpoint, req.StopAfter = []string{"device-link", "device-storage"}, 2, 2
	if _, err := f.Batch(ctx, req); !errors.Is(err, ErrStopped) {
		t.Fatal(err)
	}
	// A resume must ask for the same purposes.
	other := req
	other.Symmetric, other.StopAfter = []string{"device-link"}, 0
	if _, err := f.Batch(ctx, other); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "symmetric purposes") {
		t.Fatalf("resume with other purposes: %v", err)
	}
	req.StopAfter = 0
	if _, err := f.Batch(ctx, req); err != nil {
		t.Fatal(err)
	}
	info := verifyBatch(t, n, siteCA0(t, f), out, 6)
	if len(info.Header.Symmetric) != 2 || info.Header.Symmetric[0].Version != link2.Version || info.Header.Symmetric[1].URI != storage.URI {
		t.Fatalf("header symmetric %+v", info.Header.Symmetric)
	}

	for i := 0; i < 3; i++ {
		in, err := Inject(out, "HW-"+string(rune('A'+i)), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(in.Symmetric) != 2 {
			t.Fatalf("injected %d symmetric keys", len(in.Symmetric))
		}
		for j, kdk := range []*ra.KDKView{link2, storage} {
			s := in.Symmetric[j]
			if s.Purpose != kdk.Purpose || s.KDKVersion != kdk.Version {
				t.Fatalf("symmetric key %d: %+v", j, s)
			}
			key, err := UnwrapDeviceSecret(transport, in.BatchID, in.Index, in.CertSerial, s.Purpose, s.WrappedKey)
			if err != nil {
				t.Fatal(err)
			}
			if want := serverKey(t, n, kdk, in.CommonName); !bytes.Equal(key, want) {
				t.Fatalf("device %s %s key %x; the server derives %x", in.CommonName, s.Purpose, key, want)
			}
			if _, err := UnwrapDeviceSecret(transport, in.BatchID, in.Index, in.CertSerial, "device-storage", in.Symmetric[0].WrappedKey); err == nil {
				t.Fatal("a device-link key opens as a device-storage key")
			}
		}
	}
	if bytes.Equal(serverKey(t, n, link1, "DEMO-00000001"), serverKey(t, n, link2, "DEMO-00000001")) {
		t.Fatal("two KDK versions derive the same key")
	}

	x := filepath.Join(dir, "batch.kwx")
	export(t, f, out, x, false)
	if _, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x}, Env: "dev", Site: "site-a"}); err != nil {
		t.Fatal(err)
	}
	uri := ra.DerivedKeyURI("dev", "demo-implant", "DEMO-00000002", "device-link", link2.Version)
	if k, err := n.Store.GetKey(ctx, uri); err != nil || k.State != store.KeyActive || k.Location != "device" {
		t.Fatalf("reconciled symmetric key %s: %+v, %v", uri, k, err)
	}
	// The repair depot's derivation for the reconciled device: the same key, from the version it received.
	d, err := n.RA.DeriveDeviceKey(ctx, admin, ra.DeriveRequest{Device: ra.DeviceRef{Serial: "DEMO-00000002"}, Purpose: "device-link",
		Wrap: func(k []byte) ([]byte, string, error) { return bytes.Clone(k), "test", nil }})
	if err != nil || d.New || d.KDKVersion != link2.Version || !bytes.Equal(d.Wrapped, serverKey(t, n, link2, "DEMO-00000002")) {
		t.Fatalf("derive after reconciliation: %+v, %v", d, err)
	}
}

// siteCA0 returns the site CA of site-a.
func siteCA0(t *testing.T, f *Factory) *ra.SiteCA {
	t.Helper()
	s, err := f.RA.FactorySite(context.Background(), "dev", "demo-implant", "site-a")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBatchSymmetricPKCS11: the KDK is in the site HSM; the batch names the version, and injection derives the
// key in the HSM (CKM_SHA256_HMAC) and wraps it there under the transport key (RFC 5649); the device's key,
// unwrapped, equals the server's derivation.
func TestBatchSymmetricPKCS11(t *testing.T) {
	ctx := context.Background()
	token := pkcs11test.NewToken(t)
	n, f := newNode(t)
	hsm, err := pkcs11.Open(token)
	if err != nil {
		t.Fatal(err)
	}
	n.Keys.Add(hsm)
	siteCA(t, f, hsm, "site-a", 100)
	out := filepath.Join(t.TempDir(), "batch.kwb")
	req := BatchRequest{Env: "dev", Product: "demo-implant", Site: "site-a", Count: 3, FirstSerial: "DEMO-00000001", Custody: hsm, Out: out,
		Symmetric: []string{"device-link"}}

	soft := newKDK(t, f, nil, "device-link", false)
	if _, err := f.Batch(ctx, req); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "not in the batch's HSM") {
		t.Fatalf("batch with a KDK outside the HSM: %v", err)
	}
	kdk := newKDK(t, f, hsm, "device-link", true)
	if !strings.HasPrefix(kdk.URI, "pkcs11:") || kdk.Version != soft.Version+1 {
		t.Fatalf("HSM KDK %+v", kdk)
	}
	if _, err := f.Batch(ctx, req); err != nil {
		t.Fatal(err)
	}
	kek := []byte("fedcba9876543210fedcba9876543210")
	tk, err := hsm.ImportTransportKey(ctx, "transport", kek)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := HSMInjection(ctx, hsm, tk)
	if err != nil {
		t.Fatal(err)
	}
	in, err := InjectWith(out, "HW-1", time.Now(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Symmetric) != 1 || in.Symmetric[0].KDKVersion != kdk.Version || !strings.Contains(in.Symmetric[0].KeyWrap, tk) {
		t.Fatalf("injected %+v", in.Symmetric)
	}
	key, err := pkcs11test.UnwrapRFC5649(kek, in.Symmetric[0].WrappedKey)
	if err != nil {
		t.Fatal(err)
	}
	if want := serverKey(t, n, kdk, in.CommonName); !bytes.Equal(key, want) {
		t.Fatalf("device key %x; the server derives %x", key, want)
	}
	// The repair depot: after reconciliation, the online derivation, wrapped by the HSM under the transport key,
	// unwraps to the key the device got.
	x := filepath.Join(t.TempDir(), "batch.kwx")
	export(t, f, out, x, false)
	if _, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x}, Env: "dev", Site: "site-a"}); err != nil {
		t.Fatal(err)
	}
	d, err := n.RA.DeriveDeviceKey(ctx, admin, ra.DeriveRequest{Device: ra.DeviceRef{Serial: in.CommonName}, Purpose: "device-link",
		Wrap: func(k []byte) ([]byte, string, error) { return hsm.WrapSecret(ctx, k, tk) }})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := pkcs11test.UnwrapRFC5649(kek, d.Wrapped); err != nil || !bytes.Equal(again, key) || d.KDKVersion != kdk.Version {
		t.Fatalf("online derivation unwraps to %x (%v), version %d; the device got %x", again, err, d.KDKVersion, key)
	}
	// The KDK never leaves the token: it is sensitive and cannot be wrapped out even under the transport key.
	if _, err := hsm.WrapKey(ctx, kdk.URI, tk); err == nil {
		t.Fatal("the HSM exported the KDK")
	}
}

// TestSiteBatchSymmetric: a site package carries the product line's KDK versions held with the site CA's key;
// a batch at the site derives with them, and headquarters, after reconciling the site's export, derives the
// same key for the device. A version made after packaging is not at the site.
func TestSiteBatchSymmetric(t *testing.T) {
	ctx := context.Background()
	hq, hqF := newNode(t)
	kdk := newKDK(t, hqF, nil, "device-storage", false)
	s := packageSite(t, ctx, hq, hqF, "site-k", 50)
	got, err := s.site.RA.ListKDKs(ctx, "", "", "")
	if err != nil || len(got) != 1 || got[0].URI != kdk.URI || got[0].State != store.KeyActive {
		t.Fatalf("site KDKs %+v, %v", got, err)
	}
	newKDK(t, hqF, nil, "device-storage", true) // version 2, at headquarters only

	out := filepath.Join(t.TempDir(), "site.kwb")
	req := BatchRequest{Env: "dev", Product: "demo-implant", Site: "site-k", Count: 2, FirstSerial: "DEMO-00000001", TransportKey: transport, Out: out,
		Symmetric: []string{"device-storage"}}
	if _, err := s.siteF.Batch(ctx, req); err != nil {
		t.Fatal(err)
	}
	in, err := Inject(out, "HW-K1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := UnwrapDeviceSecret(transport, in.BatchID, in.Index, in.CertSerial, "device-storage", in.Symmetric[0].WrappedKey)
	if err != nil {
		t.Fatal(err)
	}
	x := filepath.Join(t.TempDir(), "site.kwx")
	if _, err := s.siteF.Export(ctx, ExportRequest{Batch: out, Out: x}); err != nil {
		t.Fatal(err)
	}
	if _, err := hqF.Reconcile(ctx, ReconcileRequest{Files: []string{x}, Env: "dev", Site: "site-k"}); err != nil {
		t.Fatal(err)
	}
	d, err := hq.RA.DeriveDeviceKey(ctx, admin, ra.DeriveRequest{Device: ra.DeviceRef{Serial: in.CommonName}, Purpose: "device-storage",
		Wrap: func(k []byte) ([]byte, string, error) { return bytes.Clone(k), "test", nil }})
	if err != nil || d.KDKVersion != 1 || d.New || !bytes.Equal(d.Wrapped, key) {
		t.Fatalf("headquarters' derivation %+v, %v; the device got %x", d, err, key)
	}
}
