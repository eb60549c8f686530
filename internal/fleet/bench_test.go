package fleet_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"

	"github.com/keyward/keyward/internal/fleet"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/ra"
)

// BenchmarkScan: the whole scan of a SQLite store of 2,000 P-256 certificates issued through the RA (each with
// its CSR signature kept) and one planted nonce reuse, which must be found and its key recovered; reports
// certificates/s. The RSA side is BenchmarkBatchGCD's (internal/hygiene).
func BenchmarkScan(b *testing.B) {
	const n = 2000
	node, _ := openNode(b, "")
	ctx := context.Background()
	reqs := make([]ra.IssueRequest, 0, n)
	for i := range n - 2 {
		reqs = append(reqs, ra.IssueRequest{Profile: "implant-identity", CSR: pkitest.CSR(b, pkitest.Key(b), fmt.Sprintf("DEMO-%08d", i))})
	}
	broken := pkitest.NewNonceReusingSigner(b, pkitest.Key(b))
	for _, alg := range []x509.SignatureAlgorithm{x509.ECDSAWithSHA256, x509.ECDSAWithSHA384} {
		reqs = append(reqs, ra.IssueRequest{Profile: "implant-identity", CSR: csrWith(b, broken, "DEMO-99999999", alg)})
	}
	next := 0
	var failed sync.Map // emit may run on the stream's goroutines
	err := node.RA.IssueStream(ctx, admin, ra.StreamOptions{}, func() (ra.IssueRequest, bool) {
		if next == len(reqs) {
			return ra.IssueRequest{}, false
		}
		next++
		return reqs[next-1], true
	}, func(r ra.StreamResult) {
		if r.Err != nil {
			failed.Store(r.Index, r.Err)
		}
	})
	failed.Range(func(k, v any) bool { err = fmt.Errorf("request %v: %v", k, v); return false })
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := fleet.Scan(ctx, node.RA.Reader(), fleet.Options{Env: "dev", Now: node.RA.Now()})
		if err != nil || rep.Scanned.Certificates != n || len(rep.Findings) != 1 || !rep.Findings[0].PrivateKeyRecovered {
			b.Fatalf("scan: %v; want %d certificates and the planted nonce reuse", err, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "certificates/s")
}
