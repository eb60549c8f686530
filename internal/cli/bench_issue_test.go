package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBenchIssuePrefillCommand runs 'keyward bench issue --prefill' small: the JSON carries the prefill's
// figures beside the issuance's, the text names them, and an impossible prefill is a usage error.
func TestBenchIssuePrefillCommand(t *testing.T) {
	out := mustKW(t, "bench", "issue", "--n", "40", "--prefill", "300", "--batch", "16", "--limit-time", "100ms", "--json")
	var res struct {
		Issued              int     `json:"issued"`
		PerSecond           float64 `json:"per_second"`
		AuditVerified       bool    `json:"audit_verified"`
		Prefill             int     `json:"prefill"`
		PrefillSeconds      float64 `json:"prefill_seconds"`
		Settled             string  `json:"settled"`
		StoreBytes          int64   `json:"store_bytes"`
		BytesPerCertificate float64 `json:"bytes_per_certificate"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Issued != 40 || res.PerSecond <= 0 || !res.AuditVerified || res.Prefill != 300 || res.PrefillSeconds <= 0 || res.Settled == "" ||
		res.StoreBytes <= 0 || res.BytesPerCertificate <= 0 {
		t.Fatalf("figures: %s", out)
	}
	text := mustKW(t, "bench", "issue", "--n", "20", "--prefill", "50", "--batch", "16", "--limit-time", "100ms")
	for _, want := range []string{"prefilled 50 enrolled devices", "bytes per certificate", "certificates/s"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	for _, args := range [][]string{{"--prefill", "-1"}, {"--n", "10", "--prefill", "99999999"}} {
		if _, stderr, code := kw(t, append([]string{"bench", "issue"}, args...)...); code != ExitUsage || !strings.Contains(stderr, "--prefill") {
			t.Errorf("%v: exit %d, %s", args, code, stderr)
		}
	}
}
