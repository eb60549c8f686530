package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGoldenConfig pins 'config show' (text and JSON) with a value from each source, and the refusals of a
// malformed configuration: each mistake with its file, line and fix, and the exit code.
// reColumnGap is the padding between two columns of a table.
var reColumnGap = regexp.MustCompile(` {2,}`)

func TestGoldenConfig(t *testing.T) {
	dir := initDir(t)
	cfg := filepath.Join(dir, "keyward.yaml")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	good := string(data) + "serve:\n  listen: 0.0.0.0:8443\n  tls-name: [ca.example.com, 10.0.0.5]\n  public-listen: 127.0.0.1:8080\n  rate-limit: 100/m\n"
	if err := os.WriteFile(cfg, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYWARD_RATE_LIMIT", "20/m")
	t.Setenv("KEYWARD_AUDIT_SINK", "file:"+filepath.Join(dir, "audit.jsonl"))
	var out, printed bytes.Buffer
	run := func(args ...string) {
		stdout, stderr, code := kw(t, append(args, "--data", dir)...)
		printed.WriteString(stdout + stderr)
		// Columns padded to the widest value would move with the temporary directory's length: one gap each.
		fmt.Fprintf(&out, "$ keyward %s\nexit %d\n%s%s\n", normalise(strings.Join(args, " "), dir), code, reColumnGap.ReplaceAllString(normalise(stdout, dir), "  "), normalise(stderr, dir))
	}
	run("config", "show", "--commit-window", "2ms")
	run("config", "check")

	// The JSON names: key, value, source, from, line.
	stdout := mustKW(t, "config", "show", "--json", "--data", dir)
	var v struct {
		Settings []map[string]any `json:"settings"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range v.Settings {
		if s["key"] == "serve.tls-name" {
			found = s["value"] == "ca.example.com,10.0.0.5" && s["source"] == "file" && s["line"] != nil
		}
	}
	if !found {
		t.Fatalf("config show --json: %s", stdout)
	}

	// Malformed: every mistake at once, each with file, line and fix; serve refuses to start on them.
	bad := strings.Replace(good, "  rate-limit: 100/m\n", "  rate-limt: 100/m\n  commit-window: 1h\n  shutdown-grace: soon\n  metrics-listen: {a: b}\n", 1)
	bad = strings.Replace(bad, "db: sqlite:keyward.db", "db: mysql://root:hunter2@db/kw", 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYWARD_PUBLISH_CHECK", "-1s")
	run("config", "check")
	run("serve", "--listen", "127.0.0.1:0")
	run("ca", "list")
	if strings.Contains(printed.String(), "hunter2") {
		t.Fatalf("a password was printed:\n%s", printed.String())
	}

	// Another store than the remembered one.
	if err := os.WriteFile(cfg, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYWARD_PUBLISH_CHECK", "")
	run("ca", "list", "--db", "postgres://kw:hunter2@db.example/other")
	run("config", "show", "--db", "postgres://kw:hunter2@db.example/other")
	if strings.Contains(printed.String(), "hunter2") {
		t.Fatal("a password was printed")
	}
	// What serve needs beside the file: the keystore passphrase, a readable keystores.yaml.
	if err := os.Rename(filepath.Join(dir, "passphrase"), filepath.Join(dir, "passphrase.away")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keystores.yaml"), []byte("pkcs11: {a: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("config", "check")
	golden(t, "config.golden", out.Bytes())
}
