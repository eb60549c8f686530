package factory

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/pkcs11"
	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storetest"
	"github.com/keyward/keyward/pkg/revocation/filter"
)

// newNodeDB is newNode on the database db ("" for SQLite in the data directory).
func newNodeDB(t testing.TB, db string) (*node.Node, *Factory) {
	t.Helper()
	n, _, err := node.Init(context.Background(), node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "data"), DB: db, Warn: io.Discard}, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, &Factory{RA: n.RA, CA: n.CA, Principal: admin}
}

// injectN binds the next n credentials of the batch at path to devices HW-<from>...
func injectN(t testing.TB, path string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := Inject(path, fmt.Sprintf("HW-%05d", i), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

func export(t testing.TB, f *Factory, batch, out string, final bool) *ExportSummary {
	t.Helper()
	sum, err := f.Export(context.Background(), ExportRequest{Batch: batch, Out: out, Final: final})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// snapshot is what a refused reconciliation must leave unchanged.
type snapshot struct{ audit, certs, devices, keys, batches int }

func snap(t testing.TB, n *node.Node, batchIDs ...string) snapshot {
	t.Helper()
	ctx := context.Background()
	var s snapshot
	if err := n.Store.WalkAudit(ctx, 0, func(*audit.Event) error { s.audit++; return nil }); err != nil {
		t.Fatal(err)
	}
	certs, err := n.Store.ListCertificates(ctx, store.CertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := n.Store.ListDevices(ctx, store.DeviceFilter{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := n.Store.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.certs, s.devices, s.keys = len(certs), len(devs), len(keys)
	for _, id := range batchIDs {
		if b, err := n.Store.GetFactoryBatch(ctx, id); err == nil {
			s.batches += int(b.LastSeq)*1000 + int(b.Injected)
		}
	}
	return s
}

// reconcileHappyPath runs the whole flow on n: a batch of 200, 60 injected and reconciled, 60 more injected,
// the batch closed with a final export and reconciled with --final, then replays refused.
func reconcileHappyPath(t *testing.T, n *node.Node, f *Factory) {
	ctx := context.Background()
	siteCA(t, f, n.Soft, "site-a", 1000)
	dir := t.TempDir()
	batch := filepath.Join(dir, "batch.kwb")
	if _, err := f.Batch(ctx, softBatch(batch, 200)); err != nil {
		t.Fatal(err)
	}
	certsBefore := snap(t, n).certs

	injectN(t, batch, 0, 60)
	x1 := filepath.Join(dir, "site-export-1.kwx")
	s1 := export(t, f, batch, x1, false)
	if s1.Seq != 1 || s1.Records != 60 || s1.Unused != 0 {
		t.Fatalf("first export %+v", s1)
	}
	if _, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x1}, Final: true, AttestedBy: "QA"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("--final with a non-final export: %v", err)
	}
	res, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x1}, Env: "dev", Site: "site-a"})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Devices != 60 || r.Certificates != 60 || r.Revoked != 0 {
		t.Fatalf("first reconcile %+v", r)
	}

	injectN(t, batch, 60, 60)
	x2 := filepath.Join(dir, "site-export-2.kwx")
	s2 := export(t, f, batch, x2, true)
	if s2.Seq != 2 || s2.Injected != 120 || s2.Unused != 80 || s2.Records != 200 {
		t.Fatalf("final export %+v", s2)
	}
	before := snap(t, n, s2.BatchID)
	if _, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x2}}); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "--final") {
		t.Errorf("final export without --final: %v", err)
	}
	if _, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x2}, Final: true}); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "--attested-by") {
		t.Errorf("final without a destruction method: %v", err)
	}
	if after := snap(t, n, s2.BatchID); after != before {
		t.Fatalf("refusals stored something: %+v -> %+v", before, after)
	}
	res, err = f.Reconcile(ctx, ReconcileRequest{Files: []string{x2}, Final: true, AttestedBy: "QA destruction record 17"})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Devices != 60 || r.Certificates != 140 || r.Revoked != 80 || r.KeysDestroyed != 80 || r.Destruction != "attested" {
		t.Fatalf("final reconcile %+v", r)
	}

	// The registry holds exactly the 120 injected devices, each with its credential's certificate.
	devs, err := n.Store.ListDevices(ctx, store.DeviceFilter{Environment: "dev", ProductLine: "demo-implant"})
	if err != nil {
		t.Fatal(err)
	}
	injected := map[string]string{} // CN -> cert serial
	var idx int64
	if err := ReadCredentials(batch, func(c *Credential) error {
		if idx < 120 {
			injected[c.DeviceCN] = c.CertSerial
		}
		idx++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(devs) != 120 {
		t.Fatalf("registry has %d devices, want 120", len(devs))
	}
	for _, d := range devs {
		if injected[d.Serial] != d.CertSerial || d.Site != "site-a" || d.StationID != "batch:"+s2.BatchID || d.State != store.DeviceActive {
			t.Errorf("device %+v is not an injected credential", d)
		}
	}
	// 200 certificates under the site CA: 120 valid, 80 revoked with cessationOfOperation, keys destroyed.
	certs, err := n.Store.ListCertificates(ctx, store.CertFilter{IssuerID: ra.SiteCAID("dev", "demo-implant", "site-a")})
	if err != nil {
		t.Fatal(err)
	}
	if got := snap(t, n).certs - certsBefore; len(certs) != 200 || got != 200 {
		t.Fatalf("%d certificates of the site CA (%d new), want 200", len(certs), got)
	}
	var valid, revoked int
	for _, c := range certs {
		switch {
		case c.Status == store.CertStatusValid && injected[strings.TrimPrefix(c.Subject, "CN=")] == c.Serial:
			valid++
		case c.Status == store.CertStatusRevoked && c.RevocationReason == store.ReasonCessationOfOperation:
			revoked++
		default:
			t.Errorf("certificate %s %s status %s reason %d", c.Serial, c.Subject, c.Status, c.RevocationReason)
		}
	}
	if valid != 120 || revoked != 80 {
		t.Errorf("%d valid and %d revoked, want 120 and 80", valid, revoked)
	}
	keys, err := n.Store.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var destroyed, active int
	for _, k := range keys {
		if k.Purpose != string(keystore.PurposeDeviceIdentity) {
			continue
		}
		switch {
		case k.State == store.KeyDestroyed && k.DestroyedAt != nil:
			destroyed++
		case k.State == store.KeyActive && k.Location == string(keystore.LocationDevice):
			active++
		}
	}
	if destroyed != 80 || active != 120 {
		t.Errorf("device keys: %d destroyed, %d active on devices; want 80 and 120", destroyed, active)
	}
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}

	// The product line's offline revocation filter answers exactly for the site CA's credentials too.
	svc := revocation.New(n.RA, n.CA, n.Store)
	fr, err := svc.BuildFilter(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, revocation.FilterRequest{Environment: "dev", Product: "demo-implant"})
	if err != nil {
		t.Fatal(err)
	}
	root, err := n.Store.GetCA(ctx, "dev/root")
	if err != nil {
		t.Fatal(err)
	}
	rootCert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(rootCert)
	flt, err := filter.Verify(fr.Data, filter.VerifyOptions{Roots: roots, Environment: "dev", Scope: "demo-implant"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		serial, _ := new(big.Int).SetString(c.Serial, 16)
		if got, want := flt.Revoked(serial), c.Status == store.CertStatusRevoked; got != want {
			t.Errorf("filter says revoked=%v for site credential %s (status %s)", got, c.Serial, c.Status)
		}
	}

	// A device provisioned from the batch can be decommissioned: its site-CA certificate is revoked.
	var one string
	for sn := range injected {
		one = sn
		break
	}
	dres, err := n.RA.Decommission(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.DecommissionRequest{
		Device: ra.DeviceRef{Environment: "dev", ProductLine: "demo-implant", Serial: one}, AttestedBy: "QA"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dres.Revoked) != 1 || dres.Revoked[0] != injected[one] {
		t.Fatalf("decommission of batch device %s revoked %v, want its certificate %s", one, dres.Revoked, injected[one])
	}

	// Bulk revocation by batch selects exactly the batch's recorded devices that are still valid.
	bres, err := n.RA.Bulk(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.BulkRequest{
		Registry: ra.RegistrySelector{Batch: s2.BatchID}, Reason: store.ReasonCessationOfOperation, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if bres.Matched-bres.AlreadyRevoked != 119 {
		t.Fatalf("bulk by batch (dry run): matched %d, already revoked %d; want 119 still valid", bres.Matched, bres.AlreadyRevoked)
	}
	// By site: the batch's devices are the site's (no station of site-a enrolled any other here).
	sres, err := n.RA.Bulk(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.BulkRequest{
		Registry: ra.RegistrySelector{Site: "site-a"}, Reason: store.ReasonCessationOfOperation, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if sres.Matched != bres.Matched || sres.AlreadyRevoked != bres.AlreadyRevoked {
		t.Fatalf("bulk by site (dry run): matched %d, already revoked %d; by batch %d, %d", sres.Matched, sres.AlreadyRevoked, bres.Matched, bres.AlreadyRevoked)
	}

	// Replays: both exports again, and nothing changes.
	before = snap(t, n, s2.BatchID)
	for _, x := range []string{x1, x2} {
		if _, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x}, Final: x == x2, AttestedBy: "QA"}); !errors.Is(err, ErrReplay) {
			t.Errorf("replay of %s: %v", filepath.Base(x), err)
		}
	}
	if after := snap(t, n, s2.BatchID); after != before {
		t.Fatalf("replay stored something: %+v -> %+v", before, after)
	}
}

func TestReconcile(t *testing.T) {
	n, f := newNode(t)
	reconcileHappyPath(t, n, f)
}

func TestReconcilePostgres(t *testing.T) {
	n, f := newNodeDB(t, storetest.PostgresDSN(t))
	reconcileHappyPath(t, n, f)
}

// frame is one frame of an export, for tampering.
type frame struct {
	typ     byte
	payload []byte
}

func readFrames(t testing.TB, path string) []frame {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = data[len(exportMagic):]
	var out []frame
	for len(data) > 0 {
		ln := binary.BigEndian.Uint32(data[1:5])
		out = append(out, frame{data[0], bytes.Clone(data[5 : 5+ln])})
		data = data[5+ln+4:]
	}
	return out
}

func writeFrames(t testing.TB, path string, frames []frame) {
	t.Helper()
	buf := []byte(exportMagic)
	var err error
	for _, fr := range frames {
		if buf, err = appendRawFrame(buf, fr.typ, fr.payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
}

func editRecord(t testing.TB, fr *frame, fn func(*ExportRecord)) {
	t.Helper()
	var r ExportRecord
	if err := json.Unmarshal(fr.payload, &r); err != nil {
		t.Fatal(err)
	}
	fn(&r)
	p, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	fr.payload = p
}

func TestReconcileRefuses(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", 1000)
	siteCA(t, f, n.Soft, "site-b", 1000)
	dir := t.TempDir()
	batch := filepath.Join(dir, "a.kwb")
	if _, err := f.Batch(ctx, softBatch(batch, 20)); err != nil {
		t.Fatal(err)
	}
	injectN(t, batch, 0, 12)
	good := filepath.Join(dir, "a.kwx")
	sum := export(t, f, batch, good, false)

	other := filepath.Join(dir, "b.kwb")
	ob := softBatch(other, 10)
	ob.Site, ob.FirstSerial = "site-b", "DEMO-00500001"
	if _, err := f.Batch(ctx, ob); err != nil {
		t.Fatal(err)
	}
	injectN(t, other, 100, 5)
	otherX := filepath.Join(dir, "b.kwx")
	export(t, f, other, otherX, false)

	// A data directory with its own root and its own site-a knows nothing of this one's.
	n2, f2 := newNode(t)
	siteCA(t, f2, n2.Soft, "site-a", 1000)

	tamper := func(name string, fn func([]frame) []frame) string {
		frames := fn(readFrames(t, good))
		p := filepath.Join(dir, name+".kwx")
		writeFrames(t, p, frames)
		return p
	}
	cases := []struct {
		name string
		file func() string
		req  func(*ReconcileRequest)
		g    *Factory
		want error
		msg  string
	}{
		{name: "reordered record", want: ErrTampered, msg: "record 4 at position 3", file: func() string {
			return tamper("reordered", func(fr []frame) []frame { fr[4], fr[5] = fr[5], fr[4]; return fr })
		}},
		{name: "removed record", want: ErrTampered, msg: "record 3 was removed", file: func() string {
			return tamper("removed", func(fr []frame) []frame { return append(fr[:4], fr[5:]...) })
		}},
		{name: "removed last record", want: ErrTampered, msg: "removed from the end", file: func() string {
			return tamper("removed-last", func(fr []frame) []frame { return append(fr[:12], fr[13:]...) })
		}},
		{name: "duplicated record", want: ErrTampered, msg: "duplicate", file: func() string {
			return tamper("duplicated", func(fr []frame) []frame { return append(fr[:5], append([]frame{fr[4]}, fr[5:]...)...) })
		}},
		{name: "altered record", want: ErrTampered, msg: "record 5 does not match its chain hash", file: func() string {
			return tamper("altered", func(fr []frame) []frame {
				editRecord(t, &fr[6], func(r *ExportRecord) { r.DeviceSerial = "HW-EVIL" })
				return fr
			})
		}},
		{name: "altered record, chain recomputed", want: ErrTampered, msg: "does not verify", file: func() string {
			return tamper("rechained", func(fr []frame) []frame {
				var h ExportHeader
				_ = json.Unmarshal(fr[0].payload, &h)
				prev := chainGenesis(&h)
				for i := 1; i <= 12; i++ {
					editRecord(t, &fr[i], func(r *ExportRecord) {
						if r.Index == 5 {
							r.DeviceSerial = "HW-EVIL"
						}
						r.Hash = recordHash(prev, r)
						prev = r.Hash
					})
				}
				var s ExportSignature
				_ = json.Unmarshal(fr[13].payload, &s)
				s.Head = prev
				fr[13].payload, _ = json.Marshal(&s)
				return fr
			})
		}},
		{name: "altered header", want: ErrTampered, msg: "does not verify", file: func() string {
			return tamper("header", func(fr []frame) []frame {
				var h ExportHeader
				_ = json.Unmarshal(fr[0].payload, &h)
				h.Seq = 99
				fr[0].payload, _ = json.Marshal(&h)
				return fr
			})
		}},
		{name: "truncated mid-frame", want: ErrTampered, msg: "truncated", file: func() string {
			data, _ := os.ReadFile(good)
			p := filepath.Join(dir, "cut.kwx")
			_ = os.WriteFile(p, data[:len(data)*2/3], 0o600)
			return p
		}},
		{name: "truncated signature", want: ErrTampered, msg: "no signature", file: func() string {
			return tamper("nosig", func(fr []frame) []frame { return fr[:13] })
		}},
		{name: "bad signature", want: ErrTampered, msg: "does not verify", file: func() string {
			return tamper("badsig", func(fr []frame) []frame {
				var s ExportSignature
				_ = json.Unmarshal(fr[13].payload, &s)
				s.Signature[len(s.Signature)-3] ^= 1
				fr[13].payload, _ = json.Marshal(&s)
				return fr
			})
		}},
		{name: "byte flipped", want: ErrTampered, msg: "checksum", file: func() string {
			data, _ := os.ReadFile(good)
			data[len(data)/2] ^= 0x40
			p := filepath.Join(dir, "flip.kwx")
			_ = os.WriteFile(p, data, 0o600)
			return p
		}},
		{name: "another site's export", want: ErrForeign, msg: `site "site-b", not "site-a"`, file: func() string { return otherX },
			req: func(r *ReconcileRequest) { r.Site = "site-a" }},
		{name: "another environment", want: ErrForeign, msg: `environment "dev", not "prod"`, file: func() string { return good },
			req: func(r *ReconcileRequest) { r.Env = "prod" }},
		{name: "another site's signer", want: ErrTampered, msg: "export signer", file: func() string {
			// site-b's export relabelled as site-a's: the signer certificate is site-b's.
			return tamper("relabelled", func([]frame) []frame {
				fr := readFrames(t, otherX)
				var h ExportHeader
				_ = json.Unmarshal(fr[0].payload, &h)
				h.Site, h.SiteCA = "site-a", ra.SiteCAID("dev", "demo-implant", "site-a")
				a, _ := n.Store.GetCA(ctx, h.SiteCA)
				h.SiteCASHA256 = sha256Hex(a.CertDER)
				fr[0].payload, _ = json.Marshal(&h)
				prev := chainGenesis(&h)
				for i := 1; i < len(fr)-1; i++ {
					editRecord(t, &fr[i], func(r *ExportRecord) { r.Hash = recordHash(prev, r); prev = r.Hash })
				}
				var s ExportSignature
				_ = json.Unmarshal(fr[len(fr)-1].payload, &s)
				s.Head = prev
				fr[len(fr)-1].payload, _ = json.Marshal(&s)
				return fr
			})
		}},
		{name: "another data directory", want: ErrForeign, msg: "is not the dev/demo-implant/site-a recorded here", file: func() string { return good }, g: f2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, gn := f, n
			if tc.g != nil {
				g, gn = tc.g, n2
			}
			before := snap(t, gn, sum.BatchID)
			req := ReconcileRequest{Files: []string{tc.file()}}
			if tc.req != nil {
				tc.req(&req)
			}
			_, err := g.Reconcile(ctx, req)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
			if after := snap(t, gn, sum.BatchID); after != before {
				t.Fatalf("refused export stored something: %+v -> %+v", before, after)
			}
		})
	}

	// The untouched export reconciles, once.
	if _, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{good}}); err != nil {
		t.Fatal(err)
	}
	before := snap(t, n, sum.BatchID)
	if _, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{good}}); !errors.Is(err, ErrReplay) || !strings.Contains(err.Error(), "export 1 of batch") {
		t.Errorf("replay: %v", err)
	}
	if after := snap(t, n, sum.BatchID); after != before {
		t.Fatalf("replay stored something: %+v -> %+v", before, after)
	}
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}
}

// TestReconcilePKCS11 closes a batch whose keys are in the site HSM: reconciliation destroys the unused ones
// there.
func TestReconcilePKCS11(t *testing.T) {
	ctx := context.Background()
	token := pkcs11test.NewToken(t)
	n, f := newNode(t)
	hsm, err := pkcs11.Open(token)
	if err != nil {
		t.Fatal(err)
	}
	n.Keys.Add(hsm)
	siteCA(t, f, hsm, "site-a", 100)
	dir := t.TempDir()
	batch := filepath.Join(dir, "batch.kwb")
	if _, err := f.Batch(ctx, BatchRequest{Env: "dev", Product: "demo-implant", Site: "site-a", Count: 10, FirstSerial: "DEMO-00000001", Custody: hsm, Out: batch}); err != nil {
		t.Fatal(err)
	}
	injectN(t, batch, 0, 4)
	x := filepath.Join(dir, "final.kwx")
	export(t, f, batch, x, true)
	res, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x}, Final: true, Keys: hsm})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Devices != 4 || r.Revoked != 6 || r.KeysDestroyed != 6 || r.Destruction != "site-hsm" {
		t.Fatalf("reconcile %+v", r)
	}
	var i int
	err = ReadCredentials(batch, func(c *Credential) error {
		_, err := hsm.Signer(ctx, c.KeyURI, keystore.PurposeDeviceIdentity)
		if gone := errors.Is(err, keystore.ErrNotFound); gone != (i >= 4) {
			t.Errorf("credential %d: key in the HSM after reconcile: %v", i, err)
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReconcileDecommissioned: a record whose device the registry holds as decommissioned is refused saying so,
// not as a mere duplicate — its serial is never certified again — for a batch's injection log and for a site's
// issuance log alike, and the refused export stores nothing.
func TestReconcileDecommissioned(t *testing.T) {
	ctx := context.Background()
	t.Run("batch", func(t *testing.T) {
		n, f := newNode(t)
		siteCA(t, f, n.Soft, "site-a", 1000)
		dir := t.TempDir()
		batch := filepath.Join(dir, "a.kwb")
		if _, err := f.Batch(ctx, softBatch(batch, 10)); err != nil {
			t.Fatal(err)
		}
		injectN(t, batch, 0, 4)
		x := filepath.Join(dir, "a.kwx")
		sum := export(t, f, batch, x, false)
		// Meanwhile headquarters enrolled a device of the batch's serial itself, and decommissioned it.
		registerDevice(t, n, "DEMO-00000003", store.DeviceDecommissioned)
		before := snap(t, n, sum.BatchID)
		_, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x}})
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "record 2: device DEMO-00000003 of dev/demo-implant was decommissioned") ||
			strings.Contains(err.Error(), "registered already") {
			t.Fatalf("got %v, want a conflict saying DEMO-00000003 is decommissioned", err)
		}
		if after := snap(t, n, sum.BatchID); after != before {
			t.Fatalf("refused export stored something: %+v -> %+v", before, after)
		}
	})
	t.Run("site log", func(t *testing.T) {
		s := newSiteFixture(t, "site-a", 6)
		for _, cn := range []string{"DEMO-30000001", "DEMO-30000002"} {
			if err := s.enroll(t, cn); err != nil {
				t.Fatal(err)
			}
		}
		log := s.export(t, "log.kwx")
		registerDevice(t, s.hq, "DEMO-30000002", store.DeviceDecommissioned)
		before := snap(t, s.hq, SiteLogID("dev/demo-implant/site-a"))
		_, err := s.hqF.Reconcile(ctx, ReconcileRequest{Files: []string{log}, Env: "dev", Site: "site-a"})
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "record 1: device DEMO-30000002 of dev/demo-implant was decommissioned") {
			t.Fatalf("got %v, want a conflict saying DEMO-30000002 is decommissioned", err)
		}
		if after := snap(t, s.hq, SiteLogID("dev/demo-implant/site-a")); after != before {
			t.Fatalf("refused export stored something: %+v -> %+v", before, after)
		}
	})
}
