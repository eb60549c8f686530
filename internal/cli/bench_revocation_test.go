package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBenchFilterCommand runs 'keyward bench filter' on a CI-sized fleet: the JSON carries the figure, the
// limit and the targets, and impossible sizes are a usage error.
func TestBenchFilterCommand(t *testing.T) {
	out := mustKW(t, "bench", "filter", "--n", "20000", "--revoked", "200", "--json")
	var res struct {
		Certificates   uint64  `json:"certificates"`
		Revoked        uint64  `json:"revoked"`
		PerSecond      float64 `json:"per_second"`
		LimitPerSecond float64 `json:"limit_per_second"`
		Ratio          float64 `json:"ratio"`
		RatioToBound   float64 `json:"ratio_to_bound"`
		LookupNs       float64 `json:"lookup_ns"`
		Exact          bool    `json:"exact"`
		Limit          string  `json:"limit"`
		TargetRatio    float64 `json:"target_ratio_to_bound"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Certificates != 20000 || res.Revoked != 200 || !res.Exact || res.PerSecond <= 0 || res.LimitPerSecond <= 0 || res.Ratio <= 0 ||
		res.RatioToBound <= 1 || res.LookupNs <= 0 || res.Limit == "" || res.TargetRatio != 1.2 {
		t.Fatalf("figures: %s", out)
	}
	text := mustKW(t, "bench", "filter", "--n", "20000", "--revoked", "200")
	for _, want := range []string{"x the information bound", "certificates/s limit", "lookup", "targets"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if _, stderr, code := kw(t, "bench", "filter", "--n", "10", "--revoked", "11"); code != ExitUsage || !strings.Contains(stderr, "--revoked") {
		t.Errorf("--revoked > --n: exit %d, %s", code, stderr)
	}
}
