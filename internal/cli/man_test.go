package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManPages writes the man pages and checks one per command, with the command's own help text and flags,
// and a reproducible date from SOURCE_DATE_EPOCH.
func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1780000000") // 2026-05-28
	dir := filepath.Join(t.TempDir(), "man", "man1")
	out := mustKW(t, "man", "--out", dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := manPages(newRoot(Env{})); len(entries) != want || want < 50 {
		t.Errorf("wrote %d pages, want one per command (%d)", len(entries), want)
	}
	if !strings.Contains(out, "wrote ") || !strings.Contains(out, dir) {
		t.Errorf("stdout: %q", out)
	}
	for name, want := range map[string][]string{
		"keyward.1":                 {`.TH "KEYWARD" "1" "May 2026" "Keyward `, "Exit codes:", "keyward-cert(1)"},
		"keyward-cert-issue.1":      {"keyward-cert-issue - Issue a certificate", `\fB--profile\fP`, `\fB--data\fP`},
		"keyward-serve.1":           {`\fB--listen\fP="127.0.0.1:8443"`, `\fB--metrics-listen\fP`},
		"keyward-man.1":             {`\fB--out\fP`},
		"keyward-completion-bash.1": {"bash"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", name, w)
			}
		}
		if strings.Contains(string(b), "Auto generated") {
			t.Errorf("%s carries cobra's auto-generated footer", name)
		}
	}

	// Running it again over the same directory rewrites the same pages.
	mustKW(t, "man", "--out", dir)
	again, _ := os.ReadDir(dir)
	if len(again) != len(entries) {
		t.Errorf("second run: %d pages, first %d", len(again), len(entries))
	}
}

func TestManUsage(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"man"}, `required flag(s) "out" not set`},
		{[]string{"man", "--out", t.TempDir(), "extra"}, "takes no arguments"},
		{[]string{"man", "--out", file}, "exists and is not a directory"},
		{[]string{"man", "--out", t.TempDir(), "--section", "1/../x"}, "--section"},
		{[]string{"man", "--out", t.TempDir(), "--section", ""}, "--section"},
	} {
		_, errs, code := kw(t, tc.args...)
		if code != ExitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("keyward %v: exit %d, stderr %q; want exit %d naming %q", tc.args, code, errs, ExitUsage, tc.want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(file)); len(entries) != 1 {
		t.Errorf("a refused run wrote files: %v", entries)
	}
}

// TestCompletionScripts checks the shell completions scripts/package.sh installs: cobra's generators, reachable
// as 'keyward completion SHELL'.
func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "__start_keyward",
		"zsh":  "#compdef keyward",
		"fish": "complete -c keyward",
	} {
		if out := mustKW(t, "completion", shell); !strings.Contains(out, want) {
			t.Errorf("keyward completion %s lacks %q", shell, want)
		}
	}
	if _, _, code := kw(t, "completion", "tcsh"); code != ExitUsage {
		t.Errorf("keyward completion tcsh: exit %d, want %d", code, ExitUsage)
	}
}
