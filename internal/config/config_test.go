package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/keyward/keyward/internal/pkitest"
)

func TestMain(m *testing.M) { pkitest.Main(m) }

func TestParseSections(t *testing.T) {
	data := []byte(`organization: Example
environments: {}
store:
  db: postgres://kw:s3cret@db.example:5432/keyward
serve:
  listen: 0.0.0.0:8443
  tls-name: [a.example, 10.0.0.1]
`)
	f, err := Parse("kw/keyward.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if f.Store == nil || f.Store.DB != "postgres://kw:s3cret@db.example:5432/keyward" || f.Store.Line != 4 {
		t.Fatalf("store: %+v", f.Store)
	}
	if e := f.Serve["listen"]; e.Line != 6 || e.Values[0] != "0.0.0.0:8443" || e.Seq {
		t.Fatalf("listen: %+v", e)
	}
	if e := f.Serve["tls-name"]; !e.Seq || strings.Join(e.Values, ",") != "a.example,10.0.0.1" {
		t.Fatalf("tls-name: %+v", e)
	}
}

// Every malformed section is refused with the file, the line and a fix.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"store not a mapping", "store: postgres://x\n", "kw/keyward.yaml:1: store: must be a mapping with the key db; fix: "},
		{"store unknown key", "store:\n  url: sqlite:x.db\n", "kw/keyward.yaml:2: store.url: unknown key; fix: the store: section has one key, db"},
		{"store empty db", "store:\n  db: ''\n", "kw/keyward.yaml:2: store.db: must be a database URL; fix: "},
		{"store bad scheme", "store:\n  db: mysql://u:pw@h/db\n", `kw/keyward.yaml:2: store.db: unsupported scheme "mysql"`},
		{"store missing db", "store: {}\n", "kw/keyward.yaml:1: store.db: missing; fix: "},
		{"serve not a mapping", "serve: [a]\n", "kw/keyward.yaml:1: serve: must be a mapping"},
		{"serve null value", "serve:\n  listen:\n", "kw/keyward.yaml:2: serve.listen: has no value; fix: give a value"},
		{"serve twice", "serve:\n  listen: a:1\n  listen: b:2\n", "serve.listen: set twice (first at line 2)"},
		{"serve nested", "serve:\n  listen: {a: b}\n", "kw/keyward.yaml:2: serve.listen: must be a value or a list of values"},
		{"section twice", "serve: {}\nserve: {}\n", "kw/keyward.yaml:2: serve: section repeated (first at line 1)"},
		{"not yaml", "serve: [\n", "kw/keyward.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("kw/keyward.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Fatalf("error shows a password: %v", err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://kw:s3cret@db/keyward":                 "postgres://kw:xxxxx@db/keyward",
		"postgresql://kw@db/keyward?sslmode=require":      "postgresql://kw@db/keyward?sslmode=require",
		"postgres://db/keyward?password=s3cret&sslmode=x": "postgres://db/keyward?password=xxxxx&sslmode=x",
		"sqlite:/var/lib/keyward/keyward.db":              "sqlite:/var/lib/keyward/keyward.db",
		"":                                                "",
		"host=db password=s3cret":                         "xxxxx",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveStore(t *testing.T) {
	dir := t.TempDir()
	pg := &File{Path: "kw/keyward.yaml", Store: &StoreEntry{DB: "postgres://kw:old@db:5432/keyward?sslmode=disable", Line: 40}}
	sq := &File{Path: "kw/keyward.yaml", Store: &StoreEntry{DB: DefaultDB, Line: 40}}

	// Remembered and nothing explicit: the remembered store.
	c, err := ResolveStore(dir, "", "flag --db", pg)
	if err != nil || c.DB != pg.Store.DB || c.Source != "file kw/keyward.yaml:40" || !c.Remembered {
		t.Fatalf("%+v %v", c, err)
	}
	// The SQLite default opens as the default.
	if c, err := ResolveStore(dir, "", "flag --db", sq); err != nil || c.DB != "" || !c.Remembered {
		t.Fatalf("%+v %v", c, err)
	}
	// The same database with a rotated password, another spelling of the scheme and the default port.
	if c, err := ResolveStore(dir, "postgresql://kw:new@DB/keyward?sslmode=disable", "env KEYWARD_DB", pg); err != nil || c.Source != "env KEYWARD_DB" {
		t.Fatalf("%+v %v", c, err)
	}
	// The same SQLite file by its absolute path.
	if _, err := ResolveStore(dir, "sqlite:"+filepath.Join(dir, "keyward.db"), "flag --db", sq); err != nil {
		t.Fatal(err)
	}
	// Another database: refused, both named, no password shown.
	_, err = ResolveStore(dir, "postgres://kw:new@db/other", "flag --db", pg)
	var mm *StoreMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("want a mismatch, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"--db postgres://kw:xxxxx@db/other", "kw/keyward.yaml:40", "postgres://kw:xxxxx@db:5432/keyward", "Drop --db"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "old") || strings.Contains(msg, "new@") {
		t.Errorf("message shows a password: %s", msg)
	}
	// Another user or another SQLite file is another store.
	for _, other := range []string{"postgres://admin:old@db:5432/keyward?sslmode=disable", "postgres://kw:old@db:5432/keyward?sslmode=require", "sqlite:" + filepath.Join(dir, "x.db")} {
		if _, err := ResolveStore(dir, other, "env KEYWARD_DB", pg); err == nil {
			t.Errorf("%s accepted as the same store", other)
		} else if !strings.Contains(err.Error(), "KEYWARD_DB") {
			t.Errorf("message does not name KEYWARD_DB: %v", err)
		}
	}
	// Nothing remembered: whatever was given, or the default.
	if c, _ := ResolveStore(dir, "", "flag --db", nil); c.DB != "" || c.Source != "default" || c.Remembered {
		t.Fatalf("%+v", c)
	}
}

func TestRememberAs(t *testing.T) {
	dir := t.TempDir()
	for in, want := range map[string]string{
		"":                                     DefaultDB,
		"sqlite:" + filepath.Join(dir, "s.db"): "sqlite:s.db",
		"sqlite:/elsewhere/s.db":               "sqlite:/elsewhere/s.db",
		"postgres://kw@db/keyward":             "postgres://kw@db/keyward",
	} {
		if got, err := RememberAs(dir, in); err != nil || got != want {
			t.Errorf("RememberAs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestAppendAndSetStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	orig := "# hierarchy\norganization: Example # kept\nenvironments: {}\n"
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := AddStore(path, "postgres://kw:pw@db/keyward"); err != nil {
		t.Fatal(err)
	}
	// The section goes before the first key: what appends to environments: at the end still may.
	if data := string(mustRead(t, path)); !strings.HasSuffix(data, "environments: {}\n") || !strings.HasPrefix(data, "# hierarchy\n\n# The database") {
		t.Fatalf("after AddStore:\n%s", data)
	}
	if err := AddStore(path, DefaultDB); err == nil {
		t.Fatal("a second store: section was appended")
	}
	f, err := Load(filepath.Dir(path))
	if err != nil || f.Store.DB != "postgres://kw:pw@db/keyward" {
		t.Fatalf("%+v %v", f, err)
	}
	if err := os.WriteFile(path, append(mustRead(t, path), []byte("serve:\n  listen: 1.2.3.4:5\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SetStore(path, DefaultDB); err != nil {
		t.Fatal(err)
	}
	data := string(mustRead(t, path))
	if strings.Contains(data, "pw@") || strings.Count(data, "store:") != 1 || !strings.HasPrefix(data, "# hierarchy\n") || !strings.Contains(data, "organization: Example # kept\nenvironments: {}\n") {
		t.Fatalf("after SetStore:\n%s", data)
	}
	f, err = Load(filepath.Dir(path))
	if err != nil || f.Store.DB != DefaultDB || f.Serve["listen"].Values[0] != "1.2.3.4:5" {
		t.Fatalf("%+v %v\n%s", f, err, data)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testFlags() (*pflag.FlagSet, *string, *[]string) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8443", "")
	names := fs.StringSlice("tls-name", nil, "")
	fs.Duration("commit-window", 0, "")
	fs.String("audit-sink", "", "")
	return fs, listen, names
}

// Precedence: flag > environment > file > default, each value with its source.
func TestApplyPrecedence(t *testing.T) {
	f, err := Parse("kw/keyward.yaml", []byte("serve:\n  listen: 10.0.0.1:1\n  tls-name: [a.example, b.example]\n  commit-window: 1ms\n  audit-sink: https://u:pw@sink.example/x\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KEYWARD_COMMIT_WINDOW": "2ms", "KEYWARD_LISTEN": "10.0.0.2:2"}
	fs, listen, names := testFlags()
	if err := fs.Parse([]string{"--listen", "10.0.0.3:3"}); err != nil {
		t.Fatal(err)
	}
	settings, err := Apply(fs, []string{"listen", "tls-name", "commit-window", "audit-sink"}, f, func(k string) string { return env[k] }, func(n string) bool { return n == "audit-sink" })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"serve.listen":        "10.0.0.3:3 flag --listen",
		"serve.tls-name":      "a.example,b.example file kw/keyward.yaml:3",
		"serve.commit-window": "2ms env KEYWARD_COMMIT_WINDOW",
		"serve.audit-sink":    "https://u:xxxxx@sink.example/x file kw/keyward.yaml:5",
	}
	for _, s := range settings {
		if got := s.Value + " " + s.Where(); got != want[s.Key] {
			t.Errorf("%s: %q, want %q", s.Key, got, want[s.Key])
		}
	}
	if *listen != "10.0.0.3:3" || strings.Join(*names, ",") != "a.example,b.example" {
		t.Fatalf("flags: %s %v", *listen, *names)
	}
}

func TestApplyErrors(t *testing.T) {
	f, err := Parse("kw/keyward.yaml", []byte("serve:\n  lisen: 1.2.3.4:5\n  commit-window: soon\n  listen: [a, b]\n"))
	if err != nil {
		t.Fatal(err)
	}
	fs, listen, _ := testFlags()
	_, err = Apply(fs, []string{"listen", "tls-name", "commit-window"}, f, func(k string) string {
		if k == "KEYWARD_TLS_NAME" {
			return ""
		}
		return ""
	}, nil)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
	for _, want := range []string{
		"kw/keyward.yaml:2: serve.lisen: not a setting of keyward serve; fix: did you mean listen?",
		`kw/keyward.yaml:4: serve.listen: "a,b": takes one value, not a list`,
		`kw/keyward.yaml:3: serve.commit-window: "soon": `,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if *listen != "127.0.0.1:8443" {
		t.Fatalf("a refused value was applied: %s", *listen)
	}
	fs, _, _ = testFlags()
	_, err = Apply(fs, []string{"commit-window"}, nil, func(k string) string { return map[string]string{"KEYWARD_COMMIT_WINDOW": "x"}[k] }, nil)
	if err == nil || !strings.Contains(err.Error(), `KEYWARD_COMMIT_WINDOW="x"`) || !strings.Contains(err.Error(), "fix:") {
		t.Fatalf("env error: %v", err)
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("delta-crl-interval"); got != "KEYWARD_DELTA_CRL_INTERVAL" {
		t.Fatal(got)
	}
}

// FuzzParse: keyward.yaml is outside input; Parse must never panic, and what it accepts must have lines.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"store:\n  db: sqlite:keyward.db\n",
		"serve:\n  listen: 0.0.0.0:8443\n  tls-name: [a, b]\n",
		"organization: x\nserve: {}\n",
		"serve:\n  x: {a: b}\n",
		"store: [1]\n",
		"",
		"serve: !!binary aGVsbG8=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("keyward.yaml", data)
		if err != nil {
			return
		}
		if file.Store != nil && file.Store.Line < 1 {
			t.Fatalf("store without a line: %+v", file.Store)
		}
		for k, e := range file.Serve {
			if e.Line < 1 {
				t.Fatalf("serve.%s without a line", k)
			}
		}
	})
}
