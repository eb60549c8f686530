package trust_test

import (
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veraison/go-cose"

	"github.com/keyward/keyward/pkg/trust"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestWireGolden pins the signed update's bytes (a fixed Ed25519 rollover signs the same bytes on every run)
// and that a device still applies them: a change to the encoding breaks this test before it breaks devices.
func TestWireGolden(t *testing.T) {
	oldRoot, _, data := fixedRollover(t)
	path := filepath.Join("testdata", "update-v1.hex")
	got := hex.EncodeToString(data) + "\n"
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run 'go test -run TestWireGolden -update' to create it)", err)
	}
	if got != string(want) {
		t.Errorf("signed update differs from %s (run with -update if the change is intended):\n got %s\nwant %s", path, got, want)
	}
	stored, err := hex.DecodeString(strings.TrimSpace(string(want)))
	if err != nil {
		t.Fatal(err)
	}
	next, err := held(t, "dev", 0, oldRoot).Apply(stored, fixedNow)
	if err != nil || next.Version != 1 || len(next.Certificates()) != 2 {
		t.Fatalf("applying the stored update: %v", err)
	}
}

// TestPayloadEncoding pins the payload Sign encodes: a CBOR map: integer keys 1 to 6 in order, shortest forms.
func TestPayloadEncoding(t *testing.T) {
	u := &trust.Update{Environment: "dev", Version: 1, Anchors: [][]byte{{0x30, 0x00}}, NotBefore: 1767225600, NotAfter: 1798761600, IssuedAt: -1}
	const want = "a6" + // map(6)
		"01" + "63646576" + // 1: "dev"
		"02" + "01" + // 2: 1
		"03" + "81" + "423000" + // 3: [h'3000']
		"04" + "1a6955b900" + // 4: 1767225600
		"05" + "1a6b36ec80" + // 5: 1798761600
		"06" + "20" // 6: -1
	var msg cose.SignMessage
	if err := msg.UnmarshalCBOR(must(trust.SignUnchecked(u, fixedRoot(t, "k", 1).Key))); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(msg.Payload); got != want {
		t.Fatalf("payload = %s, want %s", got, want)
	}
}
