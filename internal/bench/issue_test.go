package bench

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestIssueSmall runs the whole issuance benchmark job on a few certificates and checks what it reports.
func TestIssueSmall(t *testing.T) {
	res, err := Issue(context.Background(), IssueOptions{N: 64, BatchSize: 16, LimitTime: 200 * time.Millisecond, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Issued != 64 || res.Failed != 0 {
		t.Fatalf("issued %d failed %d, want 64 and 0", res.Issued, res.Failed)
	}
	if res.PerSecond <= 0 || res.LimitPerSecond <= 0 || res.Ratio <= 0 || res.Ratio != res.PerSecond/res.LimitPerSecond {
		t.Fatalf("figures %+v", res)
	}
	// 64 issuances plus the events of init (two keys, two CAs, one token).
	if !res.AuditVerified || res.AuditEvents != 64+5 {
		t.Fatalf("audit: verified %v, %d events", res.AuditVerified, res.AuditEvents)
	}
	if res.CertBytes == 0 || res.CertBytes > 400 {
		t.Fatalf("certificate size %d", res.CertBytes)
	}
}

// TestIssueCPU: the run reports the CPU it used per 1,000 certificates and the cores it kept busy, which can be
// no more than the machine has (the clock ticks of /proc/self/stat round it by 10 ms).
func TestIssueCPU(t *testing.T) {
	res, err := Issue(context.Background(), IssueOptions{N: 1000, LimitTime: 100 * time.Millisecond, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.CPUPer1k <= 0 || res.CPUUse <= 0 || res.CPUUse > float64(runtime.NumCPU())+0.5 {
		t.Fatalf("CPU %.3f s per 1,000, %.2f cores busy of %d", res.CPUPer1k, res.CPUUse, runtime.NumCPU())
	}
}

// BenchmarkIssue issues b.N implant-identity certificates through the RA into a fresh SQLite store with audit;
// BenchmarkCreateCertificateLimit (same package) is the in-process limit to compare it with.
func BenchmarkIssue(b *testing.B) {
	res, err := Issue(context.Background(), IssueOptions{N: b.N, LimitTime: 100 * time.Millisecond, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.PerSecond, "certs/s")
	b.ReportMetric(res.LimitPerSecond, "limit-certs/s")
	b.ReportMetric(res.Ratio, "ratio")
}
