package hierarchy

import (
	"strings"
	"testing"
)

// FuzzParseConfigFile: keyward.yaml is outside input. Parsing never panics; every error names the file.
func FuzzParseConfigFile(f *testing.F) {
	f.Add(DefaultConfig())
	f.Add([]byte("organization: X\nenvironments:\n  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n"))
	f.Add([]byte("organization: X\nenvironmnts: {}\nstore:\n  db: sqlite:keyward.db\nserve: {listen: a}\n"))
	f.Add([]byte("environments:\n  production:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n"))
	f.Add([]byte("organization: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseConfigFile("kw/keyward.yaml", data)
		if err != nil && !strings.HasPrefix(err.Error(), "kw/keyward.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}
