package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/keyward/keyward/internal/cli"
)

// unitFile parses a systemd unit into section → key → values (a key may repeat: SystemCallFilter=). Comments
// and blank lines are skipped; the unit has no line continuations.
func unitFile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			unit[section] = map[string][]string{}
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: a continued line; keep each directive on one line", path, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is no directive of a section", path, n, line)
			}
			unit[section][k] = append(unit[section][k], v)
		}
	}
	return unit
}

// TestServiceUnitHardening holds packaging/keyward.service to the hardening the package promises (README.md,
// "Install as a service"): a directive removed or weakened fails here, before 'systemd-analyze verify' and
// scripts/package-check.sh run it on a Debian machine.
func TestServiceUnitHardening(t *testing.T) {
	unit := unitFile(t, filepath.Join("..", "..", "packaging", "keyward.service"))
	svc := unit["Service"]
	if svc == nil {
		t.Fatal("keyward.service has no [Service] section")
	}
	for key, want := range map[string]string{
		"User":                    "keyward",
		"Group":                   "keyward",
		"StateDirectory":          "keyward",
		"StateDirectoryMode":      "0700",
		"UMask":                   "0077",
		"ProtectSystem":           "strict",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "", // empty: no capability at all
		"AmbientCapabilities":     "",
		"PrivateTmp":              "yes",
		"ProtectHome":             "yes",
		"PrivateDevices":          "yes",
		"PrivateMounts":           "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"ProtectHostname":         "yes",
		"ProtectProc":             "invisible",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"RemoveIPC":               "yes",
		"SystemCallArchitectures": "native",
		"EnvironmentFile":         "-/etc/keyward/keyward.env",
	} {
		got, ok := svc[key]
		if !ok {
			t.Errorf("keyward.service: [Service] lacks %s=%s", key, want)
			continue
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("keyward.service: %s=%q, want exactly %s=%s", key, got, key, want)
		}
	}
	if got := svc["SystemCallFilter"]; !slices.Equal(got, []string{"@system-service", "~@privileged"}) {
		t.Errorf("keyward.service: SystemCallFilter=%q, want @system-service then ~@privileged", got)
	}
	// Nothing may hand back what the directives above take away.
	for _, key := range []string{"DynamicUser", "ReadWritePaths", "DeviceAllow", "SupplementaryGroups", "PrivateNetwork"} {
		if v, ok := svc[key]; ok {
			t.Errorf("keyward.service sets %s=%q: a local need belongs in a drop-in (README.md)", key, v)
		}
	}
	exec := svc["ExecStart"]
	if len(exec) != 1 || !strings.HasPrefix(exec[0], "/usr/bin/keyward serve --data /var/lib/keyward ") {
		t.Errorf("keyward.service: ExecStart=%q, want /usr/bin/keyward serve --data /var/lib/keyward (the StateDirectory)", exec)
	}
	if got := unit["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("keyward.service: WantedBy=%q", got)
	}
}

// TestPackageEnvironmentArgs runs 'keyward serve' with the arguments /etc/keyward/keyward.env gives it by
// default (and --help, so nothing serves): a flag the server does not know would stop the service on its first
// start, with usage exit code 2.
func TestPackageEnvironmentArgs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "packaging", "keyward.env"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "KEYWARD_SERVE_ARGS="); ok {
			args = strings.Fields(v) // systemd splits an unquoted $VAR on white space
		}
	}
	if len(args) == 0 {
		t.Fatal("keyward.env sets no KEYWARD_SERVE_ARGS")
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{append(append([]string{"serve", "--data", t.TempDir()}, args...), "--help"), cli.ExitOK},
		{[]string{"serve", "--data", t.TempDir(), "--no-such-flag", "--help"}, cli.ExitUsage}, // the check can fail
	} {
		var out, errb bytes.Buffer
		if code := cli.Run(context.Background(), tc.args, cli.Env{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader("")}); code != tc.want {
			t.Errorf("keyward %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), code, tc.want, errb.String())
		}
	}
}

// TestPackageContents checks packaging/nfpm.yaml: what the .deb installs where, and that the configuration
// under /etc/keyward is kept across upgrades (conffiles).
func TestPackageContents(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "packaging", "nfpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Name     string `yaml:"name"`
		Contents []struct {
			Src  string `yaml:"src"`
			Dst  string `yaml:"dst"`
			Type string `yaml:"type"`
		} `yaml:"contents"`
		Scripts map[string]string `yaml:"scripts"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("nfpm.yaml: %v", err)
	}
	if cfg.Name != "keyward" {
		t.Errorf("package name %q", cfg.Name)
	}
	dst := map[string]string{}
	for _, c := range cfg.Contents {
		dst[c.Dst] = c.Type
		if c.Src != "" && !strings.HasPrefix(c.Src, "${KEYWARD_STAGE}") {
			if _, err := os.Stat(filepath.Join("..", "..", c.Src)); err != nil {
				t.Errorf("nfpm.yaml installs %s from %s: %v", c.Dst, c.Src, err)
			}
		}
	}
	for path, typ := range map[string]string{
		"/usr/bin/keyward":                                  "",
		"/usr/share/man/man1/":                              "",
		"/usr/share/bash-completion/completions/keyward":    "",
		"/usr/share/zsh/vendor-completions/_keyward":        "",
		"/usr/share/fish/vendor_completions.d/keyward.fish": "",
		"/usr/lib/systemd/system/keyward.service":           "",
		"/etc/keyward/keyward.env":                          "config|noreplace",
		"/etc/keyward/keyward.yaml":                         "config|noreplace",
	} {
		got, ok := dst[path]
		if !ok {
			t.Errorf("nfpm.yaml installs nothing at %s", path)
		} else if got != typ {
			t.Errorf("nfpm.yaml: %s has type %q, want %q", path, got, typ)
		}
	}
	for _, s := range []string{"postinstall", "preremove", "postremove"} {
		p := cfg.Scripts[s]
		st, err := os.Stat(filepath.Join("..", "..", p))
		if p == "" || err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("nfpm.yaml %s script %q: missing or not executable (%v)", s, p, err)
		}
	}
}
