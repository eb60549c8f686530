package sqlite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storetest"
)

func randomKey(t testing.TB) []byte {
	h := make([]byte, sha256.Size)
	if _, err := rand.Read(h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestKeyBits: every key added is held; of keys never added, fewer than 1 % are (sized for 12 bits a key with
// 7 probes a 512-bit block, about 0.3 % are expected).
func TestKeyBits(t *testing.T) {
	const n, others = 20_000, 200_000
	f := newKeyBits(n)
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = randomKey(t)
		f.add(keys[i])
	}
	for i, h := range keys {
		if !f.mayHold(h) {
			t.Fatalf("key %d was added but is not held", i)
		}
	}
	fp := 0
	for i := 0; i < others; i++ {
		if f.mayHold(randomKey(t)) {
			fp++
		}
	}
	if rate := float64(fp) / others; rate >= 0.01 {
		t.Fatalf("false positive rate %.4f, want < 0.01", rate)
	}
}

// filterCert is a certificate of key spki for subject, under the test's issuing CA.
func filterCert(t testing.TB, subject string, spki []byte) *store.Certificate {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &store.Certificate{Serial: storetest.NewSerial(t), IssuerID: "dev/demo-implant", Profile: "implant-identity", ProfileVersion: 1,
		Subject: subject, NotBefore: now, NotAfter: now.AddDate(10, 0, 0), SPKISHA256: spki, DER: []byte{0x30, 0x00},
		Status: store.CertStatusValid, CreatedAt: now}
}

func insertFilterCerts(t testing.TB, s *Store, certs ...*store.Certificate) {
	t.Helper()
	if err := s.Tx(context.Background(), func(tx store.Tx) error {
		for _, c := range certs {
			if err := tx.InsertCertificate(context.Background(), c); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// waitBuilds waits until the store's key filter has been built n times and nothing is being built.
func waitBuilds(t *testing.T, s *Store, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.keys.builds.Load() < n || s.keys.next.Load() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("key filter built %d times, want %d", s.keys.builds.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKeyFilter: the duplicate-key pre-check (IssuanceFacts) finds every certificate's key whether it was
// stored before the filter was built, while it was built, or after, and through every rebuild as the store
// grows; it spares the index lookup for new keys; a certificate another process stored unseen by the filter
// is still refused at insert.
func TestKeyFilter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keyward.db")
	s, err := open(ctx, path, 5*time.Millisecond, 200) // checkpoints and WAL restarts all along
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.keys.minKeys = 64 // so that the test grows it several times
	if err := s.Tx(ctx, func(tx store.Tx) error {
		now := time.Now().UTC().Truncate(time.Microsecond)
		for _, ca := range []*store.CA{
			{ID: "dev/root", Environment: "dev", Kind: store.CAKindRoot, KeyURI: "soft:dev-root", Subject: "CN=root",
				NotBefore: now, NotAfter: now.AddDate(20, 0, 0), Status: store.CAStatusActive, CreatedAt: now, Generation: 1},
			{ID: "dev/demo-implant", Environment: "dev", ProductLine: "demo-implant", Kind: store.CAKindIssuing, ParentID: "dev/root",
				KeyURI: "soft:dev-issuing", Subject: "CN=issuing", NotBefore: now, NotAfter: now.AddDate(5, 0, 0),
				Status: store.CAStatusActive, CreatedAt: now, Generation: 1},
		} {
			if err := tx.InsertCA(ctx, ca); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	var all []*store.Certificate
	add := func(n int) {
		batch := make([]*store.Certificate, n)
		for i := range batch {
			batch[i] = filterCert(t, fmt.Sprintf("CN=DEMO-%08d", len(all)+i), randomKey(t))
		}
		insertFilterCerts(t, s, batch...)
		all = append(all, batch...)
	}
	found := func(what string) {
		t.Helper()
		for _, c := range all {
			certs, _, err := s.IssuanceFacts(ctx, c.SPKISHA256, "dev", "demo-implant", "")
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 1 || certs[0].Serial != c.Serial {
				t.Fatalf("%s: the key of certificate %s: found %d certificates", what, c.Serial, len(certs))
			}
		}
	}

	add(100) // before the filter exists
	found("before the filter was built")
	waitBuilds(t, s, 1)
	found("once built")
	absent := 0
	for i := 0; i < 1000; i++ {
		if s.keys.absent(randomKey(t)) {
			absent++
		}
	}
	if absent < 950 {
		t.Fatalf("the filter spares %d of 1000 lookups of new keys, want at least 950", absent)
	}

	// Growing: each insert past the filter's size starts a rebuild, during which inserts go on.
	for i := 0; i < 20; i++ {
		add(100)
	}
	waitBuilds(t, s, 3)
	found("after the filter grew")

	// A transaction that added its key to the filter in use and commits only after a rebuild began: the
	// rebuild's scan waits for it, so the new filter holds its key.
	builds := s.keys.builds.Load()
	late := filterCert(t, "CN=DEMO-LATE", randomKey(t))
	if err := s.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertCertificate(ctx, late); err != nil {
			return err
		}
		s.keys.rebuild(int64(len(all)) * 4)
		time.Sleep(100 * time.Millisecond) // a scan that did not wait would run now and miss late
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	all = append(all, late)
	waitBuilds(t, s, builds+1)
	found("a transaction open while the rebuild began")

	// The writer's own commits, checkpoints and WAL restarts are not another connection's commits: the
	// filter stayed trusted and answered the insert's key check for new keys.
	if n := s.keys.foreign.Load(); n != 0 {
		t.Fatalf("%d commits of other connections seen, want 0", n)
	}
	if s.checkpoints.Load() == 0 || s.restarts.Load() == 0 {
		t.Fatalf("checkpoints %d, restarts %d: the test wants both", s.checkpoints.Load(), s.restarts.Load())
	}
	spared := s.keys.spared.Load()
	if spared < int64(len(all))/2 {
		t.Fatalf("the filter answered %d of %d inserts' key checks", spared, len(all))
	}

	// Another process (another Store on the file) stores a key this store's filter never saw: the
	// pre-check may miss it, the insert does not.
	other, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	foreign := filterCert(t, "CN=DEMO-OTHER", randomKey(t))
	insertFilterCerts(t, other, foreign)
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	mine := filterCert(t, "CN=DEMO-MINE", foreign.SPKISHA256)
	err = s.Tx(ctx, func(tx store.Tx) error { return tx.InsertCertificate(ctx, mine) })
	if !errors.Is(err, store.ErrDuplicateKey) {
		t.Fatalf("inserting a key another process certified for another subject: %v, want ErrDuplicateKey", err)
	}
	if s.keys.foreign.Load() != 1 {
		t.Fatalf("%d commits of other connections seen, want 1", s.keys.foreign.Load())
	}
	// The filter rebuilt after that commit has its key: trusted again, and a second attempt is refused too.
	deadline := time.Now().Add(20 * time.Second)
	for cur := s.keys.cur.Load(); cur.foreign != s.keys.foreign.Load(); cur = s.keys.cur.Load() {
		if time.Now().After(deadline) {
			t.Fatal("no filter built since the other process's commit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !s.keys.cur.Load().mayHold(foreign.SPKISHA256) {
		t.Fatal("the filter built after the other process's commit lacks its key")
	}
	again := filterCert(t, "CN=DEMO-MINE-2", foreign.SPKISHA256)
	if err := s.Tx(ctx, func(tx store.Tx) error { return tx.InsertCertificate(ctx, again) }); !errors.Is(err, store.ErrDuplicateKey) {
		t.Fatalf("again, with the filter rebuilt: %v, want ErrDuplicateKey", err)
	}
	spared = s.keys.spared.Load()
	add(10)
	if s.keys.spared.Load() < spared+10 {
		t.Fatalf("after the rebuild the filter answered %d of 10 inserts' key checks", s.keys.spared.Load()-spared)
	}
	found("at the end")
}
