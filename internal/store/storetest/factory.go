package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// RunFactory runs the conformance suite of the factory site log (store.FactoryTx.AppendFactorySiteLog and
// store.FactoryStore.WalkFactorySiteLog) against a backend.
func RunFactory(t *testing.T, open func(t *testing.T) Backend) {
	runCases(t, open, []testCase{
		{"SiteLogAppendWalk", testSiteLogAppendWalk},
		{"SiteLogConcurrent", testSiteLogConcurrent},
	})
}

const siteCAID = "dev/demo-implant/site-a"

// newSite stores the dev root, a site CA under it and its factory site row.
func newSite(t *testing.T, s store.Store) {
	t.Helper()
	site := issuingCA(siteCAID)
	site.Kind, site.ProductLine = store.CAKindSite, "demo-implant"
	tx(t, s, func(tx store.Tx) error {
		ctx := context.Background()
		if err := tx.InsertCA(ctx, rootCA()); err != nil {
			return err
		}
		if err := tx.InsertCA(ctx, site); err != nil {
			return err
		}
		return tx.InsertFactorySite(ctx, &store.FactorySite{CAID: siteCAID, Environment: "dev", ProductLine: "demo-implant", Site: "site-a",
			Profile: "implant-identity", CNPattern: `^DEMO-[0-9]{8}$`, Quota: 1 << 20, IssueUntil: us(t0.Add(30 * 24 * time.Hour)), CreatedAt: us(t0),
			AuditKeyURI: "soft:audit", AuditCertDER: []byte{0x30, 0x00}})
	})
}

// logCert issues (stores) one certificate of the site CA and logs it, in one transaction, as enrollment does.
func logCert(ctx context.Context, s store.Store, t testing.TB, device, station string) (*store.FactorySiteLogEntry, error) {
	c := newCert(t, siteCAID, "CN="+device, nil)
	e := &store.FactorySiteLogEntry{CAID: siteCAID, CertSerial: c.Serial, Device: device, StationID: station, CreatedAt: us(t0)}
	err := s.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.LockFactorySite(ctx, siteCAID); err != nil {
			return err
		}
		if err := tx.InsertCertificate(ctx, c); err != nil {
			return err
		}
		return tx.AppendFactorySiteLog(ctx, e)
	})
	e.CertDER = c.DER
	return e, err
}

func testSiteLogAppendWalk(t *testing.T, b Backend) {
	ctx := context.Background()
	newSite(t, b)
	// More than one page of the walk (both backends read 1,000 entries per query); all but the last few in one
	// transaction, to keep the test quick on PostgreSQL.
	const n = 1000 + 5
	want := make([]*store.FactorySiteLogEntry, 0, n)
	tx(t, b, func(tx store.Tx) error {
		if _, err := tx.LockFactorySite(ctx, siteCAID); err != nil {
			return err
		}
		for i := range n - 3 {
			c := newCert(t, siteCAID, fmt.Sprintf("CN=DEMO-%08d", i), nil)
			e := &store.FactorySiteLogEntry{CAID: siteCAID, CertSerial: c.Serial, Device: fmt.Sprintf("DEMO-%08d", i), StationID: "site-a/01", CreatedAt: us(t0), CertDER: c.DER}
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
			if err := tx.AppendFactorySiteLog(ctx, e); err != nil {
				return err
			}
			want = append(want, e)
		}
		return nil
	})
	for i := n - 3; i < n; i++ {
		e, err := logCert(ctx, b, t, fmt.Sprintf("DEMO-%08d", i), "site-a/02")
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		want = append(want, e)
	}
	for i, e := range want {
		if e.Index != int64(i) {
			t.Fatalf("entry %d got index %d", i, e.Index)
		}
	}
	// A certificate is logged once.
	err := b.Tx(ctx, func(tx store.Tx) error {
		return tx.AppendFactorySiteLog(ctx, &store.FactorySiteLogEntry{CAID: siteCAID, CertSerial: want[3].CertSerial, Device: "DEMO-x", StationID: "s", CreatedAt: us(t0)})
	})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("logging a certificate twice: %v, want ErrExists", err)
	}
	if got, err := b.FactorySiteLogLength(ctx, siteCAID); err != nil || got != n {
		t.Fatalf("FactorySiteLogLength = %d, %v; want %d", got, err, n)
	}
	if got, err := b.FactorySiteLogLength(ctx, "dev/demo-implant/other"); err != nil || got != 0 {
		t.Fatalf("FactorySiteLogLength of an empty log = %d, %v", got, err)
	}
	for _, from := range []int64{0, 7, n - 1, n} {
		var got []*store.FactorySiteLogEntry
		if err := b.WalkFactorySiteLog(ctx, siteCAID, from, func(e *store.FactorySiteLogEntry) error {
			got = append(got, e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != n-from {
			t.Fatalf("walk from %d: %d entries, want %d", from, len(got), n-from)
		}
		for i, e := range got {
			w := want[from+int64(i)]
			if e.Index != w.Index || e.CertSerial != w.CertSerial || e.Device != w.Device || e.StationID != w.StationID || !e.CreatedAt.Equal(w.CreatedAt) ||
				!bytes.Equal(e.CertDER, w.CertDER) || e.CAID != siteCAID {
				t.Fatalf("walk from %d, entry %d = %+v, want %+v", from, i, e, w)
			}
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := b.WalkFactorySiteLog(ctx, siteCAID, 0, func(*store.FactorySiteLogEntry) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("walk stopping at the first entry: %v after %d calls", err, calls)
	}
	if err := b.WalkFactorySiteLog(ctx, "dev/demo-implant/other", 0, func(*store.FactorySiteLogEntry) error { return stop }); err != nil {
		t.Fatalf("walk of an empty log: %v", err)
	}
}

// testSiteLogConcurrent: concurrent enrollments logging under the site row's lock get every index once, 0..n-1.
func testSiteLogConcurrent(t *testing.T, b Backend) {
	ctx := context.Background()
	newSite(t, b)
	const workers, each = 6, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := logCert(ctx, b, t, fmt.Sprintf("DEMO-%04d%04d", w, i), fmt.Sprintf("site-a/%02d", w)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	next := int64(0)
	if err := b.WalkFactorySiteLog(ctx, siteCAID, 0, func(e *store.FactorySiteLogEntry) error {
		if e.Index != next {
			return fmt.Errorf("index %d where %d was due", e.Index, next)
		}
		next++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if next != workers*each {
		t.Fatalf("%d entries, want %d", next, workers*each)
	}
}
