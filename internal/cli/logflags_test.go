package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestLogFlags: --log-level and --log-format refuse what they do not know (exit 2, naming the flag); JSON is
// the default where standard error is not a terminal (the tests' buffer), text on request, and the level
// applies: a one-shot command's warning is logged at warn, not at error.
func TestLogFlags(t *testing.T) {
	for _, args := range [][]string{{"--log-level", "loud", "version"}, {"--log-format", "xml", "version"}} {
		_, errs, code := kw(t, args...)
		if code != ExitUsage || !strings.Contains(errs, args[0]) {
			t.Fatalf("keyward %s: exit %d, stderr %q; want %d naming the flag", strings.Join(args, " "), code, errs, ExitUsage)
		}
	}
	g := &globals{env: Env{Stderr: &strings.Builder{}}}
	for _, tc := range []struct {
		level, format string
		service       bool
		wantJSON      bool
		wantLevel     string
	}{
		{"", "", false, true, "WARN"},
		{"", "", true, true, "INFO"},
		{"debug", "text", false, false, "DEBUG"},
		{"error", "json", true, true, "ERROR"},
	} {
		g.logLevel, g.logFormat, g.service = tc.level, tc.format, tc.service
		lvl, isJSON, err := g.logSettings()
		if err != nil || isJSON != tc.wantJSON || lvl.String() != tc.wantLevel {
			t.Fatalf("%+v: level %v json %v err %v", tc, lvl, isJSON, err)
		}
	}
	var sb strings.Builder
	g = &globals{env: Env{Stderr: &sb}}
	g.logger().Warn("hello", "k", "v")
	var m map[string]any
	if err := json.Unmarshal([]byte(sb.String()), &m); err != nil || m["msg"] != "hello" || m["level"] != "WARN" {
		t.Fatalf("default log line %q: %v %v", sb.String(), m, err)
	}
}
