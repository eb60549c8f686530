package cli

import (
	"fmt"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/profile"
)

func profileCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "profile", Short: "Certificate profiles: list, check"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the data directory's profiles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			profiles, err := profile.LoadDir(filepath.Join(g.data, node.ProfilesDir))
			if err != nil {
				return err
			}
			names := make([]string, 0, len(profiles))
			for n := range profiles {
				names = append(names, n)
			}
			sort.Strings(names)
			if g.json {
				out := make([]api.Profile, 0, len(names))
				for _, n := range names {
					out = append(out, api.NewProfile(profiles[n]))
				}
				return g.printJSON(out)
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tVERSION\tDESCRIPTION")
			for _, n := range names {
				fmt.Fprintf(w, "%s\t%d\t%s\n", n, profiles[n].Version, profiles[n].Description)
			}
			return w.Flush()
		},
	}
	g.addJSON(list)
	check := &cobra.Command{
		Use:   "check FILE...",
		Short: "Validate profile YAML files; exit 3 naming the first problem",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range args {
				data, err := readFileLimited(f)
				if err != nil {
					return err
				}
				name := filepath.Base(f)
				name = name[:len(name)-len(filepath.Ext(name))]
				p, err := profile.Parse(name, data)
				if err != nil {
					return badInput(fmt.Errorf("%s: %w", f, err))
				}
				if p.Role == "" {
					// Accepted, so data directories from before roles keep working; but relying parties that
					// check roles (pkg/verify) refuse what it issues (docs/trust-anchors.md).
					fmt.Fprintf(g.env.Stdout, "%s: ok, but it names no role: its certificates carry no role policy, which relying parties refuse; add 'role: device|gateway|service|operator' and raise version\n", f)
					continue
				}
				fmt.Fprintf(g.env.Stdout, "%s: ok\n", f)
			}
			return nil
		},
	}
	c.AddCommand(list, check)
	return c
}
