package factory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
)

// BenchmarkBatchSoft measures batch throughput with the software custody and, in the same run, the in-process
// limit: x509.CreateCertificate in a loop on every core with the site CA's key and one implant-identity
// template. It reports both rates and their ratio, the batch file's bytes per credential and the share of
// certificates stamped (all but the first of each 1024-credential chunk).
func BenchmarkBatchSoft(b *testing.B) {
	ctx := context.Background()
	n, f := newNode(b)
	s := siteCA(b, f, n.Soft, "site-a", 1<<40)
	signer, err := n.Keys.Signer(ctx, s.CA.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		b.Fatal(err)
	}
	dev, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := issuer.NewSerial(time.Now())
	csr := &x509.CertificateRequest{PublicKey: &dev.PublicKey, Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: "DEMO-00000001"}}}}
	tmpl, err := n.Profiles[DefaultProfile].Template(&profile.Request{CSR: csr, Role: "factory-station"}, serial, time.Now(), s.Cert)
	if err != nil {
		b.Fatal(err)
	}
	count := int64(max(b.N, 1))
	b.ResetTimer()

	limitStart := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= count {
				if _, err := x509.CreateCertificate(rand.Reader, tmpl, s.Cert, &dev.PublicKey, signer); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	limit := float64(count) / time.Since(limitStart).Seconds()

	req := softBatch(filepath.Join(b.TempDir(), "bench.kwb"), count)
	req.Checkpoint = 1024
	sum, err := f.Batch(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	rate := float64(count) / sum.Elapsed.Seconds()
	b.ReportMetric(rate, "creds/s")
	b.ReportMetric(limit, "limit/s")
	b.ReportMetric(rate/limit, "ratio")
	b.ReportMetric(float64(sum.Bytes)/float64(count), "B/cred")
	b.ReportMetric(float64(sum.Stamped)/float64(count), "stamped/cred")
}
