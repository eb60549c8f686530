package bench

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/store"
)

// TestIssueReuseDir: 'bench issue --dir' keeps its store, and a second run with the same --dir measures on it
// without loading it again, with device serials of its own; a --prefill onto a kept store and a directory that
// holds a data directory the benchmark did not make are refused, and the latter is left as it was.
func TestIssueReuseDir(t *testing.T) {
	const n, prefill = 40, 300
	ctx := context.Background()
	dir := t.TempDir()
	opts := IssueOptions{N: n, Prefill: prefill, BatchSize: 16, LimitTime: 50 * time.Millisecond, Dir: dir}
	if _, err := Issue(ctx, opts); err != nil {
		t.Fatal(err)
	}
	opts.Prefill = 0
	res, err := Issue(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Issued != n || res.Prefill != prefill || !res.AuditVerified {
		t.Fatalf("second run: issued %d, prefill %d, verified %v; want %d, %d, true", res.Issued, res.Prefill, res.AuditVerified, n, prefill)
	}
	opts.Prefill = 10
	if _, err := Issue(ctx, opts); err == nil || !strings.Contains(err.Error(), "already holds a benchmark store") {
		t.Fatalf("--prefill onto a kept store: %v", err)
	}

	nd, err := node.Open(ctx, node.Options{Dir: filepath.Join(dir, "data"), Warn: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := nd.Store.ListCertificates(ctx, store.CertFilter{IssuerID: hierarchy.IssuingID(benchEnv, benchProduct)})
	nd.Close()
	if err != nil {
		t.Fatal(err)
	}
	subjects := map[string]bool{}
	for _, c := range certs {
		subjects[c.Subject] = true
	}
	if len(certs) != prefill+2*n || len(subjects) != prefill+2*n {
		t.Fatalf("%d certificates with %d subjects, want %d distinct", len(certs), len(subjects), prefill+2*n)
	}

	foreign := t.TempDir()
	if err := os.Mkdir(filepath.Join(foreign, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Issue(ctx, IssueOptions{N: n, Dir: foreign, LimitTime: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "without "+issueMarkFile) {
		t.Fatalf("a directory with a data directory of its own: %v", err)
	}
	if entries, _ := os.ReadDir(foreign); len(entries) != 1 {
		t.Fatalf("the foreign directory was written to: %d entries", len(entries))
	}
}
