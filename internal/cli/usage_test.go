package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// commandPaths returns every command under root (root included) as its argument path, with cobra's help and
// completion commands, in the tree Run executes.
func commandPaths(t *testing.T) map[string]*cobra.Command {
	t.Helper()
	paths := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		paths[strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), "keyward"), " ")] = c
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(Env{}))
	if len(paths) < 50 {
		t.Fatalf("the command tree has %d commands: the walk missed some", len(paths))
	}
	return paths
}

func argv(path string, more ...string) []string {
	return append(strings.Fields(path), more...)
}

// misspell drops the second letter of name ("issue" → "isue"), a typo close enough for a suggestion.
func misspell(name string) string {
	if len(name) < 3 {
		return name + "x"
	}
	return name[:1] + name[2:]
}

// TestUsageErrorsEveryCommand walks the whole command tree: every usage mistake exits 2 with a message that names
// it, and --help exits 0, on every command.
func TestUsageErrorsEveryCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "never-created")
	for path, c := range commandPaths(t) {
		if c.Name() == "help" {
			continue // TestHelpCommand
		}
		t.Run(c.CommandPath(), func(t *testing.T) {
			if out, errs, code := kw(t, argv(path, "--help")...); code != ExitOK || !strings.Contains(out, "Usage:") {
				t.Errorf("keyward %s --help: exit %d, stderr %q", path, code, errs)
			}
			if _, errs, code := kw(t, argv(path, "--no-such-flag", "--data", data)...); code != ExitUsage || !strings.Contains(errs, "--no-such-flag") {
				t.Errorf("keyward %s --no-such-flag: exit %d, stderr %q; want exit 2 naming the flag", path, code, errs)
			}
			if c.HasSubCommands() {
				first := ""
				for _, sub := range c.Commands() {
					if sub.IsAvailableCommand() {
						first = sub.Name()
						break
					}
				}
				typo := misspell(first)
				_, errs, code := kw(t, argv(path, typo, "--data", data)...)
				if code != ExitUsage || !strings.Contains(errs, `unknown command "`+typo+`"`) || !strings.Contains(errs, `did you mean "`+first+`"`) {
					t.Errorf("keyward %s %s: exit %d, stderr %q; want exit 2 suggesting %q", path, typo, code, errs, first)
				}
				_, errs, code = kw(t, argv(path, "zzzq", "--data", data)...)
				if code != ExitUsage || !strings.Contains(errs, `unknown command "zzzq"`) || !strings.Contains(errs, first) {
					t.Errorf("keyward %s zzzq: exit %d, stderr %q; want exit 2 listing the commands", path, code, errs)
				}
				return
			}
			// The shortest argument list the command refuses: too many, or too few.
			for n := 0; n <= 3; n++ {
				args := make([]string, n)
				for i := range args {
					args[i] = "zzzq"
				}
				if c.Args(c, args) == nil {
					continue
				}
				_, errs, code := kw(t, argv(path, append(args, "--data", data)...)...)
				if code != ExitUsage || !strings.Contains(errs, c.CommandPath()) {
					t.Errorf("keyward %s with %d arguments: exit %d, stderr %q; want exit 2 naming the command", path, n, code, errs)
				}
				break
			}
		})
	}
}

// TestMissingRequiredFlags: a command whose flags are marked required refuses to run without them, exit 2, before
// it opens anything.
func TestMissingRequiredFlags(t *testing.T) {
	data := filepath.Join(t.TempDir(), "never-created")
	seen := 0
	for path, c := range commandPaths(t) {
		var required []string
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if _, ok := f.Annotations[cobra.BashCompOneRequiredFlag]; ok {
				required = append(required, f.Name)
			}
		})
		if len(required) == 0 {
			continue
		}
		seen++
		_, errs, code := kw(t, argv(path, "--data", data)...)
		if code != ExitUsage || !strings.Contains(errs, required[0]) {
			t.Errorf("keyward %s without --%s: exit %d, stderr %q; want exit 2 naming it", path, required[0], code, errs)
		}
	}
	if seen == 0 {
		t.Fatal("no command has a required flag: the test proves nothing")
	}
}

func TestHelpCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, ExitOK, "Exit codes"},
		{[]string{"help"}, ExitOK, "Exit codes"},
		{[]string{"help", "cert", "issue"}, ExitOK, "--profile"},
		{[]string{"cert"}, ExitOK, "keyward cert [command]"},
		{[]string{"help", "cert", "isue"}, ExitUsage, `did you mean "issue"`},
		{[]string{"help", "nosuch"}, ExitUsage, `unknown command "nosuch" for "keyward"`},
		{[]string{"cetr", "issue"}, ExitUsage, `did you mean "cert"`},
		{[]string{"cert", "isue", "--profile", "implant-identity"}, ExitUsage, `unknown command "isue" for "keyward cert"; did you mean "issue"?`},
	} {
		out, errs, code := kw(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errs, tc.want) {
			t.Errorf("keyward %s: exit %d, want %d with %q\nstdout: %.300s\nstderr: %s", strings.Join(tc.args, " "), code, tc.code, tc.want, out, errs)
		}
	}
}

// TestCommandUsageChecks: usage mistakes a command finds in its own flags exit 2 too.
func TestCommandUsageChecks(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"device", "simulate", "--product", "demo-implant", "--force"}, "--force and --rekey go with --renew"},
		{[]string{"device", "simulate", "--product", "demo-implant", "--rekey"}, "--force and --rekey go with --renew"},
		{[]string{"device", "simulate", "--count", "0"}, "--count and --concurrency must be positive"},
		{[]string{"cert", "expiring", "--within", "soon"}, "--within"},
	} {
		if _, errs, code := kw(t, tc.args...); code != ExitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("keyward %s: exit %d, stderr %q; want exit 2 with %q", strings.Join(tc.args, " "), code, errs, tc.want)
		}
	}
}
