package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/metrics"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// TestMetrics: /metrics serves the Prometheus text format to admin and auditor tokens only; after an issuance
// and a refused request it counts the requests by route and status, the issuance by profile and CA, the
// refusal by reason, the CA key's signatures by backend, the group commit, and reports the CAs' remaining
// validity, the audit head and the database pools.
func TestMetrics(t *testing.T) {
	m := metrics.New()
	ts := startDeps(t, nil, Deps{Metrics: m})
	ts.n.RA.SetObserver(m)
	ts.n.CA.SetSignObserver(m.Signed)
	m.Register(m.NewState(ts.n.Store, ts.n.Store.(store.Pooled).PoolStats, ts.n.Now))

	issue, _ := json.Marshal(map[string]string{"profile": "implant-identity", "csr": csrPEM(t, "DEMO-00007777")})
	if code, body := ts.do(t, "POST", "/api/v1/certificates", ts.admin, issue); code != http.StatusCreated {
		t.Fatalf("issue: %d %s", code, body)
	}
	bad, _ := json.Marshal(map[string]string{"profile": "implant-identity", "csr": csrPEM(t, "not a serial!")})
	if code, _ := ts.do(t, "POST", "/api/v1/certificates", ts.admin, bad); code != http.StatusBadRequest {
		t.Fatalf("bad issue: %d", code)
	}
	// The SQLite store's key filter, once built, reports its memory and keys (PostgreSQL keeps none).
	warmer, warms := ts.n.Store.(store.Warmer)
	if warms {
		if err := warmer.Warm(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if code, _ := ts.do(t, "GET", "/metrics", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d", code)
	}
	officer := operatorToken(t, ts, ra.RoleCAOfficer)
	if code, _ := ts.do(t, "GET", "/metrics", officer, nil); code != http.StatusForbidden {
		t.Fatalf("/metrics for a ca-officer: %d", code)
	}
	code, body := ts.do(t, "GET", "/metrics", ts.admin, nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	text := string(body)
	issuing := hierarchy.IssuingID("dev", "demo-implant")
	for _, want := range []string{
		`keyward_http_requests_total{code="201",method="POST",route="POST /api/v1/certificates"} 1`,
		`keyward_http_requests_total{code="400",method="POST",route="POST /api/v1/certificates"} 1`,
		`keyward_issuances_total{action="cert.issue",ca="` + issuing + `",profile="implant-identity"} 1`,
		`keyward_refusals_total{action="cert.issue",reason="bad-request"} 1`,
		`keyward_sign_duration_seconds_count{backend="soft",purpose="ca-signing"}`,
		`keyward_db_commit_group_requests_count`,
		`keyward_ca_expiry_seconds{ca="` + issuing + `",status="active"}`,
		`keyward_audit_head_sequence`,
		`keyward_db_pool_open_connections{pool="writer"}`,
		`keyward_http_request_duration_seconds_bucket{method="POST",route="POST /api/v1/certificates",le="0.1"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if warms {
		for _, name := range []string{"keyward_key_filter_bytes", "keyward_key_filter_keys"} {
			if v, ok := metricValue(text, name); !ok || v < 1 {
				t.Errorf("/metrics: %s = %v (found %v), want at least 1 once the filter is built", name, v, ok)
			}
		}
	} else if strings.Contains(text, "keyward_key_filter_bytes") {
		t.Errorf("/metrics reports a key filter for a store that keeps none")
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}

// metricValue returns the value of one series (its name and labels as exposed, e.g. `name{label="v"}`) in a
// Prometheus text exposition.
func metricValue(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}
