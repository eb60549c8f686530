package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version, when set at link time (-ldflags "-X github.com/keyward/keyward/internal/cli.Version=v1.2.3"), replaces
// the module version the build information carries. Left empty, 'go install module@version' and release builds
// report their module version and a checkout reports "(devel)".
var Version string

// versionJSON is what 'keyward version' reports: where the binary came from.
type versionJSON struct {
	Version    string `json:"version"`               // module version, or "(devel)" for a build from a checkout
	Commit     string `json:"commit,omitempty"`      // VCS revision, with "-dirty" when the tree had changes
	CommitTime string `json:"commit_time,omitempty"` // the revision's commit time, RFC 3339
	Modified   bool   `json:"modified,omitempty"`    // the working tree differed from the revision
	Go         string `json:"go"`                    // the Go toolchain that built it
	Platform   string `json:"platform"`              // GOOS/GOARCH
}

// buildVersion reads the running binary's build information.
func buildVersion() versionJSON {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(bi, Version)
}

// versionFrom maps build information (nil when the binary carries none) to the report; override, when not
// empty, is the version set at link time.
func versionFrom(bi *debug.BuildInfo, override string) versionJSON {
	v := versionJSON{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			v.Go = bi.GoVersion
		}
		var goos, goarch string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			case "GOOS":
				goos = s.Value
			case "GOARCH":
				goarch = s.Value
			}
		}
		if goos != "" && goarch != "" {
			v.Platform = goos + "/" + goarch
		}
	}
	if v.Commit != "" && v.Modified {
		v.Commit += "-dirty"
	}
	if override != "" {
		v.Version = override
	}
	return v
}

func versionCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the keyward version, commit and Go version from the build information",
		Long: `Prints the module version ("(devel)" for a build from a checkout), the VCS commit it was built from
("-dirty" when the working tree had changes) and its time, and the Go toolchain that built it. The commit is
known when the binary was built with 'go build' inside a git clone (Go does not stamp it in a git worktree or
with -buildvcs=false).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			if g.json {
				return g.printJSON(v)
			}
			fmt.Fprintf(g.env.Stdout, "keyward %s\n", v.Version)
			if v.Commit != "" {
				fmt.Fprintf(g.env.Stdout, "commit  %s\n", v.Commit)
			} else {
				fmt.Fprintf(g.env.Stdout, "commit  unknown (built without VCS information)\n")
			}
			if v.CommitTime != "" {
				fmt.Fprintf(g.env.Stdout, "time    %s\n", v.CommitTime)
			}
			fmt.Fprintf(g.env.Stdout, "go      %s %s\n", v.Go, v.Platform)
			return nil
		},
	}
	g.addJSON(c)
	return c
}
