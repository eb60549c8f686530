package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run 'go test -run %s -update' to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// What differs from run to run, replaced before comparing: PEM blocks, times, hex of 16 digits or more (serials,
// key ids, hashes), DER sizes (an ECDSA signature varies by a few bytes); the data directory's path.
var (
	reSize = regexp.MustCompile(`"der_size": \d+`)
	rePEM  = regexp.MustCompile(`-----BEGIN [A-Z ]+-----(\\n|\n)[A-Za-z0-9+/=\\n\n]+-----END [A-Z ]+-----(\\n|\n)?`)
	reTime = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	reHex  = regexp.MustCompile(`\b[0-9a-f]{16,}\b`)
)

func normalise(s, dir string) string {
	s = strings.ReplaceAll(s, dir, "DATA")
	s = rePEM.ReplaceAllString(s, "<pem>")
	s = reTime.ReplaceAllString(s, "<time>")
	s = reSize.ReplaceAllString(s, `"der_size": <n>`)
	return reHex.ReplaceAllString(s, "<hex>")
}

// TestGoldenJSON pins the --json output of the listings: field names, shapes and the values that do not vary.
func TestGoldenJSON(t *testing.T) {
	dir := initDir(t)
	common := []string{"--data", dir}
	st := filepath.Join(t.TempDir(), "st")
	mustKW(t, append([]string{"station", "add", "--name", "line-g-01", "--site", "line-g", "--product", "demo-implant", "--quota", "5", "--valid-until", "30d", "--out", st}, common...)...)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := filepath.Join(t.TempDir(), "dev.csr")
	if err := os.WriteFile(csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: newCSR(t, k, "DEMO-00000042")}), 0o600); err != nil {
		t.Fatal(err)
	}
	mustKW(t, append([]string{"cert", "issue", "--profile", "implant-identity", "--csr", csr}, common...)...)
	mustKW(t, append([]string{"token", "create", "--name", "robot", "--role", "auditor", "--expires", "never"}, common...)...)
	mustKW(t, append([]string{"token", "create", "--name", "gone", "--role", "ca-officer"}, common...)...)
	mustKW(t, append([]string{"token", "revoke", "gone", "--reason", "rotated"}, common...)...)
	var out bytes.Buffer
	for _, args := range [][]string{
		{"ca", "list", "--json"},
		{"profile", "list", "--json"},
		{"station", "list", "--json"},
		{"cert", "list", "--json", "--profile", "implant-identity"},
		{"device", "list", "--json"},
		{"token", "list", "--json"},
	} {
		fmt.Fprintf(&out, "$ keyward %s\n%s\n", strings.Join(args, " "), normalise(mustKW(t, append(args, common...)...), dir))
	}
	golden(t, "json.golden", out.Bytes())
}

// TestGoldenRefusals pins the exit code and the message of refusals, which scripts read.
func TestGoldenRefusals(t *testing.T) {
	dir := initDir(t)
	common := []string{"--data", dir}
	var out bytes.Buffer
	for _, args := range [][]string{
		{"cert", "issue", "--csr", "missing.csr"},
		{"cert", "show", "zz"},
		{"cert", "show", "abcdef"},
		{"cert", "revoke", "--reason", "superseded"},
		{"cert", "revoke", "abcdef", "--reason", "because"},
		{"cert", "revoke", "abcdef", "--reason", "keyCompromise"},
		{"cert", "unhold", "abcdef"},
		{"key", "destroy", "soft:0000000000000000", "--reason", "drill"},
		{"device", "decommission", "DEMO-99999999", "--attested-by", "QA"},
		{"device", "suspend", "DEMO-99999999"},
		{"station", "add", "--site", "Bad Site", "--product", "demo-implant", "--out", filepath.Join(dir, "s")},
		{"station", "add", "--site", "line-1", "--product", "no-such-product", "--out", filepath.Join(dir, "s")},
		{"station", "suspend", "no-such-station"},
		{"token", "create", "--name", "x", "--role", "nobody"},
		{"token", "create", "--name", "x", "--role", "auditor", "--expires", "soon"},
		{"token", "create", "--name", "admin", "--role", "auditor"},
		{"token", "revoke", "nobody", "--reason", "left"},
		{"token", "revoke", "admin"},
		{"ca", "create", "--env", "nowhere"},
		{"revocation", "crl", "--ca", "dev/nothing"},
		{"token", "revoke", "admin", "--reason", "rotated"},
		{"token", "revoke", "admin", "--reason", "rotated"},
	} {
		stdout, stderr, code := kw(t, append(args, common...)...)
		fmt.Fprintf(&out, "$ keyward %s\nexit %d\n%s%s\n", normalise(strings.Join(args, " "), dir), code, normalise(stdout, dir), normalise(stderr, dir))
	}
	golden(t, "refusals.golden", out.Bytes())
}
