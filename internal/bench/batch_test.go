package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestBatchSmall runs the whole batch benchmark job on a few credentials and checks what it reports.
func TestBatchSmall(t *testing.T) {
	const count, checkpoint = 300, 64
	res, err := Batch(context.Background(), BatchOptions{Count: count, Checkpoint: checkpoint, LimitTime: 200 * time.Millisecond, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	chunks := int64((count + checkpoint - 1) / checkpoint)
	if res.Count != count || !res.Verified || res.Custody != "software-wrapped" || res.SiteCAKeyLocation != "software" {
		t.Fatalf("result %+v", res)
	}
	if res.Stamped != count-chunks || res.StampRefused != "" {
		t.Fatalf("stamped %d (refused %q); want all but the first of each of %d checkpoints", res.Stamped, res.StampRefused, chunks)
	}
	if res.PerSecond <= 0 || res.LimitPerSecond <= 0 || res.Ratio != res.PerSecond/res.LimitPerSecond || !strings.Contains(res.Limit, "x509.CreateCertificate") {
		t.Fatalf("figures %+v", res)
	}
	// An implant certificate (at most 400 bytes) and a wrapped P-256 key, base64 in a JSON frame.
	if res.BytesPerCredential < 500 || res.BytesPerCredential > 1200 {
		t.Fatalf("%.0f bytes per credential", res.BytesPerCredential)
	}
	if _, err := Batch(context.Background(), BatchOptions{Count: 0, Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "--count 0") {
		t.Errorf("count 0: %v", err)
	}
	if _, err := Batch(context.Background(), BatchOptions{Count: 1, Keystore: "hsm", Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), `--keystore "hsm"`) {
		t.Errorf("unknown keystore: %v", err)
	}
}

// BenchmarkBatch runs a software-custody batch of b.N credentials beside the CreateCertificate limit.
func BenchmarkBatch(b *testing.B) {
	res, err := Batch(context.Background(), BatchOptions{Count: int64(b.N), Checkpoint: 1024, LimitTime: time.Second, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.PerSecond, "creds/s")
	b.ReportMetric(res.LimitPerSecond, "limit/s")
	b.ReportMetric(res.Ratio, "ratio")
	b.ReportMetric(res.BytesPerCredential, "B/cred")
}
