package bench

import (
	"context"
	"testing"

	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
)

func TestMain(m *testing.M) { pkcs11test.Main(m) }

// TestFirmwareSoftHSM2 runs the whole-job benchmark small, with the signing key in a SoftHSM2 token, and checks that
// its figures are consistent; 'go test -run TestFirmwareSoftHSM2 -v' prints them.
func TestFirmwareSoftHSM2(t *testing.T) {
	token := pkcs11test.NewToken(t)
	res, err := Firmware(context.Background(), FirmwareOptions{ImageSizes: []int{1 << 20}, Keystore: token, Signatures: 100, ManifestRounds: 50})
	if err != nil {
		t.Fatal(err)
	}
	if res.Keystore != "pkcs11" || res.SignPerSecond <= 0 || res.RawSignPerSecond <= 0 || len(res.Images) != 1 || res.Images[0].Ratio < 0.5 {
		t.Fatalf("bench result %+v", res)
	}
	t.Logf("SoftHSM2: %.0f signed manifests/s, bare ECDSA %.0f/s (ratio %.2f), hybrid %.0f/s; 1 MiB verify ratio %.3f (image check %.3f); manifest %.0f µs",
		res.SignPerSecond, res.RawSignPerSecond, res.SignRatio, res.HybridSignPerSecond, res.Images[0].Ratio, res.Images[0].ImageRatio, res.ManifestMicros)
}

// BenchmarkFirmwareSignSoftHSM2 is manifest signing throughput with the ECDSA key in SoftHSM2.
func BenchmarkFirmwareSignSoftHSM2(b *testing.B) {
	token := pkcs11test.NewToken(b)
	var res *FirmwareResult
	for b.Loop() {
		var err error
		if res, err = Firmware(context.Background(), FirmwareOptions{ImageSizes: []int{1 << 10}, Keystore: token, Signatures: 200, ManifestRounds: 10}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.SignPerSecond, "manifests/s")
	b.ReportMetric(res.RawSignPerSecond, "raw-sign/s")
}
