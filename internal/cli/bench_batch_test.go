package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
)

type benchBatchJSON struct {
	Count              int64   `json:"count"`
	PerSecond          float64 `json:"per_second"`
	LimitPerSecond     float64 `json:"limit_per_second"`
	Ratio              float64 `json:"ratio"`
	BytesPerCredential float64 `json:"bytes_per_credential"`
	Custody            string  `json:"custody"`
	Stamped            int64   `json:"stamped"`
	Verified           bool    `json:"verified"`
	KeysDestroyed      int64   `json:"keys_destroyed"`
	SiteCAKeyLocation  string  `json:"site_ca_key_location"`
}

func runBenchBatch(t *testing.T, args ...string) benchBatchJSON {
	t.Helper()
	out := mustKW(t, append([]string{"bench", "batch", "--limit-time", "200ms", "--json"}, args...)...)
	var res benchBatchJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !res.Verified || res.PerSecond <= 0 || res.LimitPerSecond <= 0 || res.Ratio <= 0 || res.BytesPerCredential <= 0 {
		t.Fatalf("figures: %s", out)
	}
	return res
}

// TestBenchBatchCommand runs 'keyward bench batch' on a CI-sized batch with software custody: the JSON carries
// the rate, the limit, their ratio and the size; the text names them; a bad count is a usage error.
func TestBenchBatchCommand(t *testing.T) {
	res := runBenchBatch(t, "--count", "200", "--checkpoint", "50")
	if res.Count != 200 || res.Custody != "software-wrapped" || res.Stamped != 200-4 {
		t.Fatalf("result %+v; want 200 software-wrapped credentials, 196 stamped", res)
	}
	text := mustKW(t, "bench", "batch", "--count", "50", "--limit-time", "100ms")
	for _, want := range []string{"batch of 50 credentials (software-wrapped custody", "credentials/s", "in-process limit (x509.CreateCertificate", "ratio", "bytes per credential"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if _, stderr, code := kw(t, "bench", "batch", "--count", "0"); code != ExitUsage || !strings.Contains(stderr, "--count 0") {
		t.Errorf("--count 0: exit %d, %s", code, stderr)
	}
}

// TestBenchBatchPKCS11 runs it with every key on a SoftHSM2 token: device keys generated there (and destroyed
// afterwards), the site CA key there too.
func TestBenchBatchPKCS11(t *testing.T) {
	token := pkcs11test.NewToken(t)
	res := runBenchBatch(t, "--count", "24", "--checkpoint", "8", "--keystore", token)
	if res.Count != 24 || res.Custody != "pkcs11" || res.SiteCAKeyLocation != "pkcs11" || res.Stamped != 24-3 || res.KeysDestroyed != 24 {
		t.Fatalf("result %+v; want 24 credentials on the token, 21 stamped, 24 keys destroyed", res)
	}
}
