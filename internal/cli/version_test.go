package cli

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFromBuildInfo(t *testing.T) {
	vcs := func(rev, at, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: at},
			{Key: "vcs.modified", Value: modified}, {Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"}}
	}
	const rev = "5b96f847ca603ec4c0e268a62ebcb18d939046ce"
	for _, tc := range []struct {
		name     string
		bi       *debug.BuildInfo
		override string
		want     versionJSON
	}{
		{"no build information", nil, "",
			versionJSON{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}},
		{"checkout without VCS stamping", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/keyward/keyward", Version: "(devel)"}}, "",
			versionJSON{Version: "(devel)", Go: "go1.26.8", Platform: runtime.GOOS + "/" + runtime.GOARCH}},
		{"clean checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "2026-12-06T00:21:00Z", "false")}, "",
			versionJSON{Version: "(devel)", Commit: rev, CommitTime: "2026-12-06T00:21:00Z", Go: "go1.26.8", Platform: "linux/arm64"}},
		{"modified checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.1-0.20261206002100-5b96f847ca60+dirty"}, Settings: vcs(rev, "2026-12-06T00:21:00Z", "true")}, "",
			versionJSON{Version: "v0.3.1-0.20261206002100-5b96f847ca60+dirty", Commit: rev + "-dirty", CommitTime: "2026-12-06T00:21:00Z", Modified: true, Go: "go1.26.8", Platform: "linux/arm64"}},
		{"go install module@version", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}}, "",
			versionJSON{Version: "v1.2.3", Go: "go1.26.8", Platform: runtime.GOOS + "/" + runtime.GOARCH}},
		{"set at link time", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "2026-12-06T00:21:00Z", "false")}, "v2.0.0",
			versionJSON{Version: "v2.0.0", Commit: rev, CommitTime: "2026-12-06T00:21:00Z", Go: "go1.26.8", Platform: "linux/arm64"}},
	} {
		if got := versionFrom(tc.bi, tc.override); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// TestVersionCommand runs 'keyward version' on the test binary's own build information.
func TestVersionCommand(t *testing.T) {
	out := mustKW(t, "version")
	if !strings.HasPrefix(out, "keyward ") || strings.HasPrefix(out, "keyward dev\n") || !strings.Contains(out, "go      "+runtime.Version()) {
		t.Errorf("keyward version:\n%s", out)
	}
	var v versionJSON
	if err := json.Unmarshal([]byte(mustKW(t, "version", "--json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Version == "" || v.Go != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("keyward version --json: %+v", v)
	}
}
