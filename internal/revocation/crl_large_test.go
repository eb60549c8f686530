package revocation_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storetest"
)

const issuingCA = "dev/demo-implant"

func newNode(t *testing.T) *node.Node {
	t.Helper()
	n, _, err := node.Init(context.Background(), node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "data"), Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// revokedFixture stores count certificates of the issuing CA revoked with every reason a complete CRL lists,
// a few with an invalidity date, and beside them certificates no CRL may list: valid ones and revoked ones
// that have expired. It returns the entries a complete CRL must hold, in serial order.
func revokedFixture(t *testing.T, n *node.Node, count int) []store.RevocationEntry {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	reasons := []int{store.ReasonUnspecified, store.ReasonKeyCompromise, store.ReasonAffiliationChanged, store.ReasonSuperseded,
		store.ReasonCessationOfOperation, store.ReasonCertificateHold, store.ReasonPrivilegeWithdrawn}
	var want []store.RevocationEntry
	err := n.Store.Tx(ctx, func(tx store.Tx) error {
		for i := range count + 20 {
			sb := make([]byte, 16+32)
			if _, err := rand.Read(sb); err != nil {
				return err
			}
			sb[0] = sb[0]&0x3f | 0x40
			c := &store.Certificate{Serial: hex.EncodeToString(sb[:16]), IssuerID: issuingCA, Profile: "implant-identity", ProfileVersion: 1,
				Subject: fmt.Sprintf("CN=DEMO-%08d", i), NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(5, 0, 0), SPKISHA256: sb[16:],
				DER: []byte{0x30, 0}, Status: store.CertStatusValid, CreatedAt: now.AddDate(-1, 0, 0)}
			at := now.Add(-time.Duration(i%90000)*time.Second - 123456*time.Microsecond)
			e := store.RevocationEntry{Serial: c.Serial, Reason: reasons[i%len(reasons)], RevokedAt: &at}
			switch {
			case i >= count+10: // valid: not listed
			case i >= count: // revoked, expired: not listed
				c.NotAfter = now.Add(-time.Hour)
				c.Status, c.RevokedAt, c.RevocationReason = store.CertStatusRevoked, &at, e.Reason
			case i%1000 == 7: // revoked later with an invalidity date (RFC 5280 5.3.2)
				inv := at.Add(-36 * time.Hour)
				e.InvalidityDate = &inv
			default:
				c.Status, c.RevokedAt, c.RevocationReason = store.CertStatusRevoked, &at, e.Reason
			}
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
			if e.InvalidityDate != nil {
				if _, err := tx.Revoke(ctx, &store.Revocation{Serial: c.Serial, Reason: e.Reason, RevokedAt: at, InvalidityDate: e.InvalidityDate}); err != nil {
					return err
				}
			}
			if i < count {
				want = append(want, e)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Serial < want[j].Serial })
	return want
}

func caCertificate(t *testing.T, n *node.Node, id string) (*x509.Certificate, *store.CA) {
	t.Helper()
	row, err := n.Store.GetCA(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(row.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	return cert, row
}

// TestLargeCRLStreamed publishes the complete CRL of 30,000 revoked certificates, more than one chunk, and
// reads it back from the store: it verifies under the CA key, parses with x509.ParseRevocationList and with
// openssl, lists every revoked serial with its reason, revocation date and invalidity date and nothing else,
// and its TBSCertList is byte for byte the one x509.CreateRevocationList makes of the same entries. The
// spool directory is empty afterwards.
func TestLargeCRLStreamed(t *testing.T) {
	ctx := context.Background()
	n := newNode(t)
	want := revokedFixture(t, n, 30000)
	svc := revocation.New(n.RA, n.CA, n.Store)
	spool := t.TempDir()
	row, err := svc.PublishCRLs(ctx, issuingCA, revocation.CRLConfig{SpoolDir: spool})
	if err != nil {
		t.Fatal(err)
	}
	if !row.Chunked() || row.Size <= store.CRLChunkSize || row.DER != nil || row.Entries != len(want) {
		t.Fatalf("published %d entries, %d octets, chunked %v; want %d entries in chunks", row.Entries, row.Size, row.Chunked(), len(want))
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("spool files left behind: %v", left)
	}
	stored, err := n.Store.LatestCRL(ctx, issuingCA, false)
	if err != nil || stored.Number != row.Number || stored.Size != row.Size || !stored.Chunked() {
		t.Fatalf("stored CRL %+v, %v", stored, err)
	}
	var buf bytes.Buffer
	if err := svc.WriteCRL(ctx, stored, &buf); err != nil {
		t.Fatal(err)
	}
	der := buf.Bytes()
	if int64(len(der)) != row.Size {
		t.Fatalf("read back %d octets of %d", len(der), row.Size)
	}
	caCert, caRow := caCertificate(t, n, issuingCA)
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(caCert); err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != len(want) {
		t.Fatalf("%d entries, want %d", len(crl.RevokedCertificateEntries), len(want))
	}
	for i, e := range crl.RevokedCertificateEntries {
		w := want[i]
		if e.SerialNumber.Text(16) != strings.TrimLeft(w.Serial, "0") || e.ReasonCode != w.Reason || !e.RevocationTime.Equal(w.RevokedAt.Truncate(time.Second)) {
			t.Fatalf("entry %d: %x reason %d at %v; want %s reason %d at %v", i, e.SerialNumber, e.ReasonCode, e.RevocationTime, w.Serial, w.Reason, w.RevokedAt)
		}
		exts := min(1, w.Reason) // reasonCode, unless unspecified (RFC 5280 5.3.1)
		if w.InvalidityDate != nil {
			exts++
		}
		if len(e.Extensions) != exts {
			t.Fatalf("entry %d: extensions %v, want %d (invalidity date %v)", i, e.Extensions, exts, w.InvalidityDate)
		}
	}

	// x509.CreateRevocationList over the same entries, extensions, number and times makes the same TBSCertList.
	var list []x509.RevocationListEntry
	for _, e := range crl.RevokedCertificateEntries {
		list = append(list, x509.RevocationListEntry{SerialNumber: e.SerialNumber, RevocationTime: e.RevocationTime, ReasonCode: e.ReasonCode,
			ExtraExtensions: slices.DeleteFunc(slices.Clone(e.Extensions), func(x pkix.Extension) bool { return x.Id.Equal(oidReasonCode) })})
	}
	var exts []pkix.Extension
	for _, x := range crl.Extensions {
		if !x.Id.Equal(oidAKI) && !x.Id.Equal(oidCRLNumber) {
			exts = append(exts, x)
		}
	}
	signer, err := n.Keys.Signer(ctx, caRow.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		t.Fatal(err)
	}
	refDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{RevokedCertificateEntries: list, Number: big.NewInt(row.Number),
		ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate, ExtraExtensions: exts}, caCert, signer)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := x509.ParseRevocationList(refDER)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ref.RawTBSRevocationList, crl.RawTBSRevocationList) {
		t.Fatal("the streamed CRL's TBSCertList differs from x509.CreateRevocationList's over the same entries")
	}

	// OpenSSL, the relying parties' usual library, verifies it under the CA and reads every entry.
	if _, err := exec.LookPath("openssl"); err != nil {
		storetest.IntegrationUnavailable(t, "openssl not found: %v", err)
	}
	dir := t.TempDir()
	crlFile, caFile := filepath.Join(dir, "ca.crl"), filepath.Join(dir, "ca.pem")
	rootCert, _ := caCertificate(t, n, "dev/root")
	if err := os.WriteFile(crlFile, der, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootCert.Raw})...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crlFile, "-noout", "-CAfile", caFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl -CAfile: %v\n%s", err, out)
	}
	out, err = exec.Command("openssl", "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl -text: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), "Serial Number:"); got != len(want) {
		t.Fatalf("openssl lists %d entries, want %d", got, len(want))
	}
	for _, w := range want[:50] {
		if !strings.Contains(strings.ToUpper(string(out)), strings.ToUpper(w.Serial)) {
			t.Fatalf("openssl does not list serial %s", w.Serial)
		}
	}

	// The delta published next lists only what changed since (a hold released: removeFromCRL), stored whole.
	held := slices.IndexFunc(want, func(e store.RevocationEntry) bool { return e.Reason == store.ReasonCertificateHold })
	if err := n.Store.Tx(ctx, func(tx store.Tx) error {
		_, err := tx.Unhold(ctx, want[held].Serial, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	delta, err := svc.PublishDelta(ctx, issuingCA, revocation.CRLConfig{SpoolDir: spool})
	if err != nil {
		t.Fatal(err)
	}
	if delta.Chunked() || delta.BaseNumber != row.Number || delta.Entries != 1 {
		t.Fatalf("delta %+v", delta)
	}
	dcrl, err := x509.ParseRevocationList(delta.DER)
	if err != nil || len(dcrl.RevokedCertificateEntries) != 1 || dcrl.RevokedCertificateEntries[0].ReasonCode != store.ReasonRemoveFromCRL ||
		dcrl.RevokedCertificateEntries[0].SerialNumber.Text(16) != strings.TrimLeft(want[held].Serial, "0") {
		t.Fatalf("delta CRL: %v %+v", err, dcrl)
	}
}

var (
	oidAKI        = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber  = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidReasonCode = asn1.ObjectIdentifier{2, 5, 29, 21}
)

// synthStore is a store whose issuing CA has n revoked certificates that it makes up as they are walked, in
// serial order, so that a test can publish the CRL of hundreds of thousands of entries without storing them.
type synthStore struct {
	store.Store
	n  int
	at time.Time
}

func (s *synthStore) serial(i int) string {
	step := uint64(0x3fffffffffffffff) / uint64(s.n)
	return fmt.Sprintf("%016x%016x", 0x4000000000000000+uint64(i)*step, uint64(i)*0x9e3779b97f4a7c15)
}

func (s *synthStore) RevokedSerialRange(_ context.Context, issuerID string) (string, string, error) {
	if issuerID != issuingCA || s.n == 0 {
		return "", "", nil
	}
	return s.serial(0), s.serial(s.n - 1), nil
}

func (s *synthStore) WalkRevoked(ctx context.Context, q store.RevokedQuery, fn func(*store.RevocationEntry) error) error {
	if q.IssuerID != issuingCA {
		return nil
	}
	i := sort.Search(s.n, func(i int) bool { return s.serial(i) > q.After })
	var e store.RevocationEntry // reused: fn must not keep it
	for ; i < s.n; i++ {
		serial := s.serial(i)
		if q.UpTo != "" && serial > q.UpTo {
			break
		}
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		at := s.at.Add(-time.Duration(i) * time.Second)
		e = store.RevocationEntry{Serial: serial, IssuerID: issuingCA, Status: store.CertStatusRevoked, Reason: store.ReasonSuperseded, RevokedAt: &at, NotAfter: s.at.AddDate(1, 0, 0)}
		if err := fn(&e); err != nil {
			return err
		}
	}
	return nil
}

// peakHeap runs f and returns the highest heap in use it saw, sampled every millisecond with the collector
// running often (GOGC 25), so that the figure follows what is live rather than the collector's pace.
func peakHeap(f func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	return <-done
}

// TestCRLMemoryFlat publishes complete CRLs of 40,000 and of 400,000 entries (2 and 20 MB) and compares the
// highest heap in use during each: publication reads, encodes, signs and stores a CRL a part at a time, so ten
// times the entries must not take noticeably more memory. Holding the entries or the CRL whole would add at
// least the 18 MB between the two.
func TestCRLMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes a CRL of 400,000 entries")
	}
	ctx := context.Background()
	n := newNode(t)
	synth := &synthStore{Store: n.Store, at: time.Now().UTC().Truncate(time.Second)}
	r, err := ra.New(ra.Config{Store: synth, CA: n.CA, Hierarchy: n.Config, Profiles: n.Profiles})
	if err != nil {
		t.Fatal(err)
	}
	svc := revocation.New(r, n.CA, synth)
	caCert, _ := caCertificate(t, n, issuingCA)
	publish := func(count int) uint64 {
		t.Helper()
		synth.n = count
		var row *store.PublishedCRL
		peak := peakHeap(func() {
			if row, err = svc.PublishCRLs(ctx, issuingCA, revocation.CRLConfig{SpoolDir: t.TempDir()}); err != nil {
				t.Fatal(err)
			}
		})
		if row.Entries != count || !row.Chunked() {
			t.Fatalf("CRL of %d entries, chunked %v; want %d", row.Entries, row.Chunked(), count)
		}
		var buf bytes.Buffer
		if err := svc.WriteCRL(ctx, row, &buf); err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(buf.Bytes())
		if err != nil || crl.CheckSignatureFrom(caCert) != nil || len(crl.RevokedCertificateEntries) != count {
			t.Fatalf("CRL of %d entries read back: %v", count, err)
		}
		for _, i := range []int{0, count / 3, count - 1} {
			if got := fmt.Sprintf("%032x", crl.RevokedCertificateEntries[i].SerialNumber); got != synth.serial(i) {
				t.Fatalf("entry %d is %s, want %s", i, got, synth.serial(i))
			}
		}
		return peak
	}
	publish(40000) // warm up: signer, statements, connections
	small := publish(40000)
	large := publish(400000)
	t.Logf("peak heap in use: %.1f MiB publishing 40,000 entries, %.1f MiB publishing 400,000", float64(small)/(1<<20), float64(large)/(1<<20))
	if large > small+small/2+6<<20 {
		t.Fatalf("publishing ten times the entries took %.1f MiB of heap, %.1f MiB for the tenth: memory grows with the CRL",
			float64(large)/(1<<20), float64(small)/(1<<20))
	}
}
