package factory

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storetest"
)

// appendInjections binds credentials from..from+n-1 of the complete batch at path to devices serial(i)
// (HW-<index> if serial is nil) by appending injection frames as Inject does. Inject rescans the whole file
// per call, which is too slow for batches of tens of thousands, and refuses a device serial twice, which a
// test of the reconciliation's own check needs.
func appendInjections(t testing.TB, path string, from, n int64, serial func(int64) string) {
	t.Helper()
	if serial == nil {
		serial = func(i int64) string { return fmt.Sprintf("HW-%08d", i) }
	}
	var buf []byte
	at := time.Now().UTC()
	for i := from; i < from+n; i++ {
		var err error
		if buf, err = appendFrame(buf, frameInjection, &Injection{Index: i, DeviceSerial: serial(i), At: at}); err != nil {
			t.Fatal(err)
		}
	}
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.Write(buf); err != nil {
		t.Fatal(err)
	}
}

// bigBatch issues a software-custody batch of count credentials at path and injects the first injected.
func bigBatch(t testing.TB, f *Factory, path string, count, injected int64) {
	t.Helper()
	req := softBatch(path, count)
	req.Checkpoint = 4096
	if _, err := f.Batch(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	appendInjections(t, path, 0, injected, nil)
}

// peakHeap runs fn and returns the highest heap in use while it ran above the heap in use before it, sampled
// every millisecond. The collector runs at GOGC=10 meanwhile, so the figure is close to the live heap rather
// than to garbage the collector has not reached yet.
func peakHeap(fn func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var m runtime.MemStats
		peak := base
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapAlloc)
			}
		}
	}()
	fn()
	close(stop)
	return <-done - base
}

// TestReconcileMemory reconciles a final export of 20,000 records and requires the heap to grow by less than
// 10 MiB meanwhile, 512 bytes a record: less than one record's certificate and JSON, so an implementation
// that holds the records cannot pass. The one before the streaming reader held every record and every parsed
// certificate and peaked at 67 MiB here (about 3.4 KB a record); the streaming one holds 8 bytes per injected
// record during the first pass and peaks at about 3 MiB, mostly the readers' buffers. Export is held to the
// same bound.
func TestReconcileMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("issues a batch of 20,000 credentials")
	}
	const (
		count, injected = 20000, 12000
		bound           = count * 512
	)
	ctx := context.Background()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", count)
	dir := t.TempDir()
	batch := filepath.Join(dir, "batch.kwb")
	bigBatch(t, f, batch, count, injected)
	x := filepath.Join(dir, "final.kwx")
	exp := peakHeap(func() { export(t, f, batch, x, true) })
	var (
		res []*ReconcileResult
		err error
	)
	rec := peakHeap(func() {
		res, err = f.Reconcile(ctx, ReconcileRequest{Files: []string{x}, Final: true, AttestedBy: "QA"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Certificates != count || r.Devices != injected || r.Revoked != count-injected {
		t.Fatalf("reconcile %+v", r)
	}
	t.Logf("%d records: export peak heap %.1f MiB, reconcile peak heap %.1f MiB (bound %.1f MiB)", count, mib(exp), mib(rec), mib(bound))
	if rec > bound {
		t.Errorf("reconcile grew the heap by %.1f MiB for %d records (%d bytes a record); want under %.1f MiB", mib(rec), count, rec/count, mib(bound))
	}
	if exp > bound {
		t.Errorf("export grew the heap by %.1f MiB for %d records (%d bytes a record); want under %.1f MiB", mib(exp), count, exp/count, mib(bound))
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// txHookStore runs beforeTx once, before the first transaction: in Reconcile, after OpenExport verified the
// file and before the records are read again.
type txHookStore struct {
	store.Store
	beforeTx func()
}

func (s *txHookStore) Tx(ctx context.Context, fn func(store.Tx) error) error {
	if s.beforeTx != nil {
		s.beforeTx()
		s.beforeTx = nil
	}
	return s.Store.Tx(ctx, fn)
}

// rechain recomputes the chain of frames (header, records, signature) after an edit, and the signed head;
// the signature itself stays the old one.
func rechain(t testing.TB, fr []frame) []frame {
	t.Helper()
	var h ExportHeader
	if err := json.Unmarshal(fr[0].payload, &h); err != nil {
		t.Fatal(err)
	}
	prev := chainGenesis(&h)
	for i := 1; i < len(fr)-1; i++ {
		editRecord(t, &fr[i], func(r *ExportRecord) { r.Hash = recordHash(prev, r); prev = r.Hash })
	}
	var s ExportSignature
	if err := json.Unmarshal(fr[len(fr)-1].payload, &s); err != nil {
		t.Fatal(err)
	}
	s.Head = prev
	fr[len(fr)-1].payload, _ = json.Marshal(&s)
	return fr
}

// TestReconcileChangedBetweenPasses changes the export file after it was verified and before its records are
// read again inside the transaction: every change is refused as tampering and stores nothing, also when the
// changed record would have been refused for itself. A file replaced by another (a new inode) does not
// affect the reconciliation, which reads the file it verified.
func TestReconcileChangedBetweenPasses(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", 1000)
	dir := t.TempDir()
	batch := filepath.Join(dir, "a.kwb")
	if _, err := f.Batch(ctx, softBatch(batch, 20)); err != nil {
		t.Fatal(err)
	}
	injectN(t, batch, 0, 12)
	good := filepath.Join(dir, "a.kwx")
	sum := export(t, f, batch, good, false)
	goodData, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(fr []frame) []byte {
		buf := []byte(exportMagic)
		for _, x := range fr {
			if buf, err = appendRawFrame(buf, x.typ, x.payload); err != nil {
				t.Fatal(err)
			}
		}
		return buf
	}

	cases := []struct {
		name   string
		change func() []byte // the file's new content
		msg    string
	}{
		{"record altered, chain recomputed", func() []byte {
			fr := readFrames(t, good)
			editRecord(t, &fr[6], func(r *ExportRecord) { r.DeviceSerial = "HW-EVIL" })
			return encode(rechain(t, fr))
		}, "the file changed after it was verified"},
		{"certificate swapped, chain recomputed", func() []byte {
			// Record 3 gets record 4's certificate: a record the site's rules refuse, but the refusal is not
			// the site's doing.
			fr := readFrames(t, good)
			var r4 ExportRecord
			_ = json.Unmarshal(fr[5].payload, &r4)
			editRecord(t, &fr[4], func(r *ExportRecord) { r.CertDER = r4.CertDER })
			return encode(rechain(t, fr))
		}, "the file changed after it was verified"},
		{"record altered", func() []byte {
			fr := readFrames(t, good)
			editRecord(t, &fr[6], func(r *ExportRecord) { r.DeviceSerial = "HW-EVIL" })
			return encode(fr)
		}, "record 5 does not match its chain hash"},
		{"byte flipped", func() []byte {
			d := bytes.Clone(goodData)
			d[len(d)/2] ^= 0x40
			return d
		}, "checksum"},
		{"truncated", func() []byte { return goodData[:len(goodData)-10] }, "truncated"},
		{"appended", func() []byte {
			return append(bytes.Clone(goodData), encode(readFrames(t, good)[1:2])[len(exportMagic):]...)
		}, "after the signature"},
		{"header re-encoded", func() []byte {
			fr := readFrames(t, good)
			fr[0].payload = append([]byte(" "), fr[0].payload...)
			return encode(fr)
		}, "header changed"},
		{"signature re-encoded", func() []byte {
			fr := readFrames(t, good)
			fr[len(fr)-1].payload = append([]byte(" "), fr[len(fr)-1].payload...)
			return encode(fr)
		}, "the file changed after it was verified"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.kwx")
			if err := os.WriteFile(path, goodData, 0o600); err != nil {
				t.Fatal(err)
			}
			g := withRA(t, n, f, func(c *ra.Config) {
				c.Store = &txHookStore{Store: n.Store, beforeTx: func() {
					// In place: the same file, which OpenExport holds open.
					if err := os.WriteFile(path, tc.change(), 0o600); err != nil {
						t.Fatal(err)
					}
				}}
			})
			before := snap(t, n, sum.BatchID)
			_, err := g.Reconcile(ctx, ReconcileRequest{Files: []string{path}})
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "changed after it was verified") {
				t.Fatalf("got %v, want ErrTampered with %q", err, tc.msg)
			}
			if after := snap(t, n, sum.BatchID); after != before {
				t.Fatalf("refused export stored something: %+v -> %+v", before, after)
			}
		})
	}

	// Replaced by rename: the reconciliation reads the file it opened and verified, not the new one.
	path := filepath.Join(dir, "renamed.kwx")
	if err := os.WriteFile(path, goodData, 0o600); err != nil {
		t.Fatal(err)
	}
	g := withRA(t, n, f, func(c *ra.Config) {
		c.Store = &txHookStore{Store: n.Store, beforeTx: func() {
			fr := readFrames(t, good)
			editRecord(t, &fr[6], func(r *ExportRecord) { r.DeviceSerial = "HW-EVIL" })
			if err := os.WriteFile(path+".new", encode(rechain(t, fr)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}}
	})
	res, err := g.Reconcile(ctx, ReconcileRequest{Files: []string{path}})
	if err != nil || res[0].Devices != 12 {
		t.Fatalf("reconcile of a file replaced after it was opened: %+v, %v", res, err)
	}
	if err := n.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
		if e.Details["device_serial"] == "HW-EVIL" {
			t.Errorf("recorded the replacing file's record: %s %v", e.Action, e.Details)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}
}

// TestReconcileDuplicateDevice: a signed export that binds one device serial to two credentials is refused
// (a device gets one credential), naming both, and stores nothing.
func TestReconcileDuplicateDevice(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", 1000)
	dir := t.TempDir()
	batch := filepath.Join(dir, "a.kwb")
	if _, err := f.Batch(ctx, softBatch(batch, 10)); err != nil {
		t.Fatal(err)
	}
	appendInjections(t, batch, 0, 8, func(i int64) string {
		if i == 2 || i == 6 {
			return "HW-TWICE"
		}
		return fmt.Sprintf("HW-%d", i)
	})
	x := filepath.Join(dir, "a.kwx")
	sum := export(t, f, batch, x, false)
	before := snap(t, n, sum.BatchID)
	_, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x}})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `device "HW-TWICE" received credentials 2 and 6`) {
		t.Fatalf("got %v, want ErrRefused naming both credentials", err)
	}
	if after := snap(t, n, sum.BatchID); after != before {
		t.Fatalf("refused export stored something: %+v -> %+v", before, after)
	}
}

// TestRecordHashStable: records without a station hash as they did before the field existed (vectors from
// that implementation), so exports made then still verify and later exports of a batch still extend them; a
// station is covered.
func TestRecordHashStable(t *testing.T) {
	h := &ExportHeader{BatchID: "b-1", SiteCA: "dev/demo-implant/site-a", SiteCASHA256: "00ff", Environment: "dev", ProductLine: "demo-implant",
		Site: "site-a", FirstSerial: "DEMO-00000001", Count: 3}
	g := chainGenesis(h)
	r0 := &ExportRecord{Index: 0, Kind: RecordInjected, CertDER: []byte{0x30, 0x03, 0x02, 0x01, 0x01}, DeviceSerial: "HW-1", At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	h0 := recordHash(g, r0)
	r1 := &ExportRecord{Index: 1, Kind: RecordUnused, CertDER: []byte{0x30, 0x00}, KeyURI: "pkcs11:token=site;id=%01"}
	for name, c := range map[string]struct {
		got  []byte
		want string
	}{
		"genesis":  {g, "a03c87d954d5223dd716485b516523b065228b9cda65f477df8ac6e5cf2be7fc"},
		"record 0": {h0, "79c54c0643e8a2a9088ddb38772b9348198ccc2692c1ea1d3a9619654fa72ab8"},
		"record 1": {recordHash(h0, r1), "da18550d76c7bf287bacd310f0e9c2947cf61227c3667dd9f901df35c296cebd"},
	} {
		if hex.EncodeToString(c.got) != c.want {
			t.Errorf("%s hashes to %x, want %s", name, c.got, c.want)
		}
	}
	withStation := *r0
	withStation.Station = "station-1"
	other := withStation
	other.Station = "station-2"
	if bytes.Equal(recordHash(g, &withStation), h0) || bytes.Equal(recordHash(g, &withStation), recordHash(g, &other)) {
		t.Error("the station is not covered by the record hash")
	}
}

// signDigest signs a SHA-256 digest as ca.Custodian.SignExport does: ECDSA signs the digest (ASN.1 signature),
// Ed25519 the digest as its message.
func signDigest(s crypto.Signer, digest []byte) ([]byte, error) {
	if _, ok := s.Public().(ed25519.PublicKey); ok {
		return s.Sign(rand.Reader, digest, crypto.Hash(0))
	}
	return s.Sign(rand.Reader, digest, crypto.SHA256)
}

// writeExport writes a signed export of records under hdr, chained, to path.
func writeExport(t testing.TB, path string, hdr *ExportHeader, records []*ExportRecord, signer crypto.Signer) {
	t.Helper()
	p, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := appendRawFrame([]byte(exportMagic), frameExportHeader, p)
	if err != nil {
		t.Fatal(err)
	}
	prev := chainGenesis(hdr)
	for _, r := range records {
		r.Hash = recordHash(prev, r)
		prev = r.Hash
		if buf, err = appendFrame(buf, frameExportRecord, r); err != nil {
			t.Fatal(err)
		}
	}
	sig, err := signDigest(signer, signedDigest(headerHash(p), prev, int64(len(records))))
	if err != nil {
		t.Fatal(err)
	}
	if buf, err = appendFrame(buf, frameExportSignature, &ExportSignature{Head: prev, Signature: sig}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOpenExportSiteLog: the reader takes a site CA issuance log (no batch count, serials or custody; records
// with a station) like a batch log: structure, chain, signature and the second pass; the checks of a batch
// log's counts are reconcile.go's, not the reader's.
func TestOpenExportSiteLog(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := &x509.Certificate{PublicKey: pub, SerialNumber: big.NewInt(1)}
	dir := t.TempDir()
	hdr := &ExportHeader{Version: 1, Kind: exportKindSiteLog, SiteCA: "dev/demo-implant/site-a", Site: "site-a", Environment: "dev", ProductLine: "demo-implant",
		BatchID: "site-log:dev/demo-implant/site-a", Seq: 1, Injected: 3, Records: 3, CreatedAt: time.Now().UTC()}
	var recs []*ExportRecord
	for i := range int64(3) {
		recs = append(recs, &ExportRecord{Index: i, Kind: "enrolled", CertDER: []byte{0x30, byte(i)}, DeviceSerial: fmt.Sprintf("DEMO-%08d", i+1),
			Station: "station-1", At: time.Now().UTC()})
	}
	path := filepath.Join(dir, "log.kwx")
	writeExport(t, path, hdr, recs, priv)
	var seen []string
	e, err := OpenExport(path, ExportChecks{
		Header: func(h *ExportHeader) error {
			if h.Kind != exportKindSiteLog || h.Count != 0 {
				t.Errorf("header %+v", h)
			}
			return nil
		},
		Record: func(r *ExportRecord) error { seen = append(seen, r.Station); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.VerifySignature(signer); err != nil {
		t.Fatal(err)
	}
	var again int64
	if err := e.Records(func(r *ExportRecord) error {
		if r.Station != "station-1" || r.Index != again {
			t.Errorf("second pass: record %+v at %d", r, again)
		}
		again++
		return nil
	}); err != nil || again != 3 || len(seen) != 3 {
		t.Fatalf("second pass: %d records (first pass %d), %v", again, len(seen), err)
	}
	// A check's error is returned as it is, and stops the read.
	stop := errors.New("stop")
	if _, err := OpenExport(path, ExportChecks{Record: func(*ExportRecord) error { return stop }}); !errors.Is(err, stop) {
		t.Errorf("check error: %v", err)
	}

	// The station is covered: another station breaks the chain.
	fr := readFrames(t, path)
	editRecord(t, &fr[2], func(r *ExportRecord) { r.Station = "station-evil" })
	writeFrames(t, path, fr)
	if _, err := OpenExport(path, ExportChecks{}); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "record 1 does not match its chain hash") {
		t.Errorf("altered station: %v", err)
	}
	// Other kinds and versions are refused.
	for _, h := range []ExportHeader{{Version: 1, Kind: "something-else"}, {Version: 2, Kind: exportKindSiteLog}, {Version: 1, Kind: exportKindSiteLog, Records: -1}} {
		writeExport(t, path, &h, nil, priv)
		if _, err := OpenExport(path, ExportChecks{}); !errors.Is(err, ErrTampered) {
			t.Errorf("header %+v: %v", h, err)
		}
	}
	// A file that cannot be read twice is refused before it is read.
	if _, err := OpenExport(dir, ExportChecks{}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("a directory: %v", err)
	}
}

// BenchmarkReconcile measures reconciliation of a final export of b.N records (60 % injected, the rest
// revoked with their keys recorded destroyed, attested) in records/s, beside the in-process limit measured in
// the same run: both passes over the file with every certificate parsed and its signature checked against the
// site CA, without the store. Run it at a size where the store's cost shows, e.g. -benchtime=20000x.
func BenchmarkReconcile(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run(db, func(b *testing.B) {
			var (
				n *node.Node
				f *Factory
			)
			if db == "postgres" {
				n, f = newNodeDB(b, storetest.PostgresDSN(b))
			} else {
				n, f = newNode(b)
			}
			ctx := context.Background()
			count := int64(max(b.N, 100))
			s := siteCA(b, f, n.Soft, "site-a", 1<<40)
			dir := b.TempDir()
			batch := filepath.Join(dir, "batch.kwb")
			bigBatch(b, f, batch, count, count*6/10)
			x := filepath.Join(dir, "final.kwx")
			export(b, f, batch, x, true)

			limitStart := time.Now()
			e, err := OpenExport(x, ExportChecks{})
			if err != nil {
				b.Fatal(err)
			}
			err = e.Records(func(r *ExportRecord) error {
				c, err := x509.ParseCertificate(r.CertDER)
				if err != nil {
					return err
				}
				return c.CheckSignatureFrom(s.Cert)
			})
			e.Close()
			if err != nil {
				b.Fatal(err)
			}
			limit := float64(count) / time.Since(limitStart).Seconds()

			b.ResetTimer()
			start := time.Now()
			res, err := f.Reconcile(ctx, ReconcileRequest{Files: []string{x}, Final: true, AttestedBy: "QA"})
			elapsed := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res[0].Certificates != count {
				b.Fatalf("reconcile %+v", res[0])
			}
			rate := float64(count) / elapsed.Seconds()
			b.ReportMetric(rate, "records/s")
			b.ReportMetric(limit, "limit/s")
			b.ReportMetric(rate/limit, "ratio")
		})
	}
}
