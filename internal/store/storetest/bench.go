package storetest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// BenchInsertCertificates measures batch issuance as the store sees it: b.N certificates, each stored with its
// audit event, in transactions of batch certificates, run by workers concurrent goroutines. s must be empty.
// It reports ops/s, one op being one certificate plus its audit event.
func BenchInsertCertificates(b *testing.B, s store.Store, batch, workers int) {
	ctx := context.Background()
	if err := s.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertCA(ctx, rootCA()); err != nil {
			return err
		}
		return tx.InsertCA(ctx, issuingCA("dev/bench"))
	}); err != nil {
		b.Fatal(err)
	}
	// Certificates are made before the clock starts; the DER is random, a realistic size for a small
	// device certificate, and shared between certificates (the store does not look inside it).
	der := randBytes(b, 450)
	certs := make([]*store.Certificate, b.N)
	for i := range certs {
		certs[i] = &store.Certificate{
			Serial: NewSerial(b), IssuerID: "dev/bench", Profile: "implant-identity", ProfileVersion: 1,
			Subject: fmt.Sprintf("PX1-%09d", i), NotBefore: us(t0), NotAfter: us(t0.AddDate(10, 0, 0)),
			SPKISHA256: randBytes(b, sha256.Size), DER: der, Status: store.CertStatusValid, CreatedAt: us(t0),
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				hi := next.Add(int64(batch))
				lo := hi - int64(batch)
				if lo >= int64(len(certs)) {
					return
				}
				chunk := certs[lo:min(hi, int64(len(certs)))]
				if err := s.Tx(ctx, func(tx store.Tx) error {
					for _, c := range chunk {
						if err := tx.InsertCertificate(ctx, c); err != nil {
							return err
						}
						if err := tx.AppendAudit(ctx, &audit.Event{
							Time: time.Now(), Actor: "station:bench", Action: "certificate.issue", Subject: c.Serial,
							Outcome: audit.OutcomeSuccess, Details: map[string]string{"profile": c.Profile, "subject": c.Subject},
						}); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}

// BenchGetCertificate measures GetCertificate by serial from parallel goroutines over a store of 20,000
// certificates, while one more goroutine keeps inserting certificates with their audit events in transactions
// of batch. It reports reads/s and the writer's ops/s over the same time. s must be empty.
func BenchGetCertificate(b *testing.B, s store.Store, batch int) {
	ctx := context.Background()
	if err := s.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertCA(ctx, rootCA()); err != nil {
			return err
		}
		return tx.InsertCA(ctx, issuingCA("dev/bench"))
	}); err != nil {
		b.Fatal(err)
	}
	const n = 20000
	serials := make([]string, 0, n)
	insertBatch := func(size int, keep bool) error {
		return s.Tx(ctx, func(tx store.Tx) error {
			for i := 0; i < size; i++ {
				c := newCert(b, "dev/bench", "PX1-"+NewSerial(b), nil)
				if _, err := certAndEvent(ctx, tx, c); err != nil {
					return err
				}
				if keep {
					serials = append(serials, c.Serial)
				}
			}
			return nil
		})
	}
	for len(serials) < n {
		if err := insertBatch(1000, true); err != nil {
			b.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var writes atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			if err := insertBatch(batch, false); err != nil {
				writerDone <- err
				return
			}
			writes.Add(int64(batch))
		}
	}()
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serial := serials[int(next.Add(7919))%n]
			if _, err := s.GetCertificate(ctx, serial); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	if err := <-writerDone; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reads/s")
	b.ReportMetric(float64(writes.Load())/elapsed.Seconds(), "writes/s")
}

// BenchReads measures the reads that return many rows or run once per issuance, over a store of n certificates
// with their audit events, a quarter of them revoked (each revocation with its audit event too). Each
// sub-benchmark's op is one whole pass: WalkAudit walks the whole chain, WalkCertStatus every certificate of the
// issuing CA, WalkRevoked its CRL entries, and GetCertificate and CertificatesBySPKI look up n/10 certificates
// one by one. Each reports rows/s. s must be empty.
func BenchReads(b *testing.B, s store.Store, n int) {
	ctx := context.Background()
	if err := s.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertCA(ctx, rootCA()); err != nil {
			return err
		}
		return tx.InsertCA(ctx, issuingCA("dev/bench"))
	}); err != nil {
		b.Fatal(err)
	}
	certs := make([]*store.Certificate, 0, n)
	for len(certs) < n {
		if err := s.Tx(ctx, func(tx store.Tx) error {
			for i := 0; i < 1000 && len(certs) < n; i++ {
				c := newCert(b, "dev/bench", "PX1-"+NewSerial(b), nil)
				if _, err := certAndEvent(ctx, tx, c); err != nil {
					return err
				}
				certs = append(certs, c)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	for lo := 0; lo < n; lo += 4 * 1000 {
		if err := s.Tx(ctx, func(tx store.Tx) error {
			for i := lo; i < min(lo+4*1000, n); i += 4 {
				r := &store.Revocation{Serial: certs[i].Serial, Reason: store.ReasonKeyCompromise, RevokedAt: us(t0.AddDate(1, 0, 0))}
				if _, err := tx.Revoke(ctx, r); err != nil {
					return err
				}
				if err := tx.AppendAudit(ctx, &audit.Event{
					Time: time.Now(), Actor: "operator:bench", Action: "certificate.revoke", Subject: r.Serial,
					Outcome: audit.OutcomeSuccess, Details: map[string]string{"reason": "keyCompromise"},
				}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	lookups := certs[:max(n/10, 1)]

	pass := func(name string, fn func() (int, error)) {
		b.Run(name, func(b *testing.B) {
			rows := 0
			start := time.Now()
			for i := 0; i < b.N; i++ {
				k, err := fn()
				if err != nil {
					b.Fatal(err)
				}
				rows += k
			}
			b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
		})
	}
	pass("WalkAudit", func() (int, error) {
		k := 0
		err := s.WalkAudit(ctx, 0, func(*audit.Event) error { k++; return nil })
		return k, err
	})
	pass("WalkCertStatus", func() (int, error) {
		k := 0
		err := s.WalkCertStatus(ctx, store.CertQuery{IssuerIDs: []string{"dev/bench"}}, func(*store.CertStatus) error { k++; return nil })
		return k, err
	})
	pass("WalkRevoked", func() (int, error) {
		k := 0
		err := s.WalkRevoked(ctx, store.RevokedQuery{IssuerID: "dev/bench", NotAfterFrom: t0}, func(*store.RevocationEntry) error { k++; return nil })
		return k, err
	})
	pass("GetCertificate", func() (int, error) {
		for _, c := range lookups {
			if _, err := s.GetCertificate(ctx, c.Serial); err != nil {
				return 0, err
			}
		}
		return len(lookups), nil
	})
	pass("CertificatesBySPKI", func() (int, error) {
		for _, c := range lookups {
			if got, err := s.CertificatesBySPKI(ctx, c.SPKISHA256); err != nil || len(got) != 1 {
				return 0, fmt.Errorf("certificates by SPKI of %s: %d, %v", c.Serial, len(got), err)
			}
		}
		return len(lookups), nil
	})
}
