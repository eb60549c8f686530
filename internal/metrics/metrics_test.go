package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// TestCRLAndCommitMetrics: what the publisher and the group committer report appears in the exposition, with
// the CRL's age and time to nextUpdate computed at scrape time against the clock given.
func TestCRLAndCommitMetrics(t *testing.T) {
	m := New()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	m.CRL("dev/demo-implant", false, CRLState{ThisUpdate: now.Add(-90 * time.Second), NextUpdate: now.Add(time.Hour), Bytes: 1234, Entries: 17})
	m.Committed(8, 3*time.Millisecond)
	m.Signed("pkcs11", "ca-signing", 0, io.ErrUnexpectedEOF)
	m.Register(m.NewState(emptyReader{}, nil, func() time.Time { return now }))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{
		`keyward_crl_age_seconds{ca="dev/demo-implant",kind="complete"} 90`,
		`keyward_crl_next_update_seconds{ca="dev/demo-implant",kind="complete"} 3600`,
		`keyward_crl_bytes{ca="dev/demo-implant",kind="complete"} 1234`,
		`keyward_crl_entries{ca="dev/demo-implant",kind="complete"} 17`,
		`keyward_db_commit_group_requests_sum 8`,
		`keyward_sign_errors_total{backend="pkcs11",purpose="ca-signing"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

// emptyReader is a store with no CA, no audit event and no checkpoint.
type emptyReader struct{}

func (emptyReader) ListCAs(context.Context) ([]*store.CA, error)     { return nil, nil }
func (emptyReader) AuditHead(context.Context) (int64, []byte, error) { return 0, nil, nil }
func (emptyReader) LatestCheckpoint(context.Context) (*store.Checkpoint, error) {
	return nil, store.ErrNotFound
}
func (emptyReader) CountExpiring(context.Context, string, time.Time, time.Time) (int64, error) {
	return 0, nil
}
