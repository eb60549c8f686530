package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// Backend is a store under test: a store.Store that can also run raw SQL against its database, which the suite
// uses to tamper with the audit chain behind the store's back. Backends implement ExecRaw as a hook for tests
// and forensics tooling only.
type Backend interface {
	store.Store
	ExecRaw(ctx context.Context, query string, args ...any) error
}

// Run runs the conformance suite. open must return a new, empty, migrated store for each call; Run closes it
// when the (sub)test ends, before open's own cleanups run.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	runCases(t, open, []testCase{
		{"CA", testCA},
		{"Key", testKey},
		{"CertificateKey", testCertificateKey},
		{"Certificate", testCertificate},
		{"DuplicateKey", testDuplicateKey},
		{"DuplicateKeyConcurrent", testDuplicateKeyConcurrent},
		{"DuplicateSerial", testDuplicateSerial},
		{"ListCertificates", testListCertificates},
		{"TimePrecision", testTimePrecision},
		{"TxRollbackOnError", testTxRollbackOnError},
		{"TxRollbackOnPanic", testTxRollbackOnPanic},
		{"Savepoint", testSavepoint},
		{"Pipeline", testPipeline},
		{"AuditChain", testAuditChain},
		{"AuditWalkPages", testAuditWalkPages},
		{"AuditBySubject", testAuditBySubject},
		{"AuditConcurrent", testAuditConcurrent},
		{"AuditTamperDetails", testAuditTamperDetails},
		{"AuditTamperDelete", testAuditTamperDelete},
		{"AuditTamperSwap", testAuditTamperSwap},
		{"Checkpoints", testCheckpoints},
		{"CheckpointRollback", testCheckpointRollback},
		{"AuditLogIdentity", testAuditLogIdentity},
		{"CAStatus", testCAStatus},
		{"CARevoke", testCARevoke},
		{"CARequest", testCARequest},
		{"Token", testToken},
		{"KDK", testKDK},
		{"CertificatesBySPKIRead", testCertificatesBySPKIRead},
		{"WalkChanges", testWalkChanges},
		{"Watch", testWatch},
	})
}

// testCase is one conformance test; each runs on a fresh store.
type testCase struct {
	name string
	fn   func(t *testing.T, b Backend)
}

// runCases runs each case as a subtest on a new store from open, closed at the end of the subtest.
func runCases(t *testing.T, open func(t *testing.T) Backend, cases []testCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := open(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("close store: %v", err)
				}
			})
			tc.fn(t, b)
		})
	}
}

// t0 has a non-zero microsecond part and sub-microsecond digits, which the stores drop.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

func us(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func ptr[T any](v T) *T { return &v }

func tx(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Tx(context.Background(), fn); err != nil {
		t.Fatalf("Tx: %v", err)
	}
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// NewSerial returns a random 16-byte serial in the store's format: lower-case hex without leading zeros.
func NewSerial(t testing.TB) string {
	b := randBytes(t, 16)
	b[0] &= 0x7f // positive, as RFC 5280 section 4.1.2.2 requires
	b[0] |= 0x01 // no leading zero byte, so the hex form has no leading zeros to trim
	return hex.EncodeToString(b)
}

func rootCA() *store.CA {
	return &store.CA{
		ID: "dev/root", Environment: "dev", Kind: store.CAKindRoot, KeyURI: "soft:dev-root",
		CertDER: []byte{0x30, 0x82, 0x01, 0x00, 0x00, 0xff}, Subject: "CN=Keyward dev root",
		NotBefore: us(t0), NotAfter: us(t0.AddDate(20, 0, 0)), Status: store.CAStatusActive, CreatedAt: us(t0),
		Generation: 1,
	}
}

func issuingCA(id string) *store.CA {
	return &store.CA{
		ID: id, Environment: "dev", ProductLine: strings.TrimPrefix(id, "dev/"), Kind: store.CAKindIssuing,
		ParentID: "dev/root", KeyURI: "soft:" + id, CertDER: []byte{0x30, 0x03, 0x02, 0x01, 0x07},
		Subject: "CN=" + id, NotBefore: us(t0), NotAfter: us(t0.AddDate(5, 0, 0)), Status: store.CAStatusActive,
		CreatedAt: us(t0.Add(time.Second)), Generation: 1,
	}
}

// withCAs stores the dev root and the issuing CAs with the given ids.
func withCAs(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	tx(t, s, func(tx store.Tx) error {
		if err := tx.InsertCA(context.Background(), rootCA()); err != nil {
			return err
		}
		for _, id := range ids {
			if err := tx.InsertCA(context.Background(), issuingCA(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

func newCert(t testing.TB, issuer, subject string, spki []byte) *store.Certificate {
	if spki == nil {
		spki = randBytes(t, sha256.Size)
	}
	return &store.Certificate{
		Serial: NewSerial(t), IssuerID: issuer, Profile: "implant-identity", ProfileVersion: 3, Subject: subject,
		NotBefore: us(t0), NotAfter: us(t0.AddDate(10, 0, 0)), SPKISHA256: spki, DER: randBytes(t, 300),
		Status: store.CertStatusValid, CreatedAt: us(t0.Add(3 * time.Millisecond)),
	}
}

func mustEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %q", what, err, target)
	}
}

func testCA(t *testing.T, s Backend) {
	ctx := context.Background()
	if _, err := s.GetCA(ctx, "dev/root"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCA on an empty store: got %v, want ErrNotFound", err)
	}
	root, iss := rootCA(), issuingCA("dev/demo-implant")
	iss.CertDER = nil // a CA whose certificate is not yet known reads back with nil DER
	tx(t, s, func(tx store.Tx) error {
		if err := tx.InsertCA(ctx, root); err != nil {
			return err
		}
		return tx.InsertCA(ctx, iss)
	})
	got, err := s.GetCA(ctx, root.ID)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "GetCA root", got, root)
	got, err = s.GetCA(ctx, iss.ID)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "GetCA issuing", got, iss)
	all, err := s.ListCAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ListCAs", all, []*store.CA{iss, root}) // by id: "dev/demo-implant" < "dev/root"

	err = s.Tx(ctx, func(tx store.Tx) error { return tx.InsertCA(ctx, rootCA()) })
	wantErr(t, "InsertCA with a taken id", err, store.ErrExists)
	if _, err := s.GetCA(ctx, "dev/missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCA missing: got %v, want ErrNotFound", err)
	}
}

func testKey(t *testing.T, s Backend) {
	ctx := context.Background()
	if _, err := s.GetKey(ctx, "soft:nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetKey on an empty store: got %v, want ErrNotFound", err)
	}
	held := &store.Key{
		URI: "pkcs11:token=keyward;object=dev-root", Purpose: "root-signing", Algorithm: "ECDSA-P384",
		Location: "pkcs11", State: store.KeyActive, Owner: "dev/root", SPKISHA256: randBytes(t, 32),
		CreatedAt: us(t0), StateChangedAt: us(t0.Add(time.Minute)),
	}
	device := &store.Key{
		URI: "spki:sha256:" + hex.EncodeToString(randBytes(t, 32)), Purpose: "device-identity",
		Algorithm: "ECDSA-P256", Location: "device", State: store.KeyPreActivation, Owner: "PX1-000042",
		CreatedAt: us(t0), StateChangedAt: us(t0), // nil SPKISHA256 and DestroyedAt must read back nil
	}
	tx(t, s, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, held); err != nil {
			return err
		}
		return tx.InsertKey(ctx, device)
	})
	for _, k := range []*store.Key{held, device} {
		got, err := s.GetKey(ctx, k.URI)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "GetKey "+k.URI, got, k)
	}
	all, err := s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ListKeys", all, []*store.Key{held, device}) // by URI: "pkcs11:" < "spki:"

	err = s.Tx(ctx, func(tx store.Tx) error { return tx.InsertKey(ctx, &store.Key{URI: held.URI, State: store.KeyActive}) })
	wantErr(t, "InsertKey with a taken URI", err, store.ErrExists)

	suspended := t0.Add(time.Hour + 789*time.Nanosecond)
	tx(t, s, func(tx store.Tx) error { return tx.SetKeyState(ctx, held.URI, store.KeySuspended, suspended) })
	got, err := s.GetKey(ctx, held.URI)
	if err != nil {
		t.Fatal(err)
	}
	want := *held
	want.State, want.StateChangedAt = store.KeySuspended, us(suspended)
	mustEqual(t, "key after SetKeyState suspended", got, &want)

	destroyed := t0.Add(2 * time.Hour)
	tx(t, s, func(tx store.Tx) error { return tx.SetKeyState(ctx, held.URI, store.KeyDestroyed, destroyed) })
	got, err = s.GetKey(ctx, held.URI)
	if err != nil {
		t.Fatal(err)
	}
	want.State, want.StateChangedAt, want.DestroyedAt = store.KeyDestroyed, us(destroyed), ptr(us(destroyed))
	mustEqual(t, "key after SetKeyState destroyed", got, &want)

	err = s.Tx(ctx, func(tx store.Tx) error { return tx.SetKeyState(ctx, "soft:nope", store.KeyActive, t0) })
	wantErr(t, "SetKeyState on a missing key", err, store.ErrNotFound)
}

func testCertificate(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	if _, err := s.GetCertificate(ctx, "1234"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCertificate on an empty store: got %v, want ErrNotFound", err)
	}
	valid := newCert(t, "dev/demo-implant", "PX1-000001", nil)
	revoked := newCert(t, "dev/demo-implant", "PX1-000002", nil)
	revoked.Status, revoked.RevokedAt, revoked.RevocationReason = store.CertStatusRevoked, ptr(us(t0.Add(time.Hour))), 1
	tx(t, s, func(tx store.Tx) error {
		for _, c := range []*store.Certificate{valid, revoked} {
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
		}
		// Within the transaction, the certificate is visible to the duplicate-key lookup.
		got, err := tx.CertificatesBySPKI(ctx, valid.SPKISHA256)
		if err != nil {
			return err
		}
		mustEqual(t, "CertificatesBySPKI in the transaction", got, []*store.Certificate{valid})
		return nil
	})
	for _, c := range []*store.Certificate{valid, revoked} {
		got, err := s.GetCertificate(ctx, c.Serial)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "GetCertificate "+c.Serial, got, c)
	}
	tx(t, s, func(tx store.Tx) error {
		got, err := tx.CertificatesBySPKI(ctx, randBytes(t, 32))
		if err != nil {
			return err
		}
		if len(got) != 0 {
			t.Errorf("CertificatesBySPKI of an unknown key: got %d certificates", len(got))
		}
		return nil
	})
	err := s.Tx(ctx, func(tx store.Tx) error {
		return tx.InsertCertificate(ctx, newCert(t, "dev/no-such-ca", "PX1-000003", nil))
	})
	if err == nil {
		t.Fatal("InsertCertificate with an unknown issuer succeeded")
	}
}

func testDuplicateKey(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	first := newCert(t, "dev/demo-implant", "PX1-000001", nil)
	tx(t, s, func(tx store.Tx) error { return tx.InsertCertificate(ctx, first) })

	// The same key for another device is refused, whether the first certificate is committed or not.
	other := newCert(t, "dev/demo-implant", "PX1-000002", first.SPKISHA256)
	err := s.Tx(ctx, func(tx store.Tx) error { return tx.InsertCertificate(ctx, other) })
	wantErr(t, "same key, other subject", err, store.ErrDuplicateKey)
	err = s.Tx(ctx, func(tx store.Tx) error {
		k := randBytes(t, 32)
		if err := tx.InsertCertificate(ctx, newCert(t, "dev/demo-implant", "PX1-000003", k)); err != nil {
			return err
		}
		return tx.InsertCertificate(ctx, newCert(t, "dev/demo-implant", "PX1-000004", k))
	})
	wantErr(t, "same key, other subject, same transaction", err, store.ErrDuplicateKey)

	// A re-issue to the same device with the same key is allowed, and the refusal above did not poison the
	// transaction it happened in.
	again := newCert(t, "dev/demo-implant", first.Subject, first.SPKISHA256)
	tx(t, s, func(tx store.Tx) error {
		if err := tx.InsertCertificate(ctx, newCert(t, "dev/demo-implant", "PX1-000005", first.SPKISHA256)); !errors.Is(err, store.ErrDuplicateKey) {
			t.Errorf("same key, other subject: got %v, want ErrDuplicateKey", err)
		}
		return tx.InsertCertificate(ctx, again)
	})
	tx(t, s, func(tx store.Tx) error {
		got, err := tx.CertificatesBySPKI(ctx, first.SPKISHA256)
		if err != nil {
			return err
		}
		want := []*store.Certificate{first, again}
		if want[0].Serial > want[1].Serial {
			want[0], want[1] = want[1], want[0]
		}
		mustEqual(t, "CertificatesBySPKI after a re-issue", got, want)
		return nil
	})
	for _, serial := range []string{other.Serial} {
		if _, err := s.GetCertificate(ctx, serial); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refused certificate %s was stored: %v", serial, err)
		}
	}
}

// testDuplicateKeyConcurrent certifies one key for several devices at once, each in its own transaction,
// which sleeps after the insert so that the others run while it is uncommitted: exactly one may succeed.
func testDuplicateKeyConcurrent(t *testing.T, s Backend) {
	const n = 8
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	key := randBytes(t, 32)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.Tx(ctx, func(tx store.Tx) error {
				if _, err := certAndEvent(ctx, tx, newCert(t, "dev/demo-implant", fmt.Sprintf("PX1-%06d", i), key)); err != nil {
					return err
				}
				time.Sleep(20 * time.Millisecond)
				return nil
			})
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrDuplicateKey):
			t.Errorf("transaction %d: got %v, want success or ErrDuplicateKey", i, err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d transactions certified the same key for different devices, want exactly 1", ok, n)
	}
	tx(t, s, func(tx store.Tx) error {
		got, err := tx.CertificatesBySPKI(ctx, key)
		if err != nil {
			return err
		}
		if len(got) != 1 {
			t.Errorf("CertificatesBySPKI: %d certificates for the key, want 1", len(got))
		}
		return nil
	})
	if n, err := store.VerifyAudit(ctx, s); err != nil || n != 1 {
		t.Fatalf("VerifyAudit: %d, %v; want 1 event (only the committed transaction's)", n, err)
	}
}

func testDuplicateSerial(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	first := newCert(t, "dev/demo-implant", "PX1-000001", nil)
	tx(t, s, func(tx store.Tx) error { return tx.InsertCertificate(ctx, first) })

	clash := newCert(t, "dev/demo-implant", "PX1-000002", nil)
	clash.Serial = first.Serial
	// The caller retries with a new serial in the same transaction, as a serial collision calls for.
	tx(t, s, func(tx store.Tx) error {
		err := tx.InsertCertificate(ctx, clash)
		wantErr(t, "InsertCertificate with a taken serial", err, store.ErrDuplicateSerial)
		clash.Serial = NewSerial(t)
		return tx.InsertCertificate(ctx, clash)
	})
	got, err := s.GetCertificate(ctx, first.Serial)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "first certificate after the collision", got, first)
	got, err = s.GetCertificate(ctx, clash.Serial)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "retried certificate", got, clash)
}

func testListCertificates(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/a", "dev/b")
	var all []*store.Certificate
	for i := 0; i < 12; i++ {
		c := newCert(t, []string{"dev/a", "dev/b"}[i%2], fmt.Sprintf("PX1-%06d", i%4), nil)
		if i%3 == 0 {
			c.Profile = "station"
		}
		if i%4 == 1 {
			c.Status, c.RevokedAt, c.RevocationReason = store.CertStatusRevoked, ptr(us(t0.Add(time.Duration(i)*time.Hour))), 4
		}
		all = append(all, c)
	}
	tx(t, s, func(tx store.Tx) error {
		for _, c := range all {
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	match := func(f store.CertFilter) []*store.Certificate {
		var out []*store.Certificate
		for _, c := range all {
			if (f.IssuerID == "" || c.IssuerID == f.IssuerID) && (f.Profile == "" || c.Profile == f.Profile) &&
				(f.Status == "" || c.Status == f.Status) && (f.Subject == "" || c.Subject == f.Subject) {
				out = append(out, c)
			}
		}
		// ordered by serial
		for i := range out {
			for j := i + 1; j < len(out); j++ {
				if out[j].Serial < out[i].Serial {
					out[i], out[j] = out[j], out[i]
				}
			}
		}
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
		return out
	}
	for _, f := range []store.CertFilter{
		{},
		{IssuerID: "dev/a"},
		{Profile: "station"},
		{Status: store.CertStatusRevoked},
		{Subject: "PX1-000001"},
		{IssuerID: "dev/b", Status: store.CertStatusValid},
		{IssuerID: "dev/a", Profile: "implant-identity", Status: store.CertStatusValid, Subject: "PX1-000000"},
		{IssuerID: "dev/none"},
		{Limit: 5},
		{IssuerID: "dev/b", Limit: 2},
		{Limit: 100},
	} {
		got, err := s.ListCertificates(ctx, f)
		if err != nil {
			t.Fatalf("ListCertificates %+v: %v", f, err)
		}
		want := match(f)
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		mustEqual(t, fmt.Sprintf("ListCertificates %+v", f), got, want)
	}
}

func testTimePrecision(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("UTC+2", 2*60*60)
	}
	for _, tm := range []time.Time{
		t0,
		time.Date(2026, 1, 1, 0, 0, 0, 999, paris),
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2099, 12, 31, 23, 59, 59, 1000, time.UTC),
		time.Unix(0, 1000).In(paris),
	} {
		c := newCert(t, "dev/demo-implant", "PX1-"+tm.Format(time.RFC3339Nano), nil)
		c.NotBefore, c.NotAfter, c.CreatedAt, c.RevokedAt = tm, tm.Add(time.Nanosecond), tm.Add(-time.Nanosecond), ptr(tm)
		tx(t, s, func(tx store.Tx) error { return tx.InsertCertificate(ctx, c) })
		got, err := s.GetCertificate(ctx, c.Serial)
		if err != nil {
			t.Fatal(err)
		}
		want := *c
		want.NotBefore, want.NotAfter, want.CreatedAt, want.RevokedAt = us(c.NotBefore), us(c.NotAfter), us(c.CreatedAt), ptr(us(tm))
		mustEqual(t, "certificate times as UTC microseconds", got, &want)
	}
}

// certAndEvent inserts c and an audit event about it in tx.
func certAndEvent(ctx context.Context, tx store.Tx, c *store.Certificate) (*audit.Event, error) {
	if err := tx.InsertCertificate(ctx, c); err != nil {
		return nil, err
	}
	e := &audit.Event{
		Time: time.Now(), Actor: "station:site1/line4", Action: "certificate.issue", Subject: c.Serial,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"profile": c.Profile, "subject": c.Subject},
	}
	return e, tx.AppendAudit(ctx, e)
}

func auditEvents(t *testing.T, s store.Store, after int64) []*audit.Event {
	t.Helper()
	var evs []*audit.Event
	if err := s.WalkAudit(context.Background(), after, func(e *audit.Event) error {
		evs = append(evs, e)
		return nil
	}); err != nil {
		t.Fatalf("WalkAudit after %d: %v", after, err)
	}
	return evs
}

func testTxRollbackOnError(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	c := newCert(t, "dev/demo-implant", "PX1-000001", nil)
	boom := errors.New("profile check failed")
	err := s.Tx(ctx, func(tx store.Tx) error {
		if _, err := certAndEvent(ctx, tx, c); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx returned %v, want the error of fn", err)
	}
	if _, err := s.GetCertificate(ctx, c.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("certificate of a rolled-back transaction: got %v, want ErrNotFound", err)
	}
	if evs := auditEvents(t, s, 0); len(evs) != 0 {
		t.Fatalf("rolled-back transaction left %d audit events", len(evs))
	}
	// The chain continues from the genesis, not from the rolled-back event.
	var e *audit.Event
	tx(t, s, func(tx store.Tx) error {
		var err error
		e, err = certAndEvent(ctx, tx, c)
		return err
	})
	if e.Seq != 1 || !reflect.DeepEqual(e.PrevHash, audit.GenesisHash) {
		t.Fatalf("first committed event: seq %d prev %x, want 1 and the genesis hash", e.Seq, e.PrevHash)
	}
}

// testSavepoint runs three requests in one transaction, each in a savepoint, as group commit does: the
// middle one fails after it inserted its certificate and appended its event (the first event of the transaction
// for one run, so that its rollback also undoes taking the chain head), another panics; what they did is gone,
// the others commit, and the chain runs on without a gap.
func testSavepoint(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	boom := errors.New("quota exceeded")
	for round, firstFails := range []bool{true, false} {
		certs := make([]*store.Certificate, 4)
		for i := range certs {
			certs[i] = newCert(t, "dev/demo-implant", fmt.Sprintf("PX%d-%06d", round, i), nil)
		}
		errs := make([]error, len(certs))
		var panicked any
		tx(t, s, func(tx store.Tx) error {
			for i, c := range certs {
				fails := (i == 0 && firstFails) || (i == 2 && !firstFails)
				func() {
					defer func() {
						if p := recover(); p != nil {
							panicked = p
						}
					}()
					errs[i] = tx.Savepoint(ctx, func() error {
						if _, err := certAndEvent(ctx, tx, c); err != nil {
							return err
						}
						switch {
						case fails:
							return boom
						case i == 3:
							panic("request handler bug")
						}
						return nil
					})
				}()
			}
			return nil
		})
		if panicked == nil {
			t.Fatalf("round %d: the panic inside the savepoint did not reach the caller", round)
		}
		for i, c := range certs {
			fails := (i == 0 && firstFails) || (i == 2 && !firstFails)
			_, err := s.GetCertificate(ctx, c.Serial)
			switch {
			case fails && !errors.Is(errs[i], boom):
				t.Fatalf("round %d request %d: Savepoint returned %v, want its fn's error", round, i, errs[i])
			case (fails || i == 3) && !errors.Is(err, store.ErrNotFound):
				t.Fatalf("round %d request %d was undone, but its certificate is stored (%v)", round, i, err)
			case !fails && i != 3 && (errs[i] != nil || err != nil):
				t.Fatalf("round %d request %d: Savepoint %v, stored certificate %v; want both nil", round, i, errs[i], err)
			}
		}
	}
	evs := auditEvents(t, s, 0)
	if len(evs) != 4 {
		t.Fatalf("%d audit events committed, want 4 (two requests of two rounds)", len(evs))
	}
	prev := audit.GenesisHash
	for i, e := range evs {
		if e.Seq != int64(i+1) || !reflect.DeepEqual(e.PrevHash, prev) {
			t.Fatalf("event %d: seq %d prev %x, want %d and the hash of the one before", i, e.Seq, e.PrevHash, i+1)
		}
		prev = e.Hash
	}
	if n, err := store.VerifyAudit(ctx, s); err != nil || n != 4 {
		t.Fatalf("VerifyAudit: %d events, %v", n, err)
	}
}

// testCertificateKey: a certified device key's glossary row, stored beside its certificate, reads back through
// GetKey and ListKeys (merged in URI order with the other rows), changes state through SetKeyState, is not
// duplicated by a re-issue for the same key, pipelined or not, and does not shadow a row InsertKey made for
// the same URI.
func testCertificateKey(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	a := newCert(t, "dev/demo-implant", "PX1-000001", nil)
	again := newCert(t, "dev/demo-implant", "PX1-000001", a.SPKISHA256) // a re-issue for the same key
	b := newCert(t, "dev/demo-implant", "PX1-000002", nil)
	c := newCert(t, "dev/demo-implant", "PX1-000003", nil)
	a.CreatedAt, again.CreatedAt, b.CreatedAt, c.CreatedAt = us(t0), us(t0.Add(time.Hour)), us(t0.Add(time.Minute)), us(t0.Add(2*time.Minute))
	held := &store.Key{URI: "pkcs11:token=keyward;object=dev-root", Purpose: "root-signing", Algorithm: "ECDSA-P384",
		Location: "pkcs11", State: store.KeyActive, Owner: "dev/root", CreatedAt: us(t0), StateChangedAt: us(t0)}
	soft := &store.Key{URI: "soft:dev-issuing", Purpose: "ca-signing", Algorithm: "ECDSA-P256",
		Location: "software", State: store.KeyActive, Owner: "dev/demo-implant", CreatedAt: us(t0), StateChangedAt: us(t0)}
	// c's key was recorded by InsertKey first (as a factory reconciliation records a site's device key).
	cKey := &store.Key{URI: store.DeviceKeyURI(c.SPKISHA256), Purpose: "device-identity", Algorithm: "ECDSA-P256", Location: "device",
		State: store.KeyActive, Owner: "site-record-7", SPKISHA256: c.SPKISHA256, CreatedAt: us(t0), StateChangedAt: us(t0)}
	tx(t, s, func(tx store.Tx) error {
		for _, k := range []*store.Key{held, soft, cKey} {
			if err := tx.InsertKey(ctx, k); err != nil {
				return err
			}
		}
		for _, x := range []*store.Certificate{a, again, c} {
			if _, err := certAndEvent(ctx, tx, x); err != nil {
				return err
			}
			if err := tx.InsertCertificateKey(ctx, x, "ECDSA-P256"); err != nil {
				return err
			}
		}
		return nil
	})
	tx(t, s, func(tx store.Tx) error { // pipelined, as the registration authority records an issuance
		tx.Pipeline()
		if _, err := certAndEvent(ctx, tx, b); err != nil {
			return err
		}
		return tx.InsertCertificateKey(ctx, b, "Ed25519")
	})
	deviceKey := func(x *store.Certificate, alg string) *store.Key {
		return &store.Key{URI: store.DeviceKeyURI(x.SPKISHA256), Purpose: store.DeviceKeyPurpose, Algorithm: alg, Location: store.DeviceKeyLocation,
			State: store.KeyActive, Owner: x.Serial, SPKISHA256: x.SPKISHA256, CreatedAt: x.CreatedAt, StateChangedAt: x.CreatedAt}
	}
	aKey, bKey := deviceKey(a, "ECDSA-P256"), deviceKey(b, "Ed25519")
	for _, k := range []*store.Key{aKey, bKey, cKey} {
		got, err := s.GetKey(ctx, k.URI)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "GetKey "+k.URI, got, k)
	}
	want := []*store.Key{held, aKey, bKey, cKey, soft}
	slices.SortFunc(want, func(x, y *store.Key) int { return strings.Compare(x.URI, y.URI) })
	all, err := s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ListKeys", all, want)

	destroyed := t0.Add(3 * time.Hour)
	tx(t, s, func(tx store.Tx) error { return tx.SetKeyState(ctx, aKey.URI, store.KeyDestroyed, destroyed) })
	got, err := s.GetKey(ctx, aKey.URI)
	if err != nil {
		t.Fatal(err)
	}
	w := *aKey
	w.State, w.StateChangedAt, w.DestroyedAt = store.KeyDestroyed, us(destroyed), ptr(us(destroyed))
	mustEqual(t, "device key after SetKeyState destroyed", got, &w)

	unknown := store.DeviceKeyURI(randBytes(t, sha256.Size))
	if _, err := s.GetKey(ctx, unknown); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetKey of an uncertified key: got %v, want ErrNotFound", err)
	}
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.SetKeyState(ctx, unknown, store.KeyCompromised, t0) })
	wantErr(t, "SetKeyState on an uncertified key", err, store.ErrNotFound)
}

// testPipeline: pipelined writes behave as immediate ones once sent. In a savepoint, a certificate whose key
// another subject holds fails the savepoint with ErrDuplicateKey and leaves nothing; a duplicate serial in a
// pipelined transaction fails its commit with ErrDuplicateSerial and leaves nothing; a key already in the
// glossary is no failure.
func testPipeline(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	a := newCert(t, "dev/demo-implant", "PX1-000001", nil)
	b := newCert(t, "dev/demo-implant", "PX1-000002", nil)
	thief := newCert(t, "dev/demo-implant", "PX1-000003", a.SPKISHA256)
	key := &store.Key{URI: "spki:sha256:" + fmt.Sprintf("%x", a.SPKISHA256), Purpose: "device-identity", Algorithm: "ecdsa-p256", Location: "device",
		State: store.KeyActive, Owner: a.Serial, SPKISHA256: a.SPKISHA256, CreatedAt: us(time.Now()), StateChangedAt: us(time.Now())}
	var errThief, errB error
	tx(t, s, func(tx store.Tx) error {
		tx.Pipeline()
		if _, err := certAndEvent(ctx, tx, a); err != nil {
			return err
		}
		if err := tx.InsertKey(ctx, key); err != nil {
			return err
		}
		errThief = tx.Savepoint(ctx, func() error {
			tx.Pipeline()
			if err := tx.InsertKey(ctx, key); err != nil {
				return err
			}
			_, err := certAndEvent(ctx, tx, thief)
			return err
		})
		errB = tx.Savepoint(ctx, func() error {
			tx.Pipeline()
			_, err := certAndEvent(ctx, tx, b)
			return err
		})
		return nil
	})
	wantErr(t, "pipelined certificate for a key another subject holds", errThief, store.ErrDuplicateKey)
	if errB != nil {
		t.Fatalf("pipelined savepoint after the refused one: %v", errB)
	}
	for _, c := range []*store.Certificate{a, b} {
		if _, err := s.GetCertificate(ctx, c.Serial); err != nil {
			t.Fatalf("certificate %s: %v", c.Subject, err)
		}
	}
	if _, err := s.GetCertificate(ctx, thief.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused savepoint's certificate: %v, want ErrNotFound", err)
	}
	if _, err := s.GetKey(ctx, key.URI); err != nil {
		t.Fatalf("glossary key: %v", err)
	}

	again := newCert(t, "dev/demo-implant", "PX1-000004", nil)
	again.Serial = b.Serial
	err := s.Tx(ctx, func(tx store.Tx) error {
		tx.Pipeline()
		_, err := certAndEvent(ctx, tx, again)
		return err
	})
	wantErr(t, "pipelined duplicate serial", err, store.ErrDuplicateSerial)
	if evs := auditEvents(t, s, 0); len(evs) != 2 {
		t.Fatalf("%d audit events, want 2 (a and b)", len(evs))
	}
	if n, err := store.VerifyAudit(ctx, s); err != nil || n != 2 {
		t.Fatalf("VerifyAudit: %d events, %v", n, err)
	}
}

func testTxRollbackOnPanic(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	c := newCert(t, "dev/demo-implant", "PX1-000001", nil)
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the panic of fn", p)
			}
		}()
		_ = s.Tx(ctx, func(tx store.Tx) error {
			if _, err := certAndEvent(ctx, tx, c); err != nil {
				t.Errorf("insert: %v", err)
			}
			panic("boom")
		})
	}()
	if _, err := s.GetCertificate(ctx, c.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("certificate of a panicked transaction: got %v, want ErrNotFound", err)
	}
	if evs := auditEvents(t, s, 0); len(evs) != 0 {
		t.Fatalf("panicked transaction left %d audit events", len(evs))
	}
	// The store is still usable: the panicked transaction released its connection.
	done := make(chan error, 1)
	go func() { done <- s.Tx(ctx, func(tx store.Tx) error { _, err := certAndEvent(ctx, tx, c); return err }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("transaction after a panic did not complete: the panicked one still holds the database")
	}
}

func sameEvent(t *testing.T, got, want *audit.Event) {
	t.Helper()
	w := *want
	if len(w.Details) == 0 {
		w.Details = nil
	}
	w.Time = us(w.Time)
	mustEqual(t, fmt.Sprintf("audit event %d", want.Seq), got, &w)
}

func testAuditChain(t *testing.T, s Backend) {
	ctx := context.Background()
	if seq, head, err := s.AuditHead(ctx); err != nil || seq != 0 || head != nil {
		t.Fatalf("AuditHead of an empty chain = %d, %x, %v", seq, head, err)
	}
	withCAs(t, s, "dev/demo-implant")
	var sealed []*audit.Event
	defer func() {
		if t.Failed() || len(sealed) == 0 {
			return
		}
		last := sealed[len(sealed)-1]
		if seq, head, err := s.AuditHead(ctx); err != nil || seq != last.Seq || !bytes.Equal(head, last.Hash) {
			t.Errorf("AuditHead = %d, %x, %v; want %d, %x", seq, head, err, last.Seq, last.Hash)
		}
	}()
	for i := 0; i < 5; i++ {
		tx(t, s, func(tx store.Tx) error {
			for j := 0; j <= i; j++ {
				e, err := certAndEvent(ctx, tx, newCert(t, "dev/demo-implant", fmt.Sprintf("PX1-%d-%d", i, j), nil))
				if err != nil {
					return err
				}
				sealed = append(sealed, e)
			}
			// An event without details, with sub-microsecond time.
			e := &audit.Event{Time: t0, Actor: "admin", Action: "noop", Outcome: audit.OutcomeRefused}
			if err := tx.AppendAudit(ctx, e); err != nil {
				return err
			}
			sealed = append(sealed, e)
			return nil
		})
	}
	for i, e := range sealed {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d sealed with seq %d", i+1, e.Seq)
		}
	}
	got := auditEvents(t, s, 0)
	if len(got) != len(sealed) {
		t.Fatalf("WalkAudit: %d events, want %d", len(got), len(sealed))
	}
	for i := range got {
		sameEvent(t, got[i], sealed[i])
	}
	if tail := auditEvents(t, s, 7); len(tail) != len(sealed)-7 || tail[0].Seq != 8 {
		t.Fatalf("WalkAudit after 7: %d events starting at %d", len(tail), tail[0].Seq)
	}
	n, err := store.VerifyAudit(ctx, s)
	if err != nil || n != int64(len(sealed)) {
		t.Fatalf("VerifyAudit: %d, %v; want %d, nil", n, err, len(sealed))
	}
	stop := errors.New("stop")
	calls := 0
	err = s.WalkAudit(ctx, 0, func(*audit.Event) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("WalkAudit with a failing fn: %d calls, %v; want 1 call and fn's error", calls, err)
	}
}

// appendN appends n events in transactions of per events each.
func appendN(t *testing.T, s store.Store, n, per int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += per {
		tx(t, s, func(tx store.Tx) error {
			for j := i; j < min(i+per, n); j++ {
				e := &audit.Event{
					Time: time.Now(), Actor: "admin", Action: "device.activate", Subject: fmt.Sprintf("PX1-%06d", j),
					Outcome: audit.OutcomeSuccess, Details: map[string]string{"n": fmt.Sprint(j)},
				}
				if err := tx.AppendAudit(ctx, e); err != nil {
					return err
				}
			}
			return nil
		})
	}
}

func testAuditWalkPages(t *testing.T, s Backend) {
	const n = 2345 // more than two of any page size a backend is likely to use
	appendN(t, s, n, 500)
	var prev int64
	count := 0
	if err := s.WalkAudit(context.Background(), 0, func(e *audit.Event) error {
		if e.Seq != prev+1 {
			return fmt.Errorf("event %d after %d", e.Seq, prev)
		}
		prev = e.Seq
		count++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Fatalf("walked %d events, want %d", count, n)
	}
	if got, err := store.VerifyAudit(context.Background(), s); err != nil || got != n {
		t.Fatalf("VerifyAudit: %d, %v; want %d, nil", got, err, n)
	}
}

func testAuditBySubject(t *testing.T, s Backend) {
	ctx := context.Background()
	// One subject with more events than a page, interleaved with others; a subject that only prefixes another
	// one must not match it.
	const many = 2100
	tx(t, s, func(tx store.Tx) error {
		for i := 0; i < many; i++ {
			for _, subject := range []string{"PX1-000001", "PX1-0000011", fmt.Sprintf("PX1-%06d", 100+i%3)} {
				if subject == "PX1-0000011" && i%100 != 0 {
					continue
				}
				e := &audit.Event{Time: t0, Actor: "admin", Action: "device.force-renew", Subject: subject, Outcome: audit.OutcomeSuccess,
					Details: map[string]string{"i": fmt.Sprint(i)}}
				if err := tx.AppendAudit(ctx, e); err != nil {
					return err
				}
			}
		}
		return nil
	})
	for subject, want := range map[string]int{"PX1-000001": many, "PX1-0000011": many / 100, "PX1-000100": many / 3, "nobody": 0} {
		var prev int64
		got := 0
		if err := s.WalkAuditBySubject(ctx, subject, func(e *audit.Event) error {
			if e.Subject != subject || e.Seq <= prev {
				return fmt.Errorf("event %d of %q after %d", e.Seq, e.Subject, prev)
			}
			if e.Details["i"] == "" || len(e.Hash) == 0 {
				return fmt.Errorf("event %d read without its details or hash", e.Seq)
			}
			prev = e.Seq
			got++
			return nil
		}); err != nil {
			t.Fatalf("WalkAuditBySubject(%q): %v", subject, err)
		}
		if got != want {
			t.Fatalf("WalkAuditBySubject(%q): %d events, want %d", subject, got, want)
		}
	}
	stop := errors.New("stop")
	if err := s.WalkAuditBySubject(ctx, "PX1-000001", func(*audit.Event) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("WalkAuditBySubject with a failing fn: %v; want fn's error", err)
	}
}

func testAuditConcurrent(t *testing.T, s Backend) {
	const goroutines, perG = 8, 50
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				err := s.Tx(ctx, func(tx store.Tx) error {
					// Every other transaction does work before it touches the chain, so appenders overlap.
					if i%2 == 0 {
						_, err := certAndEvent(ctx, tx, newCert(t, "dev/demo-implant", fmt.Sprintf("PX1-%d-%d", g, i), nil))
						return err
					}
					e := &audit.Event{Time: time.Now(), Actor: fmt.Sprintf("worker-%d", g), Action: "noop", Outcome: audit.OutcomeSuccess}
					return tx.AppendAudit(ctx, e)
				})
				if err != nil {
					errs <- fmt.Errorf("goroutine %d append %d: %w", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, err := store.VerifyAudit(ctx, s)
	if err != nil || n != goroutines*perG {
		t.Fatalf("VerifyAudit after concurrent appends: %d, %v; want %d, nil", n, err, goroutines*perG)
	}
}

// wantBroken checks that VerifyAudit fails with audit.ErrChainBroken naming event seq, after verifying good
// events.
func wantBroken(t *testing.T, s store.Store, seq, good int64) {
	t.Helper()
	n, err := store.VerifyAudit(context.Background(), s)
	if !errors.Is(err, audit.ErrChainBroken) {
		t.Fatalf("VerifyAudit of a tampered chain: %d, %v; want audit.ErrChainBroken", n, err)
	}
	if want := fmt.Sprintf("at event %d:", seq); !strings.Contains(err.Error(), want) {
		t.Fatalf("VerifyAudit error %q does not name the first bad event (%q)", err, want)
	}
	if n != good {
		t.Fatalf("VerifyAudit verified %d events before the break, want %d", n, good)
	}
}

func raw(t *testing.T, s Backend, query string) {
	t.Helper()
	if err := s.ExecRaw(context.Background(), query); err != nil {
		t.Fatalf("ExecRaw %q: %v", query, err)
	}
}

func testAuditTamperDetails(t *testing.T, s Backend) {
	appendN(t, s, 10, 3)
	raw(t, s, `UPDATE audit_events SET details = '{"n":"4000"}' WHERE seq = 4`)
	wantBroken(t, s, 4, 3)
}

func testAuditTamperDelete(t *testing.T, s Backend) {
	appendN(t, s, 10, 3)
	raw(t, s, `DELETE FROM audit_events WHERE seq = 6`)
	wantBroken(t, s, 7, 5) // the gap shows at the event after the deleted one
}

func testAuditTamperSwap(t *testing.T, s Backend) {
	appendN(t, s, 10, 3)
	raw(t, s, `UPDATE audit_events SET seq = -5 WHERE seq = 5`)
	raw(t, s, `UPDATE audit_events SET seq = 5 WHERE seq = 6`)
	raw(t, s, `UPDATE audit_events SET seq = 6 WHERE seq = -5`)
	wantBroken(t, s, 5, 4)
}

func testCAStatus(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	tx(t, s, func(tx store.Tx) error { return tx.SetCAStatus(ctx, "dev/demo-implant", store.CAStatusRetired) })
	got, err := s.GetCA(ctx, "dev/demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "status", got.Status, store.CAStatusRetired)
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.SetCAStatus(ctx, "dev/missing", store.CAStatusRetired) })
	wantErr(t, "SetCAStatus on a missing CA", err, store.ErrNotFound)
}

func testCARevoke(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	got, err := s.GetCA(ctx, "dev/demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	if got.RevokedAt != nil || got.RevocationReason != 0 {
		t.Fatalf("a new CA reads as revoked: %v, %d", got.RevokedAt, got.RevocationReason)
	}
	second := issuingCA("dev/demo-implant@2")
	second.Generation = 2
	tx(t, s, func(tx store.Tx) error { return tx.InsertCA(ctx, second) })
	at := us(t0.Add(time.Hour))
	tx(t, s, func(tx store.Tx) error { return tx.RevokeCA(ctx, "dev/demo-implant", at, store.ReasonKeyCompromise) })
	got, err = s.GetCA(ctx, "dev/demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "status", got.Status, store.CAStatusRevoked)
	mustEqual(t, "reason", got.RevocationReason, store.ReasonKeyCompromise)
	if got.RevokedAt == nil || !got.RevokedAt.Equal(at) {
		t.Fatalf("revoked at %v, want %v", got.RevokedAt, at)
	}
	if g2, err := s.GetCA(ctx, "dev/demo-implant@2"); err != nil || g2.Generation != 2 || g2.Status != store.CAStatusActive {
		t.Fatalf("second generation: %+v, %v", g2, err)
	}
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.RevokeCA(ctx, "dev/missing", at, store.ReasonKeyCompromise) })
	wantErr(t, "RevokeCA on a missing CA", err, store.ErrNotFound)
}

func testCARequest(t *testing.T, s Backend) {
	ctx := context.Background()
	req := func(id, kind, product, site string) *store.CARequest {
		return &store.CARequest{CAID: id, Environment: "production", ProductLine: product, Kind: kind, Site: site, Quota: 500,
			ValidFor: 90 * 24 * time.Hour, Generation: 1, KeyURI: "pkcs11:token=site;object=" + id, SPKISHA256: randBytes(t, 32),
			CSRDER: randBytes(t, 200), State: store.CARequestPending, CreatedAt: us(t0)}
	}
	site := req("production/implant/site-a", store.CAKindSite, "implant", "site-a")
	tx(t, s, func(tx store.Tx) error { return tx.InsertCARequest(ctx, site) })
	got, err := s.ListCARequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], site) {
		t.Fatalf("ListCARequests = %+v, want %+v", got, site)
	}
	// A second pending request for the same CA to be, under another id: refused.
	dup := req("production/implant/site-a@2", store.CAKindSite, "implant", "site-a")
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.InsertCARequest(ctx, dup) })
	wantErr(t, "a second pending request for one CA", err, store.ErrExists)
	// Another site's request is independent.
	tx(t, s, func(tx store.Tx) error {
		return tx.InsertCARequest(ctx, req("production/implant/site-b", store.CAKindSite, "implant", "site-b"))
	})
	// Imported: the request stays, closed; a new request for the role is allowed again.
	at := us(t0.Add(time.Hour))
	tx(t, s, func(tx store.Tx) error { return tx.CloseCARequest(ctx, site.CAID, store.CARequestImported, at) })
	tx(t, s, func(tx store.Tx) error { return tx.InsertCARequest(ctx, dup) })
	got, err = s.ListCARequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].State != store.CARequestImported || got[0].ClosedAt == nil || !got[0].ClosedAt.Equal(at) {
		t.Fatalf("after import: %+v", got)
	}
	// Cancelled: deleted, so the same CA id can be requested again.
	tx(t, s, func(tx store.Tx) error { return tx.CloseCARequest(ctx, dup.CAID, "cancelled", at) })
	tx(t, s, func(tx store.Tx) error { return tx.InsertCARequest(ctx, dup) })
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.CloseCARequest(ctx, "production/none", store.CARequestImported, at) })
	wantErr(t, "CloseCARequest of a missing request", err, store.ErrNotFound)
}

func testToken(t *testing.T, s Backend) {
	ctx := context.Background()
	h := randBytes(t, 32)
	tok := &store.Token{ID: "0123abcd", Name: "admin", Role: "admin", Hash: h, CreatedAt: us(t0)}
	if _, err := s.TokenByHash(ctx, h); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TokenByHash on an empty store: %v", err)
	}
	tx(t, s, func(tx store.Tx) error { return tx.InsertToken(ctx, tok) })
	got, err := s.TokenByHash(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "token", got, tok)
	dup := *tok
	dup.ID = "other"
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.InsertToken(ctx, &dup) })
	wantErr(t, "InsertToken with a taken hash", err, store.ErrExists)
	if _, err := s.TokenByHash(ctx, randBytes(t, 32)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TokenByHash unknown: %v", err)
	}
	// Names are unique, whatever the hash.
	dup = *tok
	dup.ID, dup.Hash = "other", randBytes(t, 32)
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.InsertToken(ctx, &dup) })
	wantErr(t, "InsertToken with a taken name", err, store.ErrExists)

	exp := us(t0.Add(90 * 24 * time.Hour))
	second := &store.Token{ID: "4567cdef", Name: "signer-a", Role: "release-signer", Hash: randBytes(t, 32), CreatedAt: us(t0.Add(time.Second)), ExpiresAt: &exp}
	tx(t, s, func(tx store.Tx) error { return tx.InsertToken(ctx, second) })
	got, err = s.TokenByName(ctx, "signer-a")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "token by name", got, second)
	if _, err := s.TokenByName(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TokenByName unknown: %v", err)
	}

	used := us(t0.Add(time.Hour))
	tx(t, s, func(tx store.Tx) error { return tx.SetTokenLastUsed(ctx, tok.ID, used) })
	at := us(t0.Add(2 * time.Hour))
	tx(t, s, func(tx store.Tx) error { return tx.RevokeToken(ctx, tok.ID, at, "left the company") })
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.RevokeToken(ctx, tok.ID, at, "again") })
	wantErr(t, "RevokeToken of a revoked token", err, store.ErrNotFound)
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.RevokeToken(ctx, "missing", at, "x") })
	wantErr(t, "RevokeToken of a missing token", err, store.ErrNotFound)
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.SetTokenLastUsed(ctx, "missing", at) })
	wantErr(t, "SetTokenLastUsed of a missing token", err, store.ErrNotFound)

	list, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := *tok
	want.LastUsedAt, want.RevokedAt, want.RevocationReason = &used, &at, "left the company"
	if len(list) != 2 {
		t.Fatalf("ListTokens: %d tokens, want 2", len(list))
	}
	mustEqual(t, "listed revoked token", list[0], &want)
	mustEqual(t, "listed second token", list[1], second)
}

func testCertificatesBySPKIRead(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/demo-implant")
	spki := randBytes(t, 32)
	a, b := newCert(t, "dev/demo-implant", "CN=DEMO-00000001", spki), newCert(t, "dev/demo-implant", "CN=DEMO-00000001", spki)
	tx(t, s, func(tx store.Tx) error {
		if err := tx.InsertCertificate(ctx, a); err != nil {
			return err
		}
		return tx.InsertCertificate(ctx, b)
	})
	got, err := s.CertificatesBySPKI(ctx, spki)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("CertificatesBySPKI: %d certificates, want 2", len(got))
	}
	if none, err := s.CertificatesBySPKI(ctx, randBytes(t, 32)); err != nil || len(none) != 0 {
		t.Fatalf("CertificatesBySPKI unknown key: %v %v", none, err)
	}
}

func testKDK(t *testing.T, s Backend) {
	ctx := context.Background()
	mk := func(uri, env, product, purpose string, v int) *store.KDK {
		k := &store.Key{URI: uri, Purpose: purpose, Algorithm: "hmac-sha256", Location: "software", State: store.KeyActive, Owner: "kdk:" + env + "/" + product,
			CreatedAt: us(t0), StateChangedAt: us(t0)}
		tx(t, s, func(tx store.Tx) error { return tx.InsertKey(ctx, k) })
		return &store.KDK{URI: uri, Environment: env, ProductLine: product, Purpose: purpose, Version: v, CreatedAt: us(t0)}
	}
	a2 := mk("soft:a2", "dev", "pump", "device-link", 2)
	a1 := mk("soft:a1", "dev", "pump", "device-link", 1)
	b1 := mk("soft:b1", "dev", "pump", "device-storage", 1)
	c1 := mk("soft:c1", "staging", "pump", "device-link", 1)
	for _, k := range []*store.KDK{a2, a1, b1, c1} {
		tx(t, s, func(tx store.Tx) error { return tx.InsertKDK(ctx, k) })
	}
	got, err := s.ListKDKs(ctx, "dev", "pump", "device-link")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ListKDKs dev/pump/device-link", got, []*store.KDK{a1, a2})
	got, err = s.ListKDKs(ctx, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "ListKDKs all", got, []*store.KDK{a1, a2, b1, c1})
	if got, err = s.ListKDKs(ctx, "production", "", ""); err != nil || len(got) != 0 {
		t.Fatalf("ListKDKs production: %v, %v", got, err)
	}
	dup := *a1
	dup.URI = "soft:a2" // its key row exists, but version 1 is taken
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.InsertKDK(ctx, &dup) })
	wantErr(t, "InsertKDK of a taken version", err, store.ErrExists)
	orphan := store.KDK{URI: "soft:none", Environment: "dev", ProductLine: "pump", Purpose: "device-link", Version: 9, CreatedAt: us(t0)}
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.InsertKDK(ctx, &orphan) })
	wantErr(t, "InsertKDK without a key row", err, store.ErrNotFound)
}
