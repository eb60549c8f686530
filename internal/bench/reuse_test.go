package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
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
	// The second run verified its own events after the head the first one verified, not the whole chain again.
	if res.AuditVerifiedAfter < prefill+n || res.AuditEvents < n || res.AuditEvents >= res.AuditVerifiedAfter {
		t.Fatalf("second run verified %d events after event %d; want at least %d after at least %d", res.AuditEvents, res.AuditVerifiedAfter, n, prefill+n)
	}
	// A verified head that is not the chain's fails the next run's verification.
	mark, err := readIssueMark(dir)
	if err != nil {
		t.Fatal(err)
	}
	good := mark.AuditHash
	mark.AuditHash = append([]byte{good[0] ^ 1}, good[1:]...)
	if err := writeIssueMark(dir, mark); err != nil {
		t.Fatal(err)
	}
	if _, err := Issue(ctx, opts); !errors.Is(err, audit.ErrChainBroken) {
		t.Fatalf("run after a wrong verified head: %v, want %v", err, audit.ErrChainBroken)
	}
	if mark, err = readIssueMark(dir); err != nil || !bytes.Equal(mark.AuditHash[1:], good[1:]) || mark.AuditHash[0] == good[0] {
		t.Fatalf("a failed verification moved the verified head: %v", err)
	}
	mark.AuditHash = good
	if err := writeIssueMark(dir, mark); err != nil {
		t.Fatal(err)
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
	if len(certs) != prefill+3*n || len(subjects) != prefill+3*n {
		t.Fatalf("%d certificates with %d subjects, want %d distinct", len(certs), len(subjects), prefill+3*n)
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
